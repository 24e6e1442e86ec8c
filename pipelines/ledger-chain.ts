/**
 * The checkpoint ledger's files (pipelines/ledger.ts) and the hash chain that binds them, so that
 * checkpoint.json records a constant-size {files, count, chain} instead of a listing that grows
 * by one entry a checkpoint.
 *
 * File k, `ledger-<from>-<to>.i32`, holds examples [from, to): their ids, then their token
 * lengths (raw little-endian int32), then 32 bytes: the chain value after it,
 *
 *   H_k = SHA-256(H_(k-1) ‖ SHA-256(ids and lengths) ‖ from as u64 LE ‖ to as u64 LE),
 *   H_0 = SHA-256("quantlens-ledger-chain/1"),
 *
 * and checkpoint.json records H_N. Resume finds the files by listing the state folder (their
 * names must tile [0, count) contiguously) and recomputes the chain file by file. Each file's own
 * H_k names the first file that does not fit (a changed byte, a file replaced or moved), and H_N
 * ties the whole sequence to the checkpoint; a file starting at `count` was written by a
 * checkpoint whose checkpoint.json never replaced the old one (a kill between the two) and is
 * removed; any other ledger file is refused.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { QuantlensError } from '../core/errors.ts';

/** What a ledger file may be called: canonical decimals, so that a name maps to one range. */
export const LEDGER_FILE = /^ledger-(0|[1-9]\d*)-([1-9]\d*)\.i32$/;

const CHAIN_BYTES = 32;

export const ledgerFileName = (from: number, to: number) => `ledger-${from}-${to}.i32`;

/** Bytes of a ledger file holding `count` examples: two int32 each, then the chain value. */
export const ledgerFileBytes = (count: number) => 8 * count + CHAIN_BYTES;

/** H_0, the chain of a ledger with no files. */
export const CHAIN_START: Buffer = createHash('sha256').update('quantlens-ledger-chain/1').digest();

/** H_k from H_(k-1) and file k's ids and lengths. */
export function chainLink(previous: Uint8Array, values: Uint8Array, from: number, to: number): Buffer {
  const range = Buffer.alloc(16);
  range.writeBigUInt64LE(BigInt(from), 0);
  range.writeBigUInt64LE(BigInt(to), 8);
  return createHash('sha256').update(previous).update(createHash('sha256').update(values).digest()).update(range).digest();
}

/** A ledger file's bytes: `values` (ids then lengths), then the chain value they lead to. */
export function ledgerFileContents(values: Uint8Array, link: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(values.byteLength + CHAIN_BYTES);
  bytes.set(values);
  bytes.set(link, values.byteLength);
  return bytes;
}

export interface LedgerFileRange {
  file: string;
  from: number;
  to: number;
}

/** The ledger files of a state folder: those tiling [0, count), in order, and those a kill left after it. */
const START_OVER = 'run without --resume to start over';

/**
 * The ledger files in `dir` that hold a checkpoint's `count` examples in `files` files, in order,
 * or one error naming the file that is missing, overlaps another or does not belong. A file
 * starting at `count` is let through: it is left for the resume's removal of stray files.
 */
export function findLedgerFiles(dir: string, recorded: { count: number; files: number }, checkpoint: string): LedgerFileRange[] {
  const { count, files } = recorded;
  const refuse = (file: string, what: string): never => {
    throw new QuantlensError('STATE', `ledger file ${what}; ${START_OVER}`, path.join(dir, file));
  };
  const found: LedgerFileRange[] = [];
  for (const file of readdirSync(dir)) {
    const m = LEDGER_FILE.exec(file);
    if (!m) continue;
    const [from, to] = [Number(m[1]), Number(m[2])];
    if (!(from < to)) refuse(file, `holds no examples (${from} to ${to})`);
    found.push({ file, from, to });
  }
  const startingAt = new Map<number, LedgerFileRange[]>();
  for (const f of found) startingAt.set(f.from, [...(startingAt.get(f.from) ?? []), f]);
  const tiles: LedgerFileRange[] = [];
  for (let at = 0; at < count; ) {
    const here = (startingAt.get(at) ?? []).sort((a, b) => a.to - b.to);
    if (here.length === 0) {
      // The gap ends where the next file starts (or at the checkpoint's end).
      const next = Math.min(count, ...found.map((f) => f.from).filter((from) => from > at));
      refuse(ledgerFileName(at, next), `is missing: no file in the state folder holds examples ${at} to ${next} of the ${count} in ${checkpoint}`);
    }
    if (here.length > 1) refuse(here[1].file, `overlaps ${here[0].file} (both start at example ${at}); only one of them can be the checkpoint's`);
    const f = here[0];
    if (f.to > count) refuse(f.file, `runs past the ${count} examples ${checkpoint} records`);
    tiles.push(f);
    at = f.to;
  }
  const used = new Set(tiles);
  for (const f of found) {
    // The one file a kill can leave: the next checkpoint's, written before its checkpoint.json.
    if (used.has(f) || f.from === count) continue;
    if (f.from > count) refuse(f.file, `starts past the ${count} examples ${checkpoint} records (only the next checkpoint's file, starting at ${count}, can be left by a kill)`);
    else refuse(f.file, `overlaps ${tiles.find((t) => t.from < f.to && f.from < t.to)?.file ?? 'another ledger file'}; it is not one of the files holding ${checkpoint}'s examples`);
  }
  if (tiles.length !== files)
    throw new QuantlensError('STATE', `records ${files} ledger files, but the state folder's files holding its ${count} examples are ${tiles.length}; ${START_OVER}`, path.join(dir, checkpoint));
  return tiles;
}

/**
 * Read the tiling files in order, each checked against its size and the chain so far, and the
 * chain's end against the checkpoint's; `onValues` gets each file's ids then lengths.
 */
export function readLedgerChain(dir: string, tiles: LedgerFileRange[], chain: string, checkpoint: string, onValues: (values: Int32Array, count: number) => void): Buffer {
  let h = CHAIN_START;
  for (const [k, t] of tiles.entries()) {
    const p = path.join(dir, t.file);
    const count = t.to - t.from;
    const expected = ledgerFileBytes(count);
    const refuse = (what: string): never => {
      throw new QuantlensError('STATE', `ledger file ${what}; ${START_OVER}`, p);
    };
    const size = statSync(p).size;
    if (size !== expected) refuse(`has ${size} bytes, ${size < expected ? 'truncated' : 'too long'} (its name says ${count} examples: ${expected} bytes)`);
    const bytes = readFileSync(p);
    const values = bytes.subarray(0, 8 * count);
    const link = chainLink(h, values, t.from, t.to);
    if (!link.equals(bytes.subarray(8 * count)))
      refuse(`does not fit the ledger's SHA-256 chain at file ${k + 1} of ${tiles.length} (changed, replaced or moved since it was written)`);
    // A copy into an aligned buffer: a Buffer's offset in Node's pool need not be a multiple of 4.
    onValues(new Int32Array(new Uint8Array(values).buffer), count);
    h = link;
  }
  if (h.toString('hex') !== chain)
    throw new QuantlensError(
      'STATE',
      `ledger.examples.chain is ${chain.slice(0, 12)}…, but the ledger files ${tiles.length ? `up to ${tiles[tiles.length - 1].file} ` : ''}chain to ${h.toString('hex').slice(0, 12)}… (the files are not this checkpoint's); ${START_OVER}`,
      path.join(dir, checkpoint),
    );
  return h;
}
