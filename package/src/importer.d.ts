// Types of @edgetune/web/importer: the engine module (engine.d.ts) plus the ONNX and TFLite
// readers. Loaded on demand (about twice the engine's size); `createClassifier` loads it by
// itself when given a model that is not an `.etm`.
export * from './engine.js';
export { default } from './engine.js';

/**
 * A `.tflite`, `.onnx` or `.etm` file converted to `.etm` bytes for `Engine.create` (format by
 * extension, else by content). `labels`: class names when the file has none; `normalization:
 * 'imagenet'`: torchvision's per-channel mean/std (an ONNX file carries no preprocessing).
 */
export function importModel(bytes: Uint8Array, fileName: string, labels?: string[] | null, normalization?: 'imagenet' | null): Uint8Array;
