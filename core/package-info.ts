/**
 * quantlens's own package.json and root folder, found from this file's location so that they
 * are right both from the source tree (core/) and from the compiled package (dist/core/),
 * never the consuming project's.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface PackageInfo {
  root: string;
  name: string;
  version: string;
}

let cached: PackageInfo | undefined;

export function packageInfo(): PackageInfo {
  if (cached) return cached;
  for (let dir = import.meta.dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      const json = JSON.parse(readFileSync(file, 'utf8'));
      if (json.name === 'quantlens') return (cached = { root: dir, name: json.name, version: json.version });
    }
    if (path.dirname(dir) === dir) throw new Error(`quantlens's package.json not found above ${import.meta.dirname}`);
  }
}

/** A file shipped with the package (pipelines/examples/… is in the tarball's `files`). */
export function packageFile(...parts: string[]): string {
  return path.join(packageInfo().root, ...parts);
}
