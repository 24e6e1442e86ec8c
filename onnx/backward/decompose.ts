/**
 * Contrib ops without a gradient rule of their own (GroupQueryAttention, Attention, FastGelu…) are
 * differentiated through a decomposition: standard ONNX ops that compute the same outputs from the
 * same inputs. The contrib node itself stays in the forward graph (the model's values are ORT's own
 * kernel's); its decomposition is appended as extra forward nodes, and the reverse sweep runs
 * through those instead of the contrib node, joined to the rest of the path by bookkeeping-only
 * Identity links (decomposed output → original output) that are never emitted.
 *
 * Every decomposition is tested for forward equality with ORT's kernel before its gradient is
 * trusted (test/onnx/backward/decompose-*.test.ts).
 */
import type { AttrInput, BuiltNode } from '../builder.ts';
import type { AttributeValue, NodeInfo } from '../model-reader.ts';
import type { GradEmitter } from './emitter.ts';
import type { Decomposition } from './decomposition.ts';
import { gradError } from './rule.ts';
import { DECOMPOSITIONS } from './decompositions.ts';
import { ruleKey } from './rules.ts';

export type { DecomposeContext, Decomposition } from './decomposition.ts';

export function decompositionFor(opType: string, domain: string): Decomposition | undefined {
  const key = ruleKey(opType, domain);
  return Object.hasOwn(DECOMPOSITIONS, key) ? DECOMPOSITIONS[key] : undefined;
}

/** A node the emitter built, in the reader's form (rules read attributes through it). */
export function asNodeInfo(n: BuiltNode): NodeInfo {
  const attributes: Record<string, AttributeValue> = {};
  for (const [k, v] of Object.entries(n.attrs)) attributes[k] = attributeOf(v);
  return { name: n.name, opType: n.opType, domain: n.domain, inputs: n.inputs, outputs: n.outputs, attributes, range: [-1, -1] };
}

function attributeOf(a: AttrInput): AttributeValue {
  if (typeof a === 'number') return { type: 'int', value: a };
  if (typeof a === 'string') return { type: 'string', value: a };
  if (Array.isArray(a)) return { type: 'ints', value: a };
  switch (a.kind) {
    case 'float':
      return { type: 'float', value: a.v };
    case 'floats':
      return { type: 'floats', value: a.v };
    case 'ints':
      return { type: 'ints', value: a.v };
    case 'strings':
      return { type: 'strings', value: a.v };
    default:
      return { type: 'other', value: null };
  }
}

export interface Replacement {
  nodes: NodeInfo[];
  links: NodeInfo[];
  /** Output indices the decomposition does not reproduce (refused if a gradient must pass them). */
  missing: number[];
}

export interface Expansion {
  /** Forward nodes computing the decompositions (appended to the graph). */
  forward: BuiltNode[];
  /** Per decomposed node: its decomposed nodes (reader form) and the link nodes to its outputs. */
  replaced: Map<NodeInfo, Replacement>;
  intConstants: Map<string, number[]>;
}

/**
 * Decompose every node of the path that has a decomposition and no rule of its own (rules win:
 * a quantized unit or a hand-written rule is never replaced).
 */
export function decomposePath(
  pathNodes: NodeInfo[],
  hasRule: (n: NodeInfo) => boolean,
  e: GradEmitter,
  constInts: (name: string) => number[] | undefined,
): Expansion {
  const replaced = new Map<NodeInfo, Replacement>();
  for (const node of pathNodes) {
    if (hasRule(node)) continue;
    const decompose = decompositionFor(node.opType, node.domain);
    if (!decompose) continue;
    const first = e.nodes.length;
    const outs = decompose({ node, e, constInts: (name) => e.intConstants.get(name) ?? constInts(name) });
    const nodes = e.nodes.slice(first).map(asNodeInfo);
    const links: NodeInfo[] = [];
    const missing: number[] = [];
    node.outputs.forEach((o, k) => {
      if (!o) return;
      const d = outs[k];
      if (d) links.push({ name: `${node.name}/decomposed_link_${k}`, opType: 'Identity', domain: '', inputs: [d], outputs: [o], attributes: {}, range: [-1, -1] });
      else missing.push(k);
    });
    replaced.set(node, { nodes, links, missing });
  }
  return { forward: e.nodes, replaced, intConstants: e.intConstants };
}

/** Refusal for an output a decomposition does not reproduce, when a gradient must pass it. */
export function notDecomposedError(node: NodeInfo, k: number) {
  return gradError(node, `output ${k} is on the gradient path but its decomposition does not reproduce it; not supported`);
}
