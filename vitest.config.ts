import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    // A private TMPDIR for the run, removed at the end; leftovers fail the run (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Tests start real servers on port 0; two cores, so keep parallelism modest.
    maxWorkers: 2,
    // Several tests measure time over real sockets (timeouts, slow origins). On a shared 2-core CI machine a
    // stall can push one past its bound; a test must fail twice in a row to fail the run.
    retry: process.env.CI ? 1 : 0,
  },
});
