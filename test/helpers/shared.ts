import { existsSync } from 'node:fs';
import path from 'node:path';

/** The read-only fixtures folder beside the repo (models, datasets). CI always has it. */
export const SHARED_DIR = path.resolve(import.meta.dirname, '..', '..', '..', 'shared');

/**
 * Path to a file or folder under ../shared, or null after printing one clear skip line.
 * Use: `const p = sharedPath('models/stories260K-onnx', 'logits golden test'); if (!p) return;`
 */
export function sharedPath(rel: string, what: string): string | null {
  const p = path.join(SHARED_DIR, rel);
  if (existsSync(p)) return p;
  console.log(`SKIP ${what}: ../shared/${rel} is absent (CI always has it)`);
  return null;
}
