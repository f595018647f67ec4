"""What every export uses: request images decoded with checks that name a bad image, a serving
module saved as a SavedModel with its assets, the metadata an export says of itself, a .keras
file, and TFLite conversion of a SavedModel signature.

A serving module (a task's: tasks/<task>/serving.py) is a tf.Module with `signatures()`,
`metadata` (a dict, saved as assets/efficientnet_tf.json), `class_name_list` (saved as
assets/labels.txt) and `tflite_bytes(quantize, calibration_data, calibration_count)`.
"""

import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from efficientnet_tf.data import image_header, labels

MAX_PIXELS = image_header.MAX_PIXELS  # a larger image is refused before it is decoded
METADATA_ASSET = "efficientnet_tf.json"
QUANTIZATIONS = ("none", "dynamic", "int8")


def check(condition, message):
    """An Assert whose message is one readable string (InvalidArgument when it fails)."""
    return tf.debugging.Assert(condition, [message])


def checked_decode(data, index, max_pixels, prepare, default, min_side=1):
    """prepare(data) for one request image (`data`: its encoded bytes, `index`: its place in
    the request), after checks that fail with one InvalidArgument naming the image: empty, not
    a known format, a header that does not parse, more than `max_pixels` or a side shorter
    than `min_side`, data that does not decode. `default` is a structure like prepare's result
    (the shapes it must have)."""
    label = tf.strings.format("image_bytes[{}]", index)
    empty = check(tf.strings.length(data) > 0, tf.strings.join([label, " is empty"]))
    with tf.control_dependencies([empty]):
        known = check(image_header.is_image(data), tf.strings.join([
            label, f" is not a {image_header.FORMATS} image; its first bytes are ",
            image_header.first_bytes(data)]))
    damaged = tf.strings.join([label, " does not decode: its ", image_header.format_name(data),
                               " data is truncated or corrupt"])
    with tf.control_dependencies([known]):
        size, readable = _attempt(image_header.size, data, tf.zeros([2], tf.int64))
    with tf.control_dependencies([check(readable, damaged)]):
        small = check(size[0] * size[1] <= max_pixels, tf.strings.join([
            label, tf.strings.format(" is {} x {} pixels; at most {} pixels are accepted",
                                     (size[1], size[0], max_pixels))]))
        large = check(tf.reduce_min(size) >= min_side, tf.strings.join([
            label, tf.strings.format(" is {} x {} pixels; at least {} x {} are needed",
                                     (size[1], size[0], min_side, min_side))]))
    with tf.control_dependencies([small, large]):
        value, decoded = _attempt(prepare, data, default)
    with tf.control_dependencies([check(decoded, damaged)]):
        return tf.nest.map_structure(tf.identity, value)


def _attempt(fn, data, default):
    """(fn(data), True), or (default, False) when fn fails on `data`: a header can be valid
    over truncated or garbled data, and the decoder's own error names no image. The attempt
    runs as a one-element tf.data pipeline whose errors are dropped (ignore_errors), which a
    serving graph (TF Serving's included) can hold, unlike a Python callback."""
    attempt = tf.data.Dataset.from_tensors(data).map(lambda item: (fn(item), True))
    fallback = tf.data.Dataset.from_tensors((default, False))
    value, succeeded = attempt.ignore_errors().concatenate(fallback).take(1).get_single_element()
    tf.nest.map_structure(lambda tensor, like: tensor.set_shape(like.shape), value, default)
    return value, succeeded


def tracked_variables(model):
    """The model's variables as tf.Variables, for a serving module to hold: Keras 3 variables
    are not tracked as tf.Variables by tf.Module, so the SavedModel's TF1-style restore op
    (what TF Serving and saved_model_cli run use) would skip them and fail with "Could not find
    variable" (keras-team/keras#19274)."""
    return [getattr(variable, "value", variable) for variable in model.variables]


def save_module(module, export_dir):
    """Writes a serving module as a SavedModel to `export_dir` (any TF filesystem
    path, gs:// included), its class names as assets/labels.txt."""
    with tempfile.TemporaryDirectory() as scratch:
        if module.class_name_list:
            path = os.path.join(scratch, labels.LABELS_FILE)  # local: scratch, copied as an asset
            labels.write_labels(path, module.class_name_list)
            module.labels_asset = tf.saved_model.Asset(path)
        path = os.path.join(scratch, METADATA_ASSET)  # local: scratch, copied as an asset
        with tf.io.gfile.GFile(path, "w") as stream:
            stream.write(json.dumps(module.metadata, indent=2, sort_keys=True) + "\n")
        module.metadata_asset = tf.saved_model.Asset(path)
        tf.saved_model.save(module, export_dir, signatures=module.signatures())
    return export_dir


def read_metadata(export_dir):
    """What an export says of itself (assets/efficientnet_tf.json), or {} for older exports."""
    path = f"{export_dir.rstrip('/')}/assets/{METADATA_ASSET}"
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as stream:
        return json.load(stream)


def save_keras(model, path):
    """The model as a .keras file (takes [0, 255] images; logits out)."""
    if not path.endswith(".keras"):
        raise ValueError(f"a Keras export path must end in .keras, got {path!r}")
    if path.startswith(("gs://", "ram://")) or "://" in path:
        with tempfile.TemporaryDirectory() as scratch:
            local = os.path.join(scratch, path.rsplit("/", 1)[-1])  # local: scratch copy
            model.save(local)
            tf.io.gfile.copy(local, path, overwrite=True)
    else:
        model.save(path)
    return path


def read_labels(export_dir):
    """Class names of an export (assets/labels.txt), or None."""
    return labels.read_labels(f"{export_dir.rstrip('/')}/assets/{labels.LABELS_FILE}")


def write_bytes(path, data):
    """Writes `data` to `path` (any TF filesystem path); returns the path."""
    with tf.io.gfile.GFile(path, "wb") as stream:
        stream.write(data)
    return path


def tflite_from_saved_model(saved_model_dir, quantize="none", calibration_images=None):
    """The TFLite flatbuffer of the predict_images signature of `saved_model_dir`."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be none, dynamic or int8, got {quantize!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["predict_images"])
    if quantize in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "int8":
        if calibration_images is None or not len(calibration_images):
            raise ValueError("int8 quantization needs calibration images from the eval split")

        def representative():
            for image in calibration_images:
                yield {"images": np.asarray(image, np.float32)[None]}

        converter.representative_dataset = representative
    return converter.convert()


def run_tflite(model_bytes, images):
    """(logits, probabilities) of a TFLite model from tflite_bytes on float32 images."""
    interpreter = tf.lite.Interpreter(model_content=model_bytes)
    runner = interpreter.get_signature_runner("predict_images")
    outputs = [runner(images=np.asarray(image, np.float32)[None]) for image in images]
    return (np.concatenate([o["logits"] for o in outputs]),
            np.concatenate([o["probabilities"] for o in outputs]))
