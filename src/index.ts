/** kvpack's library API. */
export { loadModel, readModelInfo, Model, defaultModelPath, type LoadOptions, type ModelInfo } from './engine/model.js';
export { Session, type SessionOptions, type GenerateOptions, type GenerationTimings, type ScoreOptions, type Batch, type BatchOptions } from './engine/session.js';
export { KVCache, fullCacheBytes, compressionRatio } from './cache/kvcache.js';
export { parseSpec, printSpec, POLICIES, CODECS } from './cache/registry.js';
export type { CacheSpec } from './cache/spec.js';
export { perplexity, type PerplexityOptions, type PerplexityResult } from './eval/ppl.js';
export { loadCheckpoint } from './model/load.js';
export { resolveModel } from './hub/download.js';
export type { ModelConfig } from './model/config.js';
export type { Tokenizer } from './tokenizer/tokenizer.js';
export { recordTrace, type TraceOptions, type TraceSummary } from './trace/record.js';
export { TraceRecorder } from './trace/recorder.js';
export { Trace, TraceRun, TraceFormatError } from './trace/read.js';
export * from './errors.js';
