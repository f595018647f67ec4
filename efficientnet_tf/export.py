"""Exports for serving: a SavedModel with TF Serving signatures, a .keras file, and TFLite.

The SavedModel is built from the EMA weights in inference mode (moving BN statistics, no dropout,
no stochastic depth) and has three signatures:
  serving_default   image_bytes: string [batch] (JPEG, PNG, GIF, BMP; gray or RGB) -> decode,
                    center crop and resize in the graph -> classes, probabilities (top-k),
                    class_names when known. A REST body {"instances": [{"b64": "..."}]} works.
  predict_images    images: float32 [batch, size, size, 3] in [0, 255] -> logits, probabilities
  predict_uint8     the same for uint8 images.
Class names travel as an asset (assets/labels.txt). Bad bytes (empty, not an image, too many
pixels) fail with InvalidArgument naming the image, never crash the server.

The exported graph has no batch norm: each BN is folded into the kernel and bias of the
convolution before it (models/fold.py), and swish is the plain x * sigmoid(x), without the
training-time custom gradient. scripts/bench_serving.py measures what that buys.
"""

import dataclasses
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from efficientnet_tf.data import preprocess

MAX_PIXELS = 40_000_000  # 40 megapixels: a larger image is refused before it is decoded
LABELS_ASSET = "labels.txt"


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """The run's eval transform (preprocess.EvalTransform) and what serving adds to it."""

    transform: preprocess.EvalTransform
    top_k: int = 5
    max_pixels: int = MAX_PIXELS

    @property
    def image_size(self):
        return self.transform.image_size


def _header_size(data):
    """(height, width) from the image header, without decoding the pixels (0, 0 if unknown)."""
    def little(offset, count):
        values = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, count), tf.uint8),
                         tf.int64)
        return tf.reduce_sum(values * tf.constant([256 ** i for i in range(count)], tf.int64))

    def big(offset, count):
        values = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, count), tf.uint8),
                         tf.int64)
        return tf.reduce_sum(values * tf.constant([256 ** i for i in reversed(range(count))],
                                                  tf.int64))

    magic = tf.strings.substr(data, 0, 4)
    length = tf.strings.length(data)
    return tf.case([
        (tf.io.is_jpeg(data), lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)),
        (tf.logical_and(tf.equal(magic, b"\x89PNG"), length >= 24),
         lambda: tf.stack([big(20, 4), big(16, 4)])),
        (tf.logical_and(tf.equal(tf.strings.substr(data, 0, 3), b"GIF"), length >= 10),
         lambda: tf.stack([little(8, 2), little(6, 2)])),
        (tf.logical_and(tf.equal(tf.strings.substr(data, 0, 2), b"BM"), length >= 26),
         lambda: tf.stack([tf.abs(little(22, 4) - tf.cast(little(22, 4) >= 2 ** 31, tf.int64)
                                  * 2 ** 32), little(18, 4)])),
    ], default=lambda: tf.zeros([2], tf.int64))


def _is_image(data):
    return tf.reduce_any(tf.stack([
        tf.io.is_jpeg(data), tf.equal(tf.strings.substr(data, 0, 4), b"\x89PNG"),
        tf.equal(tf.strings.substr(data, 0, 3), b"GIF"),
        tf.equal(tf.strings.substr(data, 0, 2), b"BM")]))


def _check(condition, message):
    """An Assert whose message is one readable string (InvalidArgument when it fails)."""
    return tf.debugging.Assert(condition, [message])


def decode_for_serving(data, index, settings):
    """One request image -> float32 [size, size, 3]; InvalidArgument naming it when it is bad."""
    label = tf.strings.format("image_bytes[{}]", index)
    empty = _check(tf.strings.length(data) > 0, tf.strings.join([label, " is empty"]))
    with tf.control_dependencies([empty]):
        start = tf.strings.format("{}", tf.io.decode_raw(
            tf.strings.substr(tf.strings.join([data, b"\0" * 8]), 0, 8), tf.uint8), summarize=8)
        known = _check(_is_image(data), tf.strings.join([
            label, " is not a JPEG, PNG, GIF or BMP image; its first bytes are ", start]))
    with tf.control_dependencies([known]):
        size = _header_size(data)
        small = _check(size[0] * size[1] <= settings.max_pixels, tf.strings.join([
            label, tf.strings.format(" is {} x {} pixels; at most {} pixels are accepted",
                                     (size[1], size[0], settings.max_pixels))]))
    with tf.control_dependencies([small]):
        return preprocess.preprocess_eval(data, settings.transform)


class ServingModule(tf.Module):
    """The model and its signatures, as one trackable for tf.saved_model.save."""

    def __init__(self, model, settings, class_names=None):
        super().__init__(name="efficientnet_serving")
        self.model = model
        # Keras 3 variables are not tracked as tf.Variables by tf.Module, so the SavedModel's
        # TF1-style restore op (what TF Serving and saved_model_cli run use) would skip them and
        # fail with "Could not find variable" (keras-team/keras#19274). Track them explicitly.
        self.model_variables = [getattr(v, "value", v) for v in model.variables]
        self.settings = settings
        self.num_classes = int(model.output_shape[-1])
        self.top_k = min(settings.top_k, self.num_classes)
        self.class_names = (tf.constant(list(class_names)) if class_names else None)
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of "
                             f"{self.num_classes} classes")
        size = settings.image_size
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")])
        self.predict_images = tf.function(
            self._predict, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                          "images")])
        self.predict_uint8 = tf.function(
            self._predict, input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8,
                                                          "images")])

    def _predict(self, images):
        logits = tf.cast(self.model(tf.cast(images, tf.float32), training=False), tf.float32)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}

    def _serve_bytes(self, image_bytes):
        indices = tf.range(tf.shape(image_bytes)[0], dtype=tf.int64)
        images = tf.map_fn(
            lambda item: decode_for_serving(item[0], item[1], self.settings),
            (image_bytes, indices),
            fn_output_signature=tf.TensorSpec(
                [self.settings.image_size, self.settings.image_size, 3], tf.float32))
        probabilities = self._predict(images)["probabilities"]
        top = tf.math.top_k(probabilities, k=self.top_k)
        outputs = {"classes": top.indices, "probabilities": top.values}
        if self.class_names is not None:
            outputs["class_names"] = tf.gather(self.class_names, top.indices)
        return outputs


def save_model(model, export_dir, settings, class_names=None):
    """Writes the SavedModel to `export_dir` (any TF filesystem path, gs:// included)."""
    module = ServingModule(model, settings, class_names)
    with tempfile.TemporaryDirectory() as scratch:
        if class_names:
            labels = os.path.join(scratch, LABELS_ASSET)  # local: scratch, copied as an asset
            with open(labels, "w", encoding="utf-8") as stream:  # local: the same scratch file
                stream.write("".join(f"{name}\n" for name in class_names))
            module.labels_asset = tf.saved_model.Asset(labels)
        signatures = {"serving_default": module.serve_bytes,
                      "predict_images": module.predict_images,
                      "predict_uint8": module.predict_uint8}
        tf.saved_model.save(module, export_dir, signatures=signatures)
    return export_dir


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


def tflite_bytes(saved_model_dir, quantize="none", calibration_images=None):
    """TFLite flatbuffer of the predict_images signature: float32, dynamic-range or int8.

    int8 calibrates the activations' ranges on `calibration_images` (float32 [N, S, S, 3] in
    [0, 255], e.g. from the eval split); inputs and outputs stay float32 for the caller.
    """
    if quantize not in ("none", "dynamic", "int8"):
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


def read_labels(export_dir):
    """Class names of an export (assets/labels.txt), or None."""
    path = f"{export_dir.rstrip('/')}/assets/{LABELS_ASSET}"
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as stream:
        return [line.rstrip("\n") for line in stream if line.strip()]


FORMATS = ("saved_model", "keras", "tflite")


def export_workdir(workdir, export_path, export_format="saved_model", quantize="none", top_k=5,
                   calibration_count=64):
    """Exports the newest checkpoint of a training run (its EMA weights), as `export_format`.

    Returns the path written. tflite writes EXPORT_PATH as a .tflite file (float32, dynamic-range
    or int8, calibrated on `calibration_count` eval images).
    """
    from efficientnet_tf.train import checkpoints

    if export_format not in FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; use one of {FORMATS}")
    keras.mixed_precision.set_global_policy("float32")  # serving computes in float32
    model, _, saved = checkpoints.load_trained_model(workdir)
    resolved = saved["resolved"]
    settings = serving_settings(saved, top_k)
    if export_format == "keras":  # the trainable form, for Keras users who fine-tune
        return save_keras(model, export_path)
    model = serving_model(model, saved["model"]["name"], resolved["num_classes"])
    if export_format == "saved_model":
        return save_model(model, export_path, settings, resolved.get("class_names"))
    with tempfile.TemporaryDirectory() as scratch:
        save_model(model, scratch, settings, resolved.get("class_names"))
        calibration = None
        if quantize == "int8":
            calibration = calibration_images(saved, settings, calibration_count)
        flatbuffer = tflite_bytes(scratch, quantize, calibration)
    with tf.io.gfile.GFile(export_path, "wb") as stream:
        stream.write(flatbuffer)
    return export_path


def serving_model(model, name, num_classes):
    """The inference form of a trained model: BN folded into the convolutions, plain swish."""
    from efficientnet_tf.models import fold
    from efficientnet_tf.specs import registry

    return fold.folded_copy(model, registry.get(name), num_classes,
                            activation="inference_swish")


def serving_settings(saved_config, top_k=5):
    """Serving settings from a run's config.json: the eval transform the run recorded."""
    transform = preprocess.EvalTransform(**saved_config["resolved"]["eval_transform"])
    return ServingSettings(transform=transform, top_k=top_k)


def calibration_images(saved_config, settings, count):
    """`count` preprocessed images of the run's eval split, for int8 calibration."""
    from efficientnet_tf.data import pipeline, sources
    from efficientnet_tf.train import checkpoints

    config = checkpoints.config_from_dict(saved_config)
    source = sources.from_config(config.data)
    dataset = pipeline.eval_dataset(source, settings.transform, 1, source.num_classes)
    images = [image[0].numpy() for image, label in dataset.take(count) if label[0] >= 0]
    if not images:
        raise ValueError("the eval split gave no images to calibrate int8 quantization with")
    return np.stack(images)
