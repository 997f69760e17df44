// Lint: typescript-eslint's recommended rules over the TypeScript sources; type checking is `tsc --noEmit`.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'docs/**', 'scratch/**', 'src/admin/assets/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
