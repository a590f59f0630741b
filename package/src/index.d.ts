// Types of @edgetune/web's entry point (index.js). Hand-written, and checked against the real
// objects: tests/e2e/package.test.mjs reads every interface here with the TypeScript compiler
// and compares its fields with what the running engine returns. No `any` (a test greps).

import type { TrainerOptions } from './engine.js';

/** What an `EdgetuneError` is about; switch on it. */
export type ErrorCode =
  /** The model could not be fetched (network, HTTP status). */
  | 'model-unavailable'
  /** The model file is not one the engine or importer reads (corrupt, unsupported op). */
  | 'model-invalid'
  /** `backend: 'gpu'` was asked for and WebGPU cannot run the model here. */
  | 'gpu-unavailable'
  /** A frame with no pixels, a wrong RGBA length, an empty class name. */
  | 'input-invalid'
  /** A call arrived while the engine was still running the previous one (frames are not queued), or `train` while a run is on. */
  | 'busy'
  /** `train` with fewer than two classes taught, or `exportModel` before training. */
  | 'samples-insufficient'
  /** The trainer refused the samples or options (the message says which). */
  | 'training-failed'
  /** `load` was given something `save` did not make, or made with another model. */
  | 'state-invalid'
  /** The engine or trainer worker died (out of memory, a lost script). */
  | 'worker-crashed'
  /** The classifier was disposed. */
  | 'disposed';

export declare class EdgetuneError extends Error {
  readonly name: 'EdgetuneError';
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
}

/** Where a model comes from: a URL (string or URL), or the file's bytes. `.etm`, `.tflite` and `.onnx` are read. */
export type ModelSource = string | URL | Uint8Array | ArrayBuffer | Blob;

/** Pixels as RGBA bytes, row-major, 4 per pixel (what `getImageData` gives). */
export interface RgbaImage {
  readonly data: Uint8Array | Uint8ClampedArray;
  readonly width: number;
  readonly height: number;
}

/** Anything `classify`, `embed` and `teach` take: centre-cropped to a square, then the model's own preprocessing. */
export type ImageInput =
  | HTMLVideoElement
  | HTMLImageElement
  | HTMLCanvasElement
  | OffscreenCanvas
  | ImageBitmap
  | VideoFrame
  | ImageData
  | RgbaImage;

export interface ClassifierOptions {
  /** The model; the package's EfficientNet-Lite0 int8 (`defaultModelUrl()`) when left out. */
  model?: ModelSource;
  /** 'auto' (default): the CPU answers at once while WebGPU is self-tested behind it, and takes over if it is exact and faster. */
  backend?: 'auto' | 'gpu' | 'cpu';
  /** CPU threads (needs a cross-origin isolated page); default: the core count, at most 4. */
  threads?: number;
  /** 'plain' keeps the relaxed-SIMD builds out (for comparisons); results are identical. */
  simd?: 'auto' | 'plain';
}

export interface CpuReport {
  /** The CPU module in use: 'single' | 'relaxed' | 'threads' | 'threads-relaxed'. */
  variant: 'single' | 'relaxed' | 'threads' | 'threads-relaxed';
  threads: number;
  /** Why not threaded ('' when it is). */
  reason: string;
}

export interface BackendReport {
  backend: 'gpu' | 'cpu';
  precision: 'int8' | 'f32';
  /** The GPU adapter, or the CPU kernels' name. */
  device: string;
  /** GPU: 'dot4I8Packed' or 'unpacked'; null on the CPU. */
  variant: string | null;
  /** Why this backend (self-test figures, or why not the GPU). */
  reason: string;
  /** True while the WebGPU self-test runs behind the CPU (see `whenBackendSettled`). */
  probing: boolean;
  /** Which CPU module the engine worker loaded. */
  cpu: CpuReport | null;
}

export interface Normalization {
  /** Per channel (R, G, B), pixel units: `(x - mean[c]) / scale[c]`. */
  mean: number[];
  scale: number[];
}

export interface ModelInfo {
  architecture: string;
  precision: 'int8' | 'f32';
  /** How many classes the model itself answers with. */
  classes: number;
  /** The embedding width a trained head takes; null when the model has no dense head to replace. */
  dim: number | null;
  /** [height, width, channels]. */
  input: number[];
  /** Where the model came from (file name, converter). */
  source: string;
  normalization: Normalization;
}

export interface Prediction {
  /** The class's index in the model's (or the trained head's) class list. */
  index: number;
  label: string;
  probability: number;
}

export interface ClassifyOptions {
  /** How many classes to return (default 5). */
  k?: number;
  /** Also return the embedding and/or all logits. */
  include?: Array<'embedding' | 'logits'>;
}

export interface Classification {
  /** The best class: the trained head's when there is one, else the model's. */
  label: string;
  /** The model's own top classes. */
  top: Prediction[];
  /** The trained head's top classes (null before `train`/`load`). */
  head: Prediction[] | null;
  /** Engine time for this frame, in milliseconds (preprocessing, network, head). */
  ms: number;
  backend: 'gpu' | 'cpu';
  embedding?: Float32Array;
  logits?: Float32Array;
}

export interface Example {
  label: string;
  count: number;
}

/** Training settings (all optional): the engine's own, declared in engine.d.ts. */
export type TrainOptions = TrainerOptions;

export interface TrainProgress {
  epoch: number;
  epochs: number;
  loss: number;
  accuracy: number;
  /** null without a validation split. */
  valLoss: number | null;
  valAccuracy: number | null;
  lr: number;
}

export interface TrainResult {
  /** The head's classes, in index order. */
  classes: string[];
  dim: number;
  /** Epochs run. */
  epochs: number;
  history: TrainProgress[];
  /** Accuracy on the held-out split (null without one). */
  validationAccuracy: number | null;
  stoppedEarly: boolean;
  /** True when `stopTraining` ended the run (the head is the best so far). */
  cancelled: boolean;
}

export interface SavedSamples {
  label: string;
  embeddings: Float32Array[];
}

export interface SavedHead {
  /** [classes, dim], row-major. */
  weight: Float32Array;
  bias: Float32Array;
  classes: string[];
}

/** What `save` returns: structured-clonable (IndexedDB, postMessage); `load` takes it back. */
export interface SavedClassifier {
  format: 'edgetune-classifier';
  version: 1;
  /** The model it was made with (length and hash of its bytes). */
  backbone: string;
  dim: number | null;
  samples: SavedSamples[];
  head: SavedHead | null;
}

export declare class Classifier {
  private constructor();
  /** What runs; updated when the WebGPU self-test decides. */
  readonly backend: BackendReport;
  readonly info: ModelInfo;
  /** The model's own classes. */
  readonly labels: string[];
  /** The square frame side sent to the engine. */
  readonly frameSize: number;
  /** The classes taught so far, with their sample counts. */
  readonly examples: Example[];
  /** The trained head's classes (empty before `train`/`load`). */
  readonly classes: string[];
  /** Resolves once 'auto' has settled on a backend (at once for 'cpu'/'gpu'). */
  whenBackendSettled(): Promise<BackendReport>;
  classify(input: ImageInput, options?: ClassifyOptions): Promise<Classification>;
  /** The model's pooled features of one frame. */
  embed(input: ImageInput): Promise<Float32Array>;
  /** Adds one example of `label`; resolves to that class's sample count. */
  teach(label: string, input: ImageInput): Promise<number>;
  /** Drops the examples of `label` (all of them without one). */
  forget(label?: string): void;
  /** Trains a head on the examples (in a worker) and classifies with it from then on. */
  train(options?: TrainOptions, onProgress?: (progress: TrainProgress) => void): Promise<TrainResult>;
  stopTraining(): Promise<void>;
  save(): SavedClassifier;
  load(state: SavedClassifier): Promise<void>;
  /** The model with the trained head, as an `.etm` file the edgetune CLI and page open. */
  exportModel(): Promise<Uint8Array>;
  /** Stops the workers; later calls reject with code 'disposed'. */
  dispose(): void;
}

/** The URL of the model the package ships (an asset next to the module; bundlers copy it). */
export declare function defaultModelUrl(): URL;

/** Starts the engine in a worker with the model; rejects with an `EdgetuneError`. */
export declare function createClassifier(options?: ClassifierOptions): Promise<Classifier>;
