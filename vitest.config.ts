import { defineConfig } from 'vitest/config';

/**
 * Tests that put a sustained load on the machine (100 clients for 15 s, a rolling restart at 200 req/s, Redis
 * restarts under load) or measure waits against tight bounds. `npm test` runs them after the others, one file at
 * a time (`LACQUER_TESTS=load`), so that on a 2-core CI machine they neither slow the rest nor each other: run
 * beside another load test, a 1 s queue wait became 5 s and the overload test measured the machine, not Lacquer.
 */
const LOAD = [
  'test/overload-adaptive.test.ts',
  'test/pools-resilience.test.ts',
  'test/pools-overload.test.ts',
  'test/fleet.test.ts',
  'test/lab-scenario.test.ts',
  'test/hardening-send.test.ts',
  // A browser (Chromium) and multi-process instances: heavy on two cores, and their assertions wait on live rates.
  'test/admin-dashboard.test.ts',
  'test/edge-browser.test.ts',
  'test/workers.test.ts',
];
const load = process.env.LACQUER_TESTS === 'load';

export default defineConfig({
  test: {
    include: load ? LOAD : ['test/**/*.test.ts', 'src/**/*.test.ts'],
    exclude: load ? [] : [...LOAD, '**/node_modules/**'],
    // A private TMPDIR for the run, removed at the end; leftovers fail the run (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Tests start real servers on port 0; two cores, so keep parallelism modest (load tests: one file at a time).
    maxWorkers: load ? 1 : 2,
    fileParallelism: !load,
    // Several tests measure time over real sockets (timeouts, slow origins). On a shared 2-core CI machine a
    // stall can push one past its bound; a test must fail twice in a row to fail the run.
    retry: process.env.CI ? 1 : 0,
  },
});
