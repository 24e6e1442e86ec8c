/**
 * quantlens as a library. Everything the CLI does is reachable from here, typed.
 */
export { QuantlensError, isQuantlensError, type ErrorCode } from './core/errors.ts';
export type { PipelineConfig, MeasureName } from './pipelines/schema.ts';
export { loadPipeline, parsePipeline } from './pipelines/load.ts';
export type { Override } from './pipelines/overrides.ts';
export { runPipeline, type RunOptions, type RunResult } from './pipelines/run.ts';
export { preparePlan, type Plan } from './pipelines/plan.ts';
export { inspectModel, type InspectReport } from './pipelines/inspect.ts';
export { planSuite, runSuite, type SuitePlan, type SuiteResult } from './pipelines/suite.ts';

export type * from './core/types.ts';
export { openDataset, datasetColumns, type DatasetSpec } from './sources/dataset/open.ts';
export { compilePrompt } from './sources/prompt.ts';
export { loadTokenizer, type TextTokenizer } from './sources/tokenizer.ts';
export { openModelFolder, type ModelFolder } from './sources/model/folder.ts';
export { readOnnxModel, readTensorFloat32, type OnnxModel } from './onnx/model-reader.ts';
export { GraphBuilder, appendGraphFragment, appendGraphOutputs } from './onnx/builder.ts';
export { findActivationSites, resolveLayers, type ActivationSite } from './onnx/capture.ts';
export { ensureDemoModel } from './sources/demo/demo-model.ts';
export { convertCheckpoint } from './onnx/convert/index.ts';

export { ColumnMoments } from './operators/estimators/moments.ts';
export { NeuronsEstimator } from './operators/estimators/neurons.ts';
export { DeadNeuronsEstimator } from './operators/estimators/dead.ts';
export { calibrationSummary } from './operators/estimators/calibration.ts';
export { CorrelationEstimator } from './operators/estimators/correlation.ts';
export { AgreementEstimator } from './operators/estimators/agreement.ts';
export { PerplexityEstimator, type PerplexitySummary } from './operators/estimators/perplexity.ts';
export { scorePredictions } from './operators/score.ts';

export { openParquetSink, writeParquetTable } from './sinks/parquet.ts';
export { openActivationDump } from './sinks/activation-dump.ts';
export { writeReport } from './sinks/report/index.ts';
export { writeSuiteReport } from './sinks/report/index.ts';
export { quantizeModel, QUANT_VARIANTS, type QuantVariant, type QuantOptions, type QuantizationRecord } from './onnx/quantize/index.ts';
export { readGraphQuantization, type GraphQuantization } from './onnx/quantize/graph-settings.ts';
