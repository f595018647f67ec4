"""Image classification: EfficientNet V1/V2 with a softmax classifier (V1 §5.2, V2 §5.1).

The run's settings (crops, resize, eval transform, augmentation, label smoothing) are decided
here once (resolve), the model is built from the row, the datasets come from inputs.py, the loss
is softmax cross-entropy with label smoothing over (possibly mixed) one-hot labels, evaluation
counts top-1 and top-5 hits, and the export is serving.py's.
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from efficientnet_tf.data import augment, image_header, mixing, preprocess, sources
from efficientnet_tf.data import profile as profile_lib
from efficientnet_tf.models import efficientnet
from efficientnet_tf.models import weights as weights_lib
from efficientnet_tf.tasks import base
from efficientnet_tf.tasks.classification import adapt
from efficientnet_tf.tasks.classification import inputs as inputs_lib
from efficientnet_tf.tasks.classification import serving


# The papers' label smoothing (V1 §5.2, V2 §5.1), unless train.label_smoothing says otherwise.
LABEL_SMOOTHING = 0.1

@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    kind: str  # none, randaugment, autoaugment
    randaug_layers: int
    randaug_ops: Tuple[str, ...]
    relative_to_size: bool
    corrected_ops: bool


@dataclasses.dataclass(frozen=True)
class ClassificationSettings:
    """What classification resolves of a run; the stages hold what changes per stage."""

    train_crop: str  # v1, v2, whole or pad (data/preprocess.py TRAIN_CROPS)
    crop_area_min: Optional[float]  # overrides the crop's smallest area
    resize_method: str
    eval_transform: preprocess.EvalTransform
    random_flip: bool
    cache: bool
    shuffle_buffer: int
    deterministic: bool
    augment: AugmentSettings
    label_smoothing: float
    max_pixels: int = image_header.MAX_PIXELS  # larger images are skipped

    @property
    def eval_size(self):
        return self.eval_transform.image_size

    @property
    def crop(self):
        """The train transform: CropSettings, PadCrop, or None (the whole image)."""
        return crop_settings(self.train_crop, self.crop_area_min)

    def to_dict(self):
        return dataclasses.asdict(self)

    def describe(self):
        augment_line = self.augment.kind
        if self.augment.kind == "randaugment":
            augment_line += (f" ({self.augment.randaug_layers} layers"
                             + (", size-relative" if self.augment.relative_to_size else "")
                             + ")")
        return (f"train crop {self.train_crop} ({self.resize_method} resize, flip "
                f"{'on' if self.random_flip else 'off'}), augmentation {augment_line}, label "
                f"smoothing {self.label_smoothing:g}; eval: {self.eval_transform.describe()}")


def crop_settings(train_crop, crop_area_min=None):
    """The train crop named `train_crop` (preprocess.TRAIN_CROPS), its smallest area replaced
    by `crop_area_min` when that is set (data.crop_area_min)."""
    crop = preprocess.TRAIN_CROPS[train_crop]
    if crop_area_min is not None and isinstance(crop, preprocess.CropSettings):
        crop = dataclasses.replace(crop, area_range=(crop_area_min, 1.0))
    return crop


def preprocessing(spec, config):
    """(train crop name, resize method, EvalTransform): the row's official path unless the
    config names another (data.crop, data.resize_method, eval.image_size, eval.crop_fraction)."""
    train_crop = config.data.crop or spec.preprocessing
    if train_crop not in preprocess.TRAIN_CROPS:
        raise ValueError(f"config.data.crop is {config.data.crop!r}; use None (the row's), "
                         f"{', '.join(sorted(preprocess.TRAIN_CROPS))}")
    resize_method = config.data.resize_method
    if resize_method is None:
        resize_method = official_resize(spec)
    eval_transform = preprocess.eval_transform(
        train_crop, config.eval.image_size or spec.eval_size, resize_method,
        config.eval.crop_fraction)
    return train_crop, resize_method, eval_transform


def official_resize(spec):
    """The official code's resize method of a row: bicubic on the v1 path, bilinear on v2."""
    return "bicubic" if spec.preprocessing == "v1" else "bilinear"


def cross_entropy(labels, logits, label_smoothing=0.0):
    """Per-example cross-entropy of soft (one-hot or mixed) labels with label smoothing."""
    labels = tf.cast(labels, tf.float32)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / tf.cast(
            tf.shape(labels)[-1], tf.float32)
    return tf.nn.softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))


class Evaluator:
    """Sums of loss, top-1 and top-5 hits over the real examples -> their means."""

    def __init__(self):
        self.totals = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "examples": 0.0}

    def update(self, results):
        for key in self.totals:
            self.totals[key] += float(results[key])

    def finish(self):
        count = max(self.totals["examples"], 1.0)
        return {"loss": self.totals["loss"] / count, "top1": self.totals["top1"] / count,
                "top5": self.totals["top5"] / count, "examples": int(self.totals["examples"])}


class ClassificationTask(base.Task):
    NAME = "classification"
    TRAIN_METRICS = ("correct",)
    EVAL_REDUCTIONS = {"loss": "sum", "top1": "sum", "top5": "sum", "examples": "sum"}
    HEADLINE = "top1"
    ADAPTED_KEYS = adapt.ADAPTED_KEYS

    def __init__(self, run, source):
        super().__init__(run, source)
        self._decoded = {}  # (input pipeline, counter) -> inputs_lib.decoded_images, for cache=True

    @classmethod
    def make_source(cls, data_config):
        return sources.from_config(data_config)

    @classmethod
    def adapt_to_data(cls, config, spec, source, total_steps):
        return adapt.adapt(config, spec, profile_lib.profile(source), total_steps)

    @classmethod
    def resolve(cls, config, spec, source, strategy):
        train_crop, resize_method, eval_transform = preprocessing(spec, config)
        ops = tuple(op.strip() for op in config.augment.randaug_ops.split(",") if op.strip())
        return ClassificationSettings(
            train_crop=train_crop, crop_area_min=config.data.crop_area_min,
            resize_method=resize_method, eval_transform=eval_transform,
            random_flip=config.data.random_flip, cache=config.data.cache,
            shuffle_buffer=config.data.shuffle_buffer, deterministic=config.data.deterministic,
            augment=AugmentSettings(
                kind=config.augment.kind, randaug_layers=config.augment.randaug_layers,
                randaug_ops=ops or augment.RANDAUGMENT_OPS,
                relative_to_size=config.augment.relative_to_size,
                corrected_ops=config.augment.corrected_ops),
            label_smoothing=(LABEL_SMOOTHING if config.train.label_smoothing is None
                             else config.train.label_smoothing),
            max_pixels=config.data.max_pixels)

    @classmethod
    def settings_from_dict(cls, values):
        values = dict(values)
        values["eval_transform"] = preprocess.EvalTransform(**values["eval_transform"])
        augment_values = dict(values["augment"])
        augment_values["randaug_ops"] = tuple(augment_values["randaug_ops"])
        values["augment"] = AugmentSettings(**augment_values)
        return ClassificationSettings(**values)

    @property
    def settings(self):
        return self.run.task_settings

    def build_model(self, stage=None, for_serving=False):
        options = self.run.model
        if stage is not None:
            options = dataclasses.replace(options, dropout_rate=stage.dropout_rate)
        if for_serving:
            options = dataclasses.replace(options, input_dtype="float32")
        return efficientnet.build(self.run.spec, options)

    def enter_stage(self, model, stage):
        set_dropout(model, stage.dropout_rate)

    # Layers a fine-tuning run re-initialises when their shapes differ (another class count).
    REINITIALIZED_LAYERS = (weights_lib.CLASSIFIER,)
    # Keys of the config a classifier's run does not read (train/config.py check_read).
    UNREAD_KEYS = {
        "detection.*": "the detection section is for task 'detection'",
        **{f"data.{key}": "COCO JSON sources are detection's" for key in (
            "train_annotations", "train_images", "eval_annotations", "eval_images",
            "invalid_boxes", "class_ids")}}

    def augmenter(self, stage):
        settings = self.settings.augment
        if settings.kind == "randaugment":
            return augment.RandAugment(settings.randaug_layers, stage.randaug_magnitude,
                                       ops=settings.randaug_ops,
                                       relative_to_size=settings.relative_to_size,
                                       corrected=settings.corrected_ops)
        if settings.kind == "autoaugment":
            return augment.AutoAugment(corrected=settings.corrected_ops)
        return None

    def train_settings(self, stage, seed):
        """How the stage's training images are made: every stage value is a constant of its
        dataset, so the dataset functions capture no variable and run on every host of a pod."""
        settings = self.settings
        return inputs_lib.TrainSettings(
            image_size=stage.image_size, batch_size=self.run.per_replica_batch,
            num_classes=self.run.num_classes, crop=settings.crop,
            resize_method=settings.resize_method, random_flip=settings.random_flip,
            augmenter=self.augmenter(stage),
            mixing=mixing.Mixing(stage.mixup_alpha, stage.cutmix_alpha),
            dtype=tf.as_dtype(self.run.image_dtype), shuffle_buffer=settings.shuffle_buffer,
            cache=settings.cache, seed=seed, deterministic=settings.deterministic,
            max_pixels=settings.max_pixels)

    def train_dataset(self, stage, input_context=None, seed=None, counter=None):
        decoded = None
        if self.settings.cache is True:  # decoded once, shared by the stages (and epochs)
            key = (input_context.input_pipeline_id if input_context else 0, id(counter))
            if key not in self._decoded:
                self._decoded[key] = inputs_lib.decoded_images(
                    self.source, input_context, counter, self.settings.deterministic,
                    self.settings.max_pixels)
            decoded = self._decoded[key]
        return inputs_lib.train_dataset(self.source, self.train_settings(stage, seed),
                                      input_context, counter, decoded)

    def eval_dataset(self, input_context=None, counter=None, batch_size=None):
        replicas = self.run.placement.replicas
        batch_size = batch_size or self.run.eval_batch // replicas
        return inputs_lib.eval_dataset(self.source, self.settings.eval_transform, batch_size,
                                     self.run.num_classes, input_context,
                                     tf.as_dtype(self.run.image_dtype), counter=counter,
                                     max_pixels=self.settings.max_pixels)

    def loss(self, targets, outputs):
        return cross_entropy(targets, outputs, self.settings.label_smoothing)

    def train_metrics(self, targets, outputs):
        correct = tf.equal(tf.argmax(outputs, -1), tf.argmax(targets, -1))
        return {"correct": tf.reduce_sum(tf.cast(correct, tf.float32))}

    def summarize(self, totals):
        return {"top1": totals["correct"] / max(totals["examples"], 1.0)}

    def eval_step(self, model, inputs, targets):
        """Sums of loss, top-1 and top-5 hits over the real (label >= 0) examples."""
        logits = tf.cast(model(inputs, training=False), tf.float32)
        real = targets >= 0
        safe_labels = tf.maximum(targets, 0)
        weights = tf.cast(real, tf.float32)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(safe_labels, logits)
        top_k = min(5, self.run.num_classes)
        return {"loss": tf.reduce_sum(per_example * weights),
                "top1": tf.reduce_sum(tf.cast(tf.math.in_top_k(safe_labels, logits, 1),
                                              tf.float32) * weights),
                "top5": tf.reduce_sum(tf.cast(tf.math.in_top_k(safe_labels, logits, top_k),
                                              tf.float32) * weights),
                "examples": tf.reduce_sum(weights)}

    def evaluator(self):
        return Evaluator()

    def serving_module(self, model, top_k=5, nms=None):
        return serving.serving_module(model, self.run.spec, self.settings.eval_transform,
                              self.run.class_names, top_k, nms)

    @staticmethod
    def pretrained_serving_module(model, spec, image_size, class_names=None, top_k=5, nms=None,
                                  probabilities="softmax"):
        """The serving module of pretrained weights (no run): the row's official evaluation
        transform at `image_size`."""
        transform = preprocess.eval_transform(spec.preprocessing, image_size,
                                              official_resize(spec), None)
        return serving.serving_module(model, spec, transform, class_names, top_k, nms,
                                      probabilities)

    def describe(self, metrics):
        return (f"top-1 {100 * metrics['top1']:.2f}% top-5 {100 * metrics['top5']:.2f}% on "
                f"{metrics['examples']} images at {self.settings.eval_size} px")


def set_dropout(model, rate):
    """Sets the classifier dropout (progressive learning), for the functions traced after."""
    try:
        layer = model.get_layer("top_dropout")
    except ValueError:
        return
    layer.rate = float(rate)
