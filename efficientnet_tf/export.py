"""Exports for serving: a SavedModel with TF Serving signatures, a .keras file, and TFLite.

The SavedModel is built from the EMA weights in inference mode (moving BN statistics, no dropout,
no stochastic depth). A classifier's (ServingModule) has three signatures:
  serving_default   image_bytes: string [batch] (JPEG, PNG, GIF, BMP; gray or RGB) -> decode,
                    center crop and resize in the graph -> classes, probabilities (top-k),
                    class_names when known. A REST body {"instances": [{"b64": "..."}]} works.
  predict_images    images: float32 [batch, size, size, 3] in [0, 255] -> logits, probabilities
  predict_uint8     the same for uint8 images.
Class names travel as an asset (assets/labels.txt). Bad bytes (empty, not an image, too many
pixels, data that does not decode behind a valid header) fail with InvalidArgument naming the
image by its index, never crash the server.

The exported graph has no batch norm: each BN is folded into the kernel and bias of the
convolution before it (models/fold.py), and swish is the plain x * sigmoid(x), without the
training-time custom gradient. scripts/bench_serving.py measures what that buys.

A detector's (DetectionServingModule) returns boxes in the original image's pixels after NMS in
the graph: serving_default takes image bytes, predict_uint8 fitted images; the same checks on bad
bytes. Its metadata records the NMS. Its batch norms are folded too (fold.folded_detector: the
heads' convolutions, shared across levels in training, become one copy per level).
"""

import dataclasses
import json
import os
import tempfile

import tensorflow as tf

from efficientnet_tf import tflite
from efficientnet_tf.data import image_header, labels, preprocess
from efficientnet_tf.data.detection import anchors as anchors_lib
from efficientnet_tf.data.detection import pipeline as detection_pipeline
from efficientnet_tf.data.detection import postprocess
from efficientnet_tf.models import efficientnet, fold
from efficientnet_tf.specs import registry

MAX_PIXELS = image_header.MAX_PIXELS  # a larger image is refused before it is decoded
METADATA_ASSET = "efficientnet_tf.json"
# A detector refuses smaller images (a 1 x 1 tracking pixel is a client's mistake, not a scene).
MIN_DETECTION_SIDE = 8


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """The run's eval transform (preprocess.EvalTransform) and what serving adds to it."""

    transform: preprocess.EvalTransform
    top_k: int = 5
    max_pixels: int = MAX_PIXELS
    # How logits become probabilities: softmax, or sigmoid for a multi-label head (the
    # ImageNet-21k checkpoints were trained with a sigmoid loss).
    probabilities: str = "softmax"

    @property
    def image_size(self):
        return self.transform.image_size


def _check(condition, message):
    """An Assert whose message is one readable string (InvalidArgument when it fails)."""
    return tf.debugging.Assert(condition, [message])


def decode_for_serving(data, index, settings):
    """One request image -> float32 [size, size, 3]; InvalidArgument naming it when it is bad."""
    size = settings.image_size
    return checked_decode(data, index, settings.max_pixels,
                          lambda item: preprocess.preprocess_eval(item, settings.transform),
                          tf.zeros([size, size, 3]))


def checked_decode(data, index, max_pixels, prepare, default, min_side=1):
    """prepare(data) for one request image (`data`: its encoded bytes, `index`: its place in
    the request), after checks that fail with one InvalidArgument naming the image: empty, not
    a known format, a header that does not parse, more than `max_pixels` or a side shorter
    than `min_side`, data that does not decode. `default` is a structure like prepare's result
    (the shapes it must have)."""
    label = tf.strings.format("image_bytes[{}]", index)
    empty = _check(tf.strings.length(data) > 0, tf.strings.join([label, " is empty"]))
    with tf.control_dependencies([empty]):
        known = _check(image_header.is_image(data), tf.strings.join([
            label, f" is not a {image_header.FORMATS} image; its first bytes are ",
            image_header.first_bytes(data)]))
    damaged = tf.strings.join([label, " does not decode: its ", image_header.format_name(data),
                               " data is truncated or corrupt"])
    with tf.control_dependencies([known]):
        size, readable = _attempt(image_header.size, data, tf.zeros([2], tf.int64))
    with tf.control_dependencies([_check(readable, damaged)]):
        small = _check(size[0] * size[1] <= max_pixels, tf.strings.join([
            label, tf.strings.format(" is {} x {} pixels; at most {} pixels are accepted",
                                     (size[1], size[0], max_pixels))]))
        large = _check(tf.reduce_min(size) >= min_side, tf.strings.join([
            label, tf.strings.format(" is {} x {} pixels; at least {} x {} are needed",
                                     (size[1], size[0], min_side, min_side))]))
    with tf.control_dependencies([small, large]):
        value, decoded = _attempt(prepare, data, default)
    with tf.control_dependencies([_check(decoded, damaged)]):
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


class ServingModule(tf.Module):
    """The model and its signatures, as one trackable for tf.saved_model.save."""

    def __init__(self, model, settings, class_names=None, metadata=None):
        super().__init__(name="efficientnet_serving")
        # What predict reads back (assets/efficientnet_tf.json): the task, the model, ...
        self.metadata = {"task": "classification", **(metadata or {}),
                         "image_size": settings.image_size, "top_k": settings.top_k,
                         "input_scaling": efficientnet.input_scaling_of(model),
                         "probabilities": settings.probabilities}
        self.model = model
        # Keras 3 variables are not tracked as tf.Variables by tf.Module, so the SavedModel's
        # TF1-style restore op (what TF Serving and saved_model_cli run use) would skip them and
        # fail with "Could not find variable" (keras-team/keras#19274). Track them explicitly.
        self.model_variables = [getattr(v, "value", v) for v in model.variables]
        self.settings = settings
        self.num_classes = int(model.output_shape[-1])
        self.top_k = min(settings.top_k, self.num_classes)
        self.class_name_list = list(class_names) if class_names else None
        self.class_names = (tf.constant(self.class_name_list) if class_names else None)
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

    def signatures(self):
        return {"serving_default": self.serve_bytes, "predict_images": self.predict_images,
                "predict_uint8": self.predict_uint8}

    def _predict(self, images):
        logits = tf.cast(self.model(tf.cast(images, tf.float32), training=False), tf.float32)
        probabilities = (tf.sigmoid(logits) if self.settings.probabilities == "sigmoid"
                         else tf.nn.softmax(logits))
        return {"logits": logits, "probabilities": probabilities}

    def _serve_bytes(self, image_bytes):
        count = tf.shape(image_bytes)[0]
        indices = tf.range(count, dtype=tf.int64)
        images = tf.map_fn(
            lambda item: decode_for_serving(item[0], item[1], self.settings),
            (image_bytes, indices),
            fn_output_signature=tf.TensorSpec(
                [self.settings.image_size, self.settings.image_size, 3], tf.float32))
        # An empty request gets empty outputs (some kernels refuse a batch of 0).
        probabilities = tf.cond(count > 0, lambda: self._predict(images)["probabilities"],
                                lambda: tf.zeros([0, self.num_classes]))
        top = tf.math.top_k(probabilities, k=self.top_k)
        outputs = {"classes": top.indices, "probabilities": top.values}
        if self.class_names is not None:
            outputs["class_names"] = tf.gather(self.class_names, top.indices)
        return outputs


class DetectionServingModule(tf.Module):
    """A detector and its signatures, as one trackable for tf.saved_model.save.

      serving_default  image_bytes: string [batch] (JPEG, PNG, GIF, BMP; any size) -> each
                       image resized to fit size x size (aspect kept, padded bottom/right, as
                       in evaluation) -> detections: boxes [batch, D, 4] float32 in the
                       ORIGINAL image's pixels, ordered (ymin, xmin, ymax, xmax); scores
                       [batch, D]; classes [batch, D] int32, 0-based (-1 past num_detections);
                       class_names [batch, D] ("" past num_detections); num_detections [batch].
      predict_uint8    images: uint8 [batch, size, size, 3], already fitted and padded
                       (with the metadata's pad_colour) -> the same detections, boxes in input
                       pixels (no class names).
    D is the NMS's max_detections (100). Rows are sorted by score. The NMS (`nms`,
    postprocess.NmsSettings; hard per-class NMS by default) is recorded in the metadata.
    """

    def __init__(self, model, image_size, anchor_settings, nms=postprocess.SERVING_NMS,
                 class_names=None, metadata=None, max_pixels=MAX_PIXELS, pad_colour=None):
        super().__init__(name="efficientdet_serving")
        self.model = model
        self.model_variables = [getattr(v, "value", v) for v in model.variables]  # see above
        self.image_size = image_size
        self.nms = nms
        self.max_pixels = max_pixels
        self.num_classes = _detector_classes(model, anchor_settings)
        self.anchors = tf.constant(anchors_lib.generate((image_size, image_size),
                                                        anchor_settings))
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for a detector of "
                             f"{self.num_classes} classes")
        self.class_name_list = list(class_names) if class_names else None
        self.class_names = tf.constant(list(class_names) + [""] if class_names else
                                       [str(c) for c in range(self.num_classes)] + [""])
        # Padding looks as the official code's (which pads after normalizing): the colour the
        # model's input scaling maps to 0, unless the run was trained otherwise (older runs:
        # black). predict_uint8's and TFLite's callers pad with it too (the metadata says it).
        self.input_scaling = efficientnet.input_scaling_of(model)
        self.pad_colour = tuple(pad_colour if pad_colour is not None
                                else registry.zero_colour(self.input_scaling))
        self.metadata = {"task": "detection", **(metadata or {}), "image_size": image_size,
                         "num_classes": self.num_classes, "box_order": "ymin,xmin,ymax,xmax",
                         "nms": dataclasses.asdict(nms), "input_scaling": self.input_scaling,
                         "pad_colour": list(self.pad_colour)}
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, "image_bytes")])
        self.predict_uint8 = tf.function(self._detect, input_signature=[
            tf.TensorSpec([None, image_size, image_size, 3], tf.uint8, "images")])

    def signatures(self):
        return {"serving_default": self.serve_bytes, "predict_uint8": self.predict_uint8}

    def _detect(self, images, extents=None):
        """Detections of fitted images ([0, 255], any dtype), boxes in input pixels clipped to
        each image's extent there ([B, 2]; default the whole input) before the NMS; none for an
        empty batch."""
        count = tf.shape(images)[0]
        size = self.nms.max_detections
        if extents is None:
            extents = tf.fill([count, 2], float(self.image_size))

        def run():
            outputs = self.model(tf.cast(images, tf.float32), training=False)
            logits, codes = postprocess.flatten(outputs, self.num_classes)
            return postprocess.detect(logits, codes, self.anchors, self.nms, extents)

        def nothing():
            return {"boxes": tf.zeros([0, size, 4]), "scores": tf.zeros([0, size]),
                    "classes": tf.zeros([0, size], tf.int32),
                    "num_detections": tf.zeros([0], tf.int32)}

        return tf.cond(count > 0, run, nothing)

    def _fit(self, data):
        image = preprocess.decode(data)
        original_size = tf.shape(image)[:2]
        fitted, scale = detection_pipeline.resize_to_fit(image, self.image_size,
                                                         self.pad_colour)
        return fitted, scale, original_size

    def _serve_bytes(self, image_bytes):
        size = self.image_size
        default = (tf.zeros([size, size, 3]), tf.constant(1.0), tf.zeros([2], tf.int32))
        fitted, scales, original_sizes = tf.map_fn(
            lambda item: checked_decode(item[0], item[1], self.max_pixels, self._fit, default,
                                        MIN_DETECTION_SIDE),
            (image_bytes, tf.range(tf.shape(image_bytes)[0], dtype=tf.int64)),
            fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32),
                                 tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int32)))
        found = self._detect(fitted, tf.cast(original_sizes, tf.float32) * scales[:, None])
        boxes = postprocess.to_original(found["boxes"], scales, original_sizes)
        valid = found["classes"] >= 0
        return {"boxes": tf.where(valid[..., None], boxes, 0.0), "scores": found["scores"],
                "classes": found["classes"],
                "class_names": tf.gather(self.class_names, tf.where(
                    valid, found["classes"], self.num_classes)),
                "num_detections": found["num_detections"]}


def _detector_classes(model, anchor_settings):
    """The number of classes of a detector's outputs (classes_L has anchors x classes)."""
    level = anchor_settings.min_level
    return int(model.output[f"classes_{level}"].shape[-1]) // anchor_settings.per_location


def save_module(module, export_dir):
    """Writes a serving module (ServingModule) as a SavedModel to `export_dir` (any TF filesystem
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


def save_model(model, export_dir, settings, class_names=None):
    """The classification SavedModel of an (already folded) model, for tools and benchmarks."""
    return save_module(ServingModule(model, settings, class_names), export_dir)


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


FORMATS = ("saved_model", "keras", "tflite")


def export(task, model, export_path, export_format="saved_model", quantize="none", top_k=5,
           calibration_count=64, nms=None):
    """Exports a trained model (its EMA weights, rundir.restore_model) of `task` as
    `export_format`; returns the path written. keras: the trainable model as a .keras file;
    tflite: a .tflite file, float32, dynamic-range or int8 (calibrated on `calibration_count`
    eval images, which needs the task's data source). `nms`: a detector's serving NMS method
    ("hard", the default, or "gaussian")."""
    if export_format not in FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; use one of {FORMATS}")
    if export_format == "keras":  # the trainable form, for Keras users who fine-tune
        return save_keras(model, export_path)
    module = task.serving_module(model, top_k, nms)
    if export_format == "saved_model":
        return save_module(module, export_path)
    if isinstance(module, DetectionServingModule):
        flatbuffer = tflite.detection_tflite_bytes(module, quantize)
        with tf.io.gfile.GFile(export_path, "wb") as stream:
            stream.write(flatbuffer)
        return export_path
    with tempfile.TemporaryDirectory() as scratch:
        save_module(module, scratch)
        calibration = None
        if quantize == "int8":
            calibration = tflite.calibration_images(task, calibration_count)
        flatbuffer = tflite.tflite_bytes(scratch, quantize, calibration)
    with tf.io.gfile.GFile(export_path, "wb") as stream:
        stream.write(flatbuffer)
    return export_path


def serving_model(model, spec, num_classes):
    """The inference form of a trained model: BN folded into the convolutions, plain swish."""
    return fold.folded_copy(model, spec, num_classes, activation="inference_swish")
