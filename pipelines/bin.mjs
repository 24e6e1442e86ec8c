#!/usr/bin/env node
// `quantlens` from a clone: the TypeScript source runs through tsx (no build step). The
// installed package's bin is the compiled dist/pipelines/cli.js.
import { register } from 'tsx/esm/api';
register();
await import('./cli.ts');
