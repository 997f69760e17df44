#!/usr/bin/env node
// Entry point for `npx lacquer`: the sources are TypeScript run by Node's type stripping (Node >= 22.18 / 24).
import '../src/cli/main.ts';
