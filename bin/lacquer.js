#!/usr/bin/env node
// Entry point for `npx lacquer`: the sources are TypeScript run by Node's type stripping (Node >= 22.18 / 24).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`lacquer needs Node >= 22.18 (it runs its TypeScript sources directly); this is Node ${process.versions.node}. Run it through npx or npm scripts, which use the project's node_modules/.bin/node.\n`);
  process.exit(1);
}
await import('../src/cli/main.ts');
