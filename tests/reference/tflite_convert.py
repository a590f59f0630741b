"""TF2 full-integer int8 TFLite models made by TensorFlow's own converter, for the importer's
interop tests (run in the converter environment that scripts/test-deps.sh creates).

usage: tflite_convert.py CIFAR_TRAIN.bin OUTDIR

Writes (Keras models with random weights, seed 0, batch norm statistics from 64 of the
images; calibrated by the converter on the first 200 images of the CIFAR-10 training file,
resized, never on test images; TFLite Support metadata with the CIFAR-10 class names, written
by TFLite Support's own populator):
  mobilenet_v2_int8.tflite  Keras MobileNetV2, alpha 0.35, 96x96, 10 classes; float input
                            and output, so the file has QUANTIZE at the input and DEQUANTIZE
                            at the output (what Model Maker and most downloads are)
  op_zoo_int8.tflite        a small network of the other int8 operators TF2 files use
                            (MAX_POOL_2D, AVERAGE_POOL_2D, CONCATENATION, HARD_SWISH,
                            LOGISTIC, MUL, ADD, MEAN, FULLY_CONNECTED, SOFTMAX; Keras's
                            zero padding is folded into the convolutions by the converter);
                            int8 input and output
  ops.json                  the operators each file holds, as the converter wrote them
"""
import json
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

keras = tf.keras


def cifar_images(path, count, size):
    raw = np.fromfile(path, dtype=np.uint8)[: count * 3073].reshape(count, 3073)
    rgb = raw[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    return tf.image.resize(rgb, (size, size)).numpy() / 127.5 - 1.0


def mobilenet_v2(images):
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
    # Random weights with batch norm at its initial identity make activations vanish layer
    # by layer (scales of 1e-8 at the pool); one training-mode pass with momentum 0 sets each
    # batch norm's statistics to those of the images, as a trained network has them.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(images, training=True)
    return model


def op_zoo(images):
    layers = keras.layers
    x = keras.Input((64, 64, 3), batch_size=1)
    a = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
    a = layers.ZeroPadding2D(((0, 1), (0, 1)))(a)
    a = layers.DepthwiseConv2D(3, strides=2, padding="valid")(a)
    a = layers.Activation("hard_swish")(a)
    m = layers.MaxPooling2D(2, strides=1, padding="same")(a)
    p = layers.AveragePooling2D(3, strides=1, padding="same")(a)
    c = layers.Concatenate()([m, p])
    c = layers.Conv2D(24, 1)(c)
    # A spatial gate (a squeeze-and-excitation gate would pool with a MEAN that keeps its
    # dimensions, which the importer refuses).
    gate = layers.Conv2D(24, 1, activation="sigmoid")(c)
    s = layers.Multiply()([c, gate])
    r = layers.Add()([s, layers.Conv2D(24, 1)(c)])
    r = layers.ReLU()(r)
    g = layers.GlobalAveragePooling2D()(r)
    out = layers.Dense(10, activation="softmax")(g)
    return keras.Model(x, out)


def convert(model, calibration, int8_io):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for img in calibration:
            yield [img[None]]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def with_metadata(blob, name, normalization, workdir):
    """The model with TFLite Support metadata, written by TFLite Support's own populator (the
    library Model Maker and MediaPipe write theirs with): the class names as the output's
    TENSOR_AXIS_LABELS file, and for a float input its normalization (mean, std)."""
    import flatbuffers
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as fb
    from tensorflow_lite_support.metadata.python import metadata

    labels = os.path.join(workdir, "labels.txt")
    with open(labels, "w") as f:
        f.write("\n".join(CIFAR10) + "\n")
    image = fb.TensorMetadataT()
    image.name = "image"
    if normalization:
        unit = fb.ProcessUnitT()
        unit.optionsType = fb.ProcessUnitOptions.NormalizationOptions
        unit.options = fb.NormalizationOptionsT()
        unit.options.mean, unit.options.std = [normalization[0]], [normalization[1]]
        image.processUnits = [unit]
    probability = fb.TensorMetadataT()
    probability.name = "probability"
    label_file = fb.AssociatedFileT()
    label_file.name = "labels.txt"
    label_file.description = "CIFAR-10 class names"
    label_file.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    probability.associatedFiles = [label_file]
    graph = fb.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [image], [probability]
    model = fb.ModelMetadataT()
    model.name, model.description = name, "edgetune interop test model (random weights)"
    model.subgraphMetadata = [graph]
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    populator = metadata.MetadataPopulator.with_model_buffer(blob)
    populator.load_metadata_buffer(b.Output())
    populator.load_associated_files([labels])
    populator.populate()
    return populator.get_model_buffer()


def op_names(blob):
    it = tf.lite.Interpreter(model_content=blob)
    return sorted({o["op_name"] for o in it._get_ops_details()})


def main():
    train, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    ops = {}
    for name, make, size, int8_io in [
        ("mobilenet_v2_int8", mobilenet_v2, 96, False),
        ("op_zoo_int8", op_zoo, 64, True),
    ]:
        keras.utils.set_random_seed(0)
        images = cifar_images(train, 200, size)
        blob = convert(make(images[:64]), images, int8_io)
        # The images above are scaled to [-1, 1]: (pixel - 127.5) / 127.5.
        blob = with_metadata(blob, name, None if int8_io else (127.5, 127.5), out)
        with open(os.path.join(out, name + ".tflite"), "wb") as f:
            f.write(blob)
        ops[name] = op_names(blob)
        print(f"{name}.tflite: {len(blob)} bytes, operators {', '.join(ops[name])}")
    with open(os.path.join(out, "ops.json"), "w") as f:
        json.dump(ops, f, indent=1)


if __name__ == "__main__":
    main()
