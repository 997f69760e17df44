// Builds the dashboard into src/admin/assets (committed), with stable file names so a rebuild's diff shows
// what changed. `npm run build:dashboard`.
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: './',
  build: {
    outDir: '../src/admin/assets',
    emptyOutDir: true,
    assetsDir: 'static',
    target: 'es2022',
    sourcemap: false,
    rollupOptions: {
      output: { entryFileNames: 'static/dashboard.js', chunkFileNames: 'static/[name].js', assetFileNames: 'static/[name][extname]' },
    },
  },
});
