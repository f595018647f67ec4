"""Pretrained weights by name or path: what a `weights=` / `init_from` value names, and loading it.

A value is one of
  'imagenet'        keras.applications' ImageNet file of the row (a detector: of its backbone),
                    downloaded into Keras's cache (~/.keras/models) on first use;
  'VARIANT/TAG'     an official checkpoint (catalog.py; 'TAG' alone names the model's own),
                    downloaded into our cache and unpacked on first use (download.py);
  a URL             https://, http:// or gs:// of any of the files below, fetched into the cache;
  a path            (any tf.io.gfile path) a TF1 checkpoint prefix, a folder holding one, a .tar.gz
                    / .tgz / .tar of such a folder, an official EfficientDet .h5, a
                    keras.applications .h5 / .weights.h5, or our own .weights.h5.
resolve() turns it into a local Weights (download, unpack, find the checkpoint) and says what
the checkpoint implies (its input scaling, classes, class names); load() fills a model from it,
official files through official.py's derived names, Keras files through keras_files.py.
"""

import dataclasses
from typing import Optional, Tuple

import h5py
import tensorflow as tf
from absl import logging

from efficientnet_tf.data import labels
from efficientnet_tf.models import efficientnet
from efficientnet_tf.models.weights import catalog, download, official
from efficientnet_tf.models.weights.keras_files import (  # noqa: F401 (the package's API)
    CLASSIFIER, LoadReport, keras_file_name, load_keras_applications_weights,
    read_keras_applications_file, weighted_layers)
from efficientnet_tf.models.weights import keras_files
from efficientnet_tf.specs import registry

KERAS, OFFICIAL, OFFICIAL_H5 = "keras", "official", "official_h5"

# COCO's category names by id (1..90; 80 are used), as google/automl efficientdet
# tf2/label_util.py gives them: a detector's class c is category c + 1.
COCO_NAMES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse",
    20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe",
    27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee",
    35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl",
    52: "banana", 53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot",
    58: "hot dog", 59: "pizza", 60: "donut", 61: "cake", 62: "chair", 63: "couch",
    64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet", 72: "tv", 73: "laptop",
    74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven",
    80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
    87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush"}


def coco_class_names():
    """The 90 class names of a COCO detector, class c = category c + 1 (unused ids named so)."""
    return tuple(COCO_NAMES.get(c + 1, labels.UNUSED.format(c + 1)) for c in range(90))


@dataclasses.dataclass(frozen=True)
class Weights:
    """A weights value, resolved to something on a filesystem, and what it implies."""

    source: str  # what was given
    kind: str  # KERAS, OFFICIAL (a TF1 checkpoint prefix) or OFFICIAL_H5
    path: str
    checkpoint: Optional[catalog.Checkpoint] = None  # a catalog tag's
    attributes: dict = dataclasses.field(default_factory=dict)  # a converted file's (convert)

    @property
    def input_scaling(self):
        """The input scaling the weights were trained with, where that is known (a tag, a
        file written by `efficientnet-tf convert`)."""
        if self.checkpoint:
            return self.checkpoint.release.input_scaling
        return self.attributes.get("input_scaling")

    @property
    def num_classes(self):
        if self.checkpoint:
            return self.checkpoint.release.classes
        return self.attributes.get("num_classes")

    @property
    def probabilities(self):
        """softmax, or sigmoid for a multi-label head (ImageNet-21k)."""
        if self.checkpoint:
            return self.checkpoint.release.probabilities
        return self.attributes.get("probabilities", "softmax")

    @property
    def model_name(self):
        """The variant the weights are of, where that is known."""
        return self.checkpoint.variant if self.checkpoint else self.attributes.get("model")

    def store(self):
        """The official.Store of an official checkpoint or .h5."""
        if self.kind == OFFICIAL:
            return official.open_checkpoint(self.path)
        if self.kind == OFFICIAL_H5:
            return official.open_h5(self.path)
        raise ValueError(f"{self.source!r} is a Keras weights file, not an official checkpoint")

    def classes_for(self, spec):
        """The number of classes a model of `spec` needs to take these weights whole (None:
        any; the weights have no classifier, or are a Keras file)."""
        if self.num_classes and self.model_name == spec.name:
            return self.num_classes
        return None if self.kind == KERAS else official.checkpoint_classes(self.store(), spec)

    @property
    def class_names(self) -> Optional[Tuple[str, ...]]:
        if self.checkpoint and self.checkpoint.detector and self.num_classes == 90:
            return coco_class_names()
        names = self.attributes.get("class_names")
        return tuple(names) if names else None


def implied_input_scaling(spec, value):
    """The input scaling `value` (a weights value) fixes for `spec`, without downloading: a
    catalog checkpoint's (by name or URL), a converted file's; None for 'imagenet' (the row's)
    and other files (their scaling is the model's input_scaling option)."""
    if not isinstance(value, str) or not value or value == "imagenet":
        return None
    checkpoint = _checkpoint(spec, value)
    if checkpoint:
        return checkpoint.release.input_scaling
    if value.endswith(".h5") and exists(value) and _official_h5(value):
        return official.h5_attributes(value).get("input_scaling")
    return None


def exists(value):
    """Whether `value` is a path that exists: a file, a folder or a checkpoint prefix. A path
    wins over an official name that reads the same (a run folder 'efficientnet-b0/baseline')."""
    if download.is_url(value):
        return False
    return tf.io.gfile.exists(value) or tf.io.gfile.exists(f"{value}.index")


def default_input_scaling(spec):
    """The row's input scaling (a detector: its backbone's)."""
    spec = registry.get(spec)
    if isinstance(spec, registry.DetectionSpec):
        spec = registry.get(spec.backbone)
    return spec.normalization


def choose_input_scaling(spec, requested, implied, what="the weights"):
    """The input scaling of a model: `requested` (an explicit option) unless it contradicts
    `implied` (what its weights were trained with), then that, then the row's."""
    if requested is not None and requested not in registry.INPUT_SCALINGS:
        raise ValueError(f"input_scaling {requested!r}; use one of "
                         f"{', '.join(registry.INPUT_SCALINGS)}")
    if requested is not None and implied is not None and requested != implied:
        raise ValueError(f"input_scaling {requested!r} contradicts {what}, which expect "
                         f"{implied!r}; leave input_scaling unset")
    return requested or implied or default_input_scaling(spec)


def _checkpoint(spec, value):
    """The catalog checkpoint `value` names for `spec`, checked against it, or None."""
    spec = registry.get(spec)
    if exists(value):
        return None
    checkpoint = catalog.find(value, spec.name) or catalog.find_url(value)
    if checkpoint is None:
        if mistyped_name(value):
            variant = value.split("/", 1)[0]
            raise ValueError(f"unknown checkpoint {value!r}: {variant} has "
                             f"{', '.join(catalog.tags_of(variant)) or 'no official tags'} "
                             "(efficientnet-tf info --weights lists them all)")
        return None
    backbone = getattr(spec, "backbone", None)
    if checkpoint.variant == spec.name or checkpoint.variant == backbone:
        return checkpoint
    raise ValueError(f"checkpoint {checkpoint.name!r} holds {checkpoint.variant}; this model is "
                     f"{spec.name} (its tags: {', '.join(catalog.tags_of(spec.name)) or 'none'})")


def mistyped_name(value):
    """Whether `value` reads as VARIANT/TAG of a registered variant, with no such tag and no
    such file, folder or checkpoint prefix (e.g. an unpacked 'efficientnetv2-b0/model')."""
    return catalog.looks_like_a_tag(value) and not download.is_url(value) and not exists(value)


def resolve(spec, value, include_top=True):
    """The Weights `value` names for the row `spec` (downloaded and unpacked if need be)."""
    spec = registry.get(spec)
    if value == "imagenet":
        keras_spec = registry.get(getattr(spec, "backbone", spec.name))
        url, file_name = keras_files.keras_file_url(
            keras_spec, include_top and keras_spec is spec)
        return Weights(value, KERAS, download.fetch(
            url, f"{keras_files.keras_cache_dir()}/{file_name}"))
    checkpoint = _checkpoint(spec, value)
    if checkpoint is not None:
        folder = download.unpack(download.fetch(checkpoint.url))
        return Weights(value, OFFICIAL, find_checkpoint(folder), checkpoint)
    return _resolve_path(value)


def _resolve_path(value):
    path = value
    if download.is_url(value):
        path = download.fetch(value)
    if download.is_archive(path):
        if not tf.io.gfile.exists(path):
            raise ValueError(f"weights archive {path!r} does not exist")
        path = download.unpack(path)
    if path.endswith(".h5"):
        if not tf.io.gfile.exists(path):
            raise ValueError(f"weights file {path!r} does not exist")
        if _official_h5(path):
            return Weights(value, OFFICIAL_H5, path, attributes=official.h5_attributes(path))
        return Weights(value, KERAS, path)
    if tf.io.gfile.isdir(path):
        if tf.io.gfile.exists(f"{path.rstrip('/')}/config.json"):
            raise ValueError(f"{path!r} is a run of efficientnet-tf: fine-tune from it with "
                             "--config.init_from, or export it (efficientnet-tf export)")
        return Weights(value, OFFICIAL, find_checkpoint(path))
    if tf.io.gfile.exists(f"{path}.index"):
        return Weights(value, OFFICIAL, path)
    raise ValueError(f"weights {value!r}: not an official checkpoint name, a file, a folder or "
                     "a checkpoint prefix that exists; pass 'imagenet', a name that "
                     "efficientnet-tf info --weights lists, or the path of a checkpoint (its "
                     "prefix, folder or .tar.gz), an .h5 or a .weights.h5 file")


def _official_h5(path):
    try:
        with tf.io.gfile.GFile(path, "rb") as stream, h5py.File(stream, "r") as h5file:
            return official.is_official_h5(h5file)
    except OSError as error:
        cached = path.startswith((download.cache_dir(), keras_files.keras_cache_dir()))
        raise ValueError(f"cannot read weights file {path!r}: {error}; it is truncated, "
                         "damaged or not an HDF5 file" + (
                             " (a download: delete it to fetch it again)" if cached else "")
                         ) from error


def find_checkpoint(folder):
    """The prefix of the one TF1 checkpoint under `folder` (searched at any depth; where several
    are, the one its `checkpoint` state file names)."""
    prefixes = sorted(f"{root.rstrip('/')}/{name[: -len('.index')]}"
                      for root, _, files in tf.io.gfile.walk(folder) for name in files
                      if name.endswith(".index"))
    if len(prefixes) > 1:
        latest = {tf.train.latest_checkpoint(prefix.rsplit("/", 1)[0]) for prefix in prefixes}
        latest.discard(None)
        prefixes = sorted(latest) if len(latest) == 1 else prefixes
    if len(prefixes) != 1:
        raise ValueError(f"{folder!r} holds {len(prefixes) or 'no'} checkpoints "
                         f"({', '.join(prefixes[:3]) or 'no *.index file'}); pass the prefix of "
                         "one (PATH/model.ckpt for PATH/model.ckpt.index)")
    return prefixes[0]


def load(model, spec, weights):
    """Loads `weights` (a Weights from resolve) into `model` (built from `spec`); returns the
    LoadReport, and logs it."""
    spec = registry.get(spec)
    scaling = efficientnet.input_scaling_of(model)
    if weights.input_scaling and scaling != weights.input_scaling:
        raise ValueError(f"weights {weights.source!r} were trained with input scaling "
                         f"{weights.input_scaling!r}; this model applies {scaling!r}: build it "
                         f"with input_scaling={weights.input_scaling!r} (or leave it unset)")
    if weights.kind == KERAS:
        if isinstance(spec, registry.DetectionSpec):
            report = keras_files.load_into_detector(model, registry.get(spec.backbone),
                                                    weights.path)
        else:
            report = keras_files.load_weights(model, weights.path)
    else:
        loaded, skipped, ema = official.load(model, spec, weights.store())
        report = LoadReport(loaded, skipped, [ema])
    logging.info("weights %s (%s): %s", weights.source, weights.path, report)
    return report


def load_weights(model, spec, value, include_top=True):
    """resolve + load: `value` ('imagenet', a tag, a URL or a path) into `model`."""
    return load(model, spec, resolve(spec, value, include_top))
