// Types of @edgetune/web/engine: the wasm-bindgen module itself (crate/web/), for apps that
// drive the engine directly (on their own thread, or in their own worker). wasm-bindgen's own
// declarations type every serde result as `any`; these say what the Rust structs serialize to
// (crate/web/mod.rs, engine.rs, trainer.rs). Call `init()` once before anything else.
// Option<T> results cross as `undefined` when absent (serde-wasm-bindgen's default).

/** Initializes the module (fetches and instantiates its wasm unless given a module or bytes). */
export default function init(
  input?: { module_or_path?: WebAssembly.Module | BufferSource | URL | string | Response | Promise<Response>; memory?: WebAssembly.Memory },
): Promise<WebAssembly.Exports & { memory: WebAssembly.Memory }>;
export function initSync(input: { module: WebAssembly.Module | BufferSource; memory?: WebAssembly.Memory }): WebAssembly.Exports;

export function version(): string;
/** Installs the panic hook (wasm-bindgen calls it when the module starts). */
export function start(): void;

export interface ProbeReport {
  backend: 'webgpu' | 'cpu';
  description: string;
  dot4: boolean;
}
export function probeBackend(): Promise<ProbeReport>;

export interface EngineReport {
  backend: 'gpu' | 'cpu';
  precision: 'int8' | 'f32';
  device: string;
  variant?: 'dot4I8Packed' | 'unpacked';
  reason: string;
}

export interface TopClass {
  index: number;
  label: string;
  probability: number;
}

export interface EngineClassification {
  top: TopClass[];
  head?: TopClass[];
  headTag?: string;
  logits?: number[];
  embedding?: number[];
  ms: number;
  backend: 'gpu' | 'cpu';
}

export class Engine {
  private constructor();
  free(): void;
  /** Loads an `.etm` and prepares it on `backend` ("auto" by default). */
  static create(model: Uint8Array, backend?: 'auto' | 'gpu' | 'cpu' | null): Promise<Engine>;
  backend(): EngineReport;
  /** `modelInfo` of the loaded model. */
  info(): ModelInfoRaw;
  labels(): string[];
  frameSize(): number;
  /** Returns the new head's top `k` on the last frame classified (null before the first). */
  setHead(weight: Float32Array, bias: Float32Array, names: string[], k?: number | null, tag?: string | null): TopClass[] | null;
  clearHead(): void;
  classify(rgba: Uint8Array, width: number, height: number, k?: number | null, include?: Array<'embedding' | 'logits'> | null): Promise<EngineClassification>;
  embed(rgba: Uint8Array, width: number, height: number): Promise<Float32Array>;
  loseDevice(): void;
}

export interface ModelInfoRaw {
  architecture: string;
  precision: 'int8' | 'f32';
  classes: number;
  dim?: number;
  input: [number, number, number];
  source: string;
  normalization: { mean: [number, number, number]; scale: [number, number, number] };
}
export function modelInfo(etm: Uint8Array): ModelInfoRaw;
export function modelWithHead(backbone: Uint8Array, weight: Float32Array, bias: Float32Array, names: string[]): Uint8Array;
export function quantizeHead(weight: Float32Array, classes: number): { weight: number[]; scales: number[] };
export function headPredictions(weight: Float32Array, bias: Float32Array, embeddings: Float32Array): Uint32Array;
/** A head's mean cross-entropy and accuracy on labelled embeddings (`[n, dim]` packed). */
export function headEvaluate(weight: Float32Array, bias: Float32Array, embeddings: Float32Array, labels: Uint32Array): { loss: number; accuracy: number; count: number };
export function quantizeModel(
  etm: Uint8Array, rgba: Uint8Array, count: number, width: number, height: number,
  method: 'minmax' | 'percentile' | 'mse', progress?: ((pass: number, done: number, total: number) => void) | null,
): Uint8Array;
export function topOneAgreement(a: Uint8Array, b: Uint8Array, rgba: Uint8Array, count: number, width: number, height: number): number;
export function profileLayers(etm: Uint8Array, rgba: Uint8Array, width: number, height: number, runs: number): Array<{ name: string; kind: string; ms: number; macs: number }>;
export function simdPeak(iters: number): number | undefined;
export function setThreads(n: number): number;
export function threads(): number;
/** Only in the threaded modules: a helper worker's loop (never returns). */
export function poolHelper(): void;

export interface TrainerOptions {
  /** Default 100. */
  epochs?: number;
  /** Default 3e-3. */
  lr?: number;
  /** Default 'adam'. */
  optimizer?: 'sgd' | 'momentum' | 'nesterov' | 'adam' | 'adamw' | 'rmsprop';
  /** Default 'ce' (cross-entropy). */
  loss?: 'ce' | 'mse' | 'hinge';
  batchSize?: number;
  weightDecay?: number;
  /** Fraction of the samples held out to validate on (the trainer's default 0; `Classifier.train`'s 0.2 from 10 samples). */
  validation?: number;
  /** Epochs without a better validation loss before stopping early. */
  patience?: number;
  /** The trainer's default 0, `Classifier.train`'s 1: the same samples train the same head. */
  seed?: number;
}

/** One epoch's progress, as the Rust struct serializes it (snake_case). */
export interface EpochProgress {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  loss: number;
  accuracy: number;
  val_loss?: number;
  val_accuracy?: number;
  end_of_epoch: boolean;
  lr: number;
}

export interface HeadTrainerResult {
  dim: number;
  classes: string[];
  weight: number[];
  bias: number[];
  history: EpochProgress[];
  validationAccuracy?: number;
  confusion?: number[];
  stoppedEarly: boolean;
  cancelled: boolean;
}

export class HeadTrainer {
  free(): void;
  constructor(dim: number, classes: string[], options?: TrainerOptions);
  addSample(embedding: Float32Array, label: number): void;
  /** Start the next run from this head (`[classes, dim]` weights, `[classes]` bias) instead of a fresh one. */
  setInitialHead(weight: Float32Array, bias: Float32Array): void;
  sampleCount(): number;
  start(): void;
  /** One epoch; null when the run is over. */
  runEpoch(): EpochProgress | null;
  stop(): void;
  result(): HeadTrainerResult;
  logits(embedding: Float32Array): Float32Array;
}

export interface BlockTrainerResult {
  history: EpochProgress[];
  validationAccuracy?: number;
  confusion?: number[];
  stoppedEarly: boolean;
  cancelled: boolean;
  /** The fine-tuned model as `.etm` bytes. */
  model: Uint8Array;
}

export class BlockTrainer {
  free(): void;
  /** Last-blocks fine-tuning of a float `.etm`: the last `blocks` blocks, head conv and a new head train. */
  constructor(model: Uint8Array, blocks: number, classes: string[], options?: TrainerOptions);
  addImage(pixels: Uint8Array, width: number, height: number, label: number): void;
  sampleCount(): number;
  start(): void;
  runEpoch(): EpochProgress | null;
  stop(): void;
  result(): BlockTrainerResult;
}
