/**
 * Fallback child for bench/memory.ts when GNU /usr/bin/time is absent: runs one pipeline file
 * like `quantlens run <yaml> --quiet` and prints its own peak RSS.
 *
 *   node --import tsx bench/child-run.ts <pipeline.yaml> [--no-report]
 */
import { loadPipeline } from '../pipelines/load.ts';
import { runPipeline } from '../pipelines/run.ts';

const [file, ...flags] = process.argv.slice(2);
await runPipeline(loadPipeline(file), { quiet: true, report: !flags.includes('--no-report') });
// resourceUsage().maxRSS is in KiB on Linux.
console.log(`maxRSS_KiB=${process.resourceUsage().maxRSS}`);
