import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  it('configuration reference matches src/config/schema.ts (run `npm run docs:config` to update)', () => {
    const out = execFileSync(process.execPath, ['scripts/config-reference.ts', '--check'], { encoding: 'utf8' });
    expect(out).toContain('up to date');
  });
});
