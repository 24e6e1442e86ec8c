#!/usr/bin/env node
// The `quantlens` executable: TypeScript runs through tsx, so there is no build step.
import { register } from 'tsx/esm/api';
register();
await import('./cli.ts');
