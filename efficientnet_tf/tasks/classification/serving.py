"""A classifier's serving: the SavedModel module and its signatures, its TFLite conversion, and
how `predict` reads and shows one image's outputs.

The SavedModel is built from the EMA weights in inference mode (moving BN statistics, no dropout,
no stochastic depth). It has three signatures:
  serving_default   image_bytes: string [batch] (JPEG, PNG, GIF, BMP; gray or RGB) -> decode,
                    center crop and resize in the graph -> classes, probabilities (top-k),
                    class_names when known. A REST body {"instances": [{"b64": "..."}]} works.
  predict_images    images: float32 [batch, size, size, 3] in [0, 255] -> logits, probabilities
  predict_uint8     the same for uint8 images.
Class names travel as an asset (assets/labels.txt). Bad bytes (empty, not an image, too many
pixels, data that does not decode behind a valid header) fail with InvalidArgument naming the
image by its index, never crash the server (serving.checked_decode).

The exported graph has no batch norm: each BN is folded into the kernel and bias of the
convolution before it (models/fold.py), and swish is the plain x * sigmoid(x), without the
training-time custom gradient. scripts/bench_serving.py measures what that buys.
TFLite: predict_images, float32, dynamic range or int8; int8 calibrates the activations' ranges
on images of the run's eval split, preprocessed as the eval transform says; inputs and outputs
stay float32 for the caller.
"""

import dataclasses
import tempfile

import numpy as np
import tensorflow as tf

from efficientnet_tf import serving
from efficientnet_tf.data import preprocess
from efficientnet_tf.models import efficientnet, fold


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """The run's eval transform (preprocess.EvalTransform) and what serving adds to it."""

    transform: preprocess.EvalTransform
    top_k: int = 5
    max_pixels: int = serving.MAX_PIXELS
    # How logits become probabilities: softmax, or sigmoid for a multi-label head (the
    # ImageNet-21k checkpoints were trained with a sigmoid loss).
    probabilities: str = "softmax"

    @property
    def image_size(self):
        return self.transform.image_size


def decode_for_serving(data, index, settings):
    """One request image -> float32 [size, size, 3]; InvalidArgument naming it when it is bad."""
    size = settings.image_size
    return serving.checked_decode(data, index, settings.max_pixels,
                                  lambda item: preprocess.preprocess_eval(item, settings.transform),
                                  tf.zeros([size, size, 3]))


class ClassificationServingModule(tf.Module):
    """The model and its signatures, as one trackable for tf.saved_model.save."""

    def __init__(self, model, settings, class_names=None, metadata=None):
        super().__init__(name="efficientnet_serving")
        # What predict reads back (assets/efficientnet_tf.json): the task, the model, ...
        self.metadata = {"task": "classification", **(metadata or {}),
                         "image_size": settings.image_size, "top_k": settings.top_k,
                         "input_scaling": efficientnet.input_scaling_of(model),
                         "probabilities": settings.probabilities}
        self.model = model
        self.model_variables = serving.tracked_variables(model)
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

    def tflite_bytes(self, quantize="none", calibration_data=None, calibration_count=64):
        """The TFLite flatbuffer of predict_images: float32, dynamic-range or int8 (its
        activations' ranges calibrated on `calibration_count` images of calibration_data(), a
        function giving the eval split's (image, label) batches of 1)."""
        calibration = None
        if quantize == "int8":
            calibration = calibration_images(calibration_data(), calibration_count)
        with tempfile.TemporaryDirectory() as scratch:
            serving.save_module(self, scratch)
            return serving.tflite_from_saved_model(scratch, quantize, calibration)


def save_model(model, export_dir, settings, class_names=None):
    """The classification SavedModel of an (already folded) model, for tools and benchmarks."""
    return serving.save_module(ClassificationServingModule(model, settings, class_names),
                               export_dir)


def serving_module(model, spec, transform, class_names=None, top_k=5, nms=None,
                   probabilities="softmax"):
    """The classifier's SavedModel module (ClassificationServingModule) of `model` (built from
    `spec`), its BN folded, its images prepared by `transform` (preprocess.EvalTransform), its
    `probabilities` a softmax (or a sigmoid: multi-label heads)."""
    if nms is not None:
        raise ValueError(f"nms={nms!r} is for detection exports; a classifier has no NMS")
    num_classes = int(model.output_shape[-1])
    settings = ServingSettings(transform, top_k=top_k, probabilities=probabilities)
    folded = fold.folded_copy(model, spec, num_classes, activation="inference_swish")
    return ClassificationServingModule(folded, settings, class_names,
                                       metadata={"task": "classification", "model": spec.name})


def calibration_images(eval_batches, count):
    """`count` preprocessed images of the eval split's (image, label) batches of 1 (padding
    rows left out)."""
    images = [image[0].numpy() for image, label in eval_batches.take(count) if label[0] >= 0]
    if not images:
        raise ValueError("the eval split gave no images to calibrate int8 quantization with")
    return np.stack(images)



# predict's default --min_score: every one of the top-k is shown.
MIN_SCORE = 0.0


def read_outputs(outputs, top_k, min_score=0.0):
    """predict's result for one image from serving_default's outputs: the top-k labels
    (those with a probability of at least min_score)."""
    classes = outputs["classes"][0].numpy().tolist()[:top_k]
    probabilities = outputs["probabilities"][0].numpy().tolist()[:top_k]
    names = ([name.decode("utf-8") for name in outputs["class_names"][0].numpy()]
             if "class_names" in outputs else [str(c) for c in classes])
    return {"top": [{"class": c, "label": name, "probability": p}
                    for c, name, p in zip(classes, names, probabilities) if p >= min_score]}

def format_result(result):
    return [f"  {rank}. {top['label']:<24} {top['probability']:.4f}"
            for rank, top in enumerate(result["top"], 1)]


def draw(data, result, path):
    """predict --draw draws a detector's boxes: a classifier has nothing to draw."""
    raise ValueError("predict --draw draws a detector's boxes; a classifier has nothing to draw")
