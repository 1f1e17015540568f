import { defineConfig } from 'vitest/config';

// Native code and multi-process mesh tests need real processes, not worker threads.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
