/** The backward (attribution) graph: reverse-mode gradients of an ONNX model, emitted as ONNX. */
export {
  buildAttributionGraph,
  buildAttributionGraphWithInfo,
  externalDataDirOf,
  gradName,
  originalName,
  overrideName,
  OBJECTIVE_OUTPUT,
  TARGET_INPUT,
  type AttributionGraphInfo,
  type AttributionGraphOptions,
} from './graph.ts';
export { GRADIENT_RULES, ruleFor, ruleKey } from './rules.ts';
export type { GradRule, RuleContext } from './rule.ts';
export { DECOMPOSITIONS } from './decompositions.ts';
export { decompositionFor } from './decompose.ts';
export type { Decomposition, DecomposeContext } from './decomposition.ts';
export type { FeedBuilder } from './probe.ts';
export type { WeightMode } from './weight-references.ts';
