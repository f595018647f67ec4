"""Object detection: EfficientDet with focal and Huber losses, judged by COCO AP (EfficientDet §4).

The model is the row's EfficientDet (models/efficientdet.py); the data come from a detection
source (tasks/detection/sources.py) through tasks/detection/inputs.py, labelled per anchor in the
input pipeline. The loss, as google/automl efficientdet (tf2/train_lib.py, hparams_config.py):
sigmoid focal loss (alpha 0.25, gamma 1.5, optional label smoothing) over every class of every
anchor that is not ignored, plus 50 x the Huber loss (delta 0.1) of the box codes of the
positive anchors over 4, both divided by the number of positive anchors + 1 -- counted over the
GLOBAL batch, summed across replicas: automl divides by each replica's own count, so a replica
with few objects weighs more (det_model_fn.py `_detection_loss`, tf2/train_lib.py
`_detection_loss`: num_positives_sum of the replica's labels + 1), and its Keras path also
forgets the replica count (tf2/train_lib.py `train_step`: the replica's total_loss is not
divided by num_replicas_in_sync before apply_gradients sums the replicas' gradients); here 1
replica and N replicas with the same global batch make the same update.
Evaluation finds the detections as automl's evaluation does: the top 5000 (anchor, class)
candidates in the step, then on the host (soft-NMS has no XLA kernel for a TPU step) per-class
Gaussian soft-NMS, 100 per image, boxes mapped back to the original pixels and scored with
pycocotools against the source's ground truth.
"""

import dataclasses
import threading
from typing import Tuple

import tensorflow as tf

from efficientnet_tf.data import image_header
from efficientnet_tf.data.sources import EVAL, TRAIN
from efficientnet_tf.models import efficientdet
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks import base
from efficientnet_tf.tasks.detection import adapt
from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import inputs as inputs_lib
from efficientnet_tf.tasks.detection import loss as loss_lib
from efficientnet_tf.tasks.detection import postprocess, serving
from efficientnet_tf.tasks.detection import sources as detection_sources
from efficientnet_tf.tasks.detection.metric import Evaluator


AUTOML_SCALE_RANGE = (0.1, 2.0)  # detection.scale_min/max left None (hparams_config.py)


@dataclasses.dataclass(frozen=True)
class DetectionTaskSettings:
    """What detection resolves of a run."""

    image_size: int
    anchors: anchors_lib.AnchorSettings
    max_instances: int
    scale_range: Tuple[float, float]
    random_flip: bool
    cache: bool
    shuffle_buffer: int
    deterministic: bool
    focal_alpha: float
    focal_gamma: float
    label_smoothing: float
    box_loss_weight: float
    huber_delta: float
    eval_nms: str  # postprocess.NmsSettings.method of the evaluation
    max_pixels: int = image_header.MAX_PIXELS
    bn_recalibration_images: int = 0  # 0 in runs recorded before it existed
    final_unjittered_share: float = 0.0
    eval_annotations: str = ""  # an original annotation file to score against; "": rebuilt

    @property
    def eval_size(self):
        return self.image_size

    def to_dict(self):
        return dataclasses.asdict(self)

    def describe(self):
        return (f"scale jitter {self.scale_range[0]:g}-{self.scale_range[1]:g} to "
                f"{self.image_size} px, flip {'on' if self.random_flip else 'off'}, at most "
                f"{self.max_instances} boxes per image; focal loss (alpha {self.focal_alpha:g}, "
                f"gamma {self.focal_gamma:g}, label smoothing {self.label_smoothing:g}) + "
                f"{self.box_loss_weight:g} x Huber ({self.huber_delta:g}); eval: {self.eval_nms} "
                "NMS" + (f"; batch norm recalibrated on {self.bn_recalibration_images} training "
                         "images at the end" if self.bn_recalibration_images else "")
                + (f"; the last {self.final_unjittered_share:.0%} of the steps without scale "
                   "jitter" if self.final_unjittered_share else ""))


class DetectionTask(base.Task):
    NAME = "detection"
    TRAIN_METRICS = ("class_loss", "box_loss", "positives")
    EVAL_REDUCTIONS = {"loss_sum": "sum", "positives": "sum", "image_id": "gather",
                       "scale": "gather", "boxes": "gather", "scores": "gather",
                       "classes": "gather"}
    HEADLINE = "AP"
    HEADLINE_TITLE = "COCO AP"
    ADAPTED_KEYS = adapt.ADAPTED_KEYS
    # A detector fine-tuned from another detector: its class predictor re-initialised.
    REINITIALIZED_LAYERS = ("class_net_predict",)
    # Keys of the config a detector's run does not read (train/config.py check_read).
    UNREAD_KEYS = {
        "augment.*": "a detector's training augmentation is flips and scale jitter "
                     "(detection.scale_min/max)",
        "eval.crop_fraction": "a detector evaluates whole images, fitted and padded",
        "eval.image_size": "a detector evaluates at its input size (train.image_size)",
        "data.crop": "a detector's crops are scale jitter (detection.scale_min/max)",
        "data.crop_area_min": "a detector's crops are scale jitter (detection.scale_min/max)",
        "data.resize_method": "a detector resizes bilinearly, as automl",
        "model.dropout_rate": "a detector has no classifier dropout",
        "model.survival_prob": "a detector's backbone keeps its row's survival probability"}

    def __init__(self, run, source):
        super().__init__(run, source)
        self.truncations = inputs_lib.TruncationCounter(self.settings.max_instances)
        self._ground_truth = None
        self._step_sums = threading.local()  # (outputs, sums) of the step being traced

    @classmethod
    def make_source(cls, data_config):
        return detection_sources.from_config(data_config)

    @classmethod
    def adapt_to_data(cls, config, spec, source, total_steps):
        return adapt.adapt(config, spec, adapt.profile(source), total_steps)

    @classmethod
    def resolve(cls, config, spec, source, strategy):
        if not hasattr(spec, "fpn_width"):
            raise ValueError(f"task 'detection' trains EfficientDet rows, not {spec.name!r}; "
                             "use e.g. --config.model.name=efficientdet-d0")
        if config.progressive.schedule != "none":
            raise ValueError(f"config.progressive.schedule is {config.progressive.schedule!r}: "
                             "a detector trains at one size; set it to 'none'")
        if isinstance(config.data.cache, str) and config.data.cache:
            raise ValueError(f"config.data.cache={config.data.cache!r}: a detector caches its "
                             "examples in memory (data.cache=True), not in files")
        detection = config.detection
        scale_range = (AUTOML_SCALE_RANGE[0] if detection.scale_min is None
                       else detection.scale_min,
                       AUTOML_SCALE_RANGE[1] if detection.scale_max is None
                       else detection.scale_max)
        if not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"detection.scale_min {scale_range[0]} and scale_max "
                             f"{scale_range[1]}: need 0 < scale_min <= scale_max")
        anchors = anchors_lib.settings_of(spec)
        if detection.anchor_scale is not None:
            if detection.anchor_scale <= 0:
                raise ValueError(f"detection.anchor_scale must be > 0, got "
                                 f"{detection.anchor_scale}")
            anchors = dataclasses.replace(anchors, anchor_scale=detection.anchor_scale)
        if detection.max_instances < 1:
            raise ValueError(f"detection.max_instances must be >= 1, got "
                             f"{detection.max_instances}")
        postprocess.NmsSettings(method=detection.eval_nms)  # checks the name
        recalibration = detection.bn_recalibration_images or 0
        unjittered = detection.final_unjittered_share or 0.0
        if not 0.0 <= unjittered < 1.0:
            raise ValueError(f"detection.final_unjittered_share must be in [0, 1), got "
                             f"{unjittered}")
        if recalibration < 0:
            raise ValueError(f"detection.bn_recalibration_images must be >= 0 (0: off), got "
                             f"{recalibration}")
        return DetectionTaskSettings(
            image_size=config.train.image_size or spec.image_size,
            anchors=anchors, max_instances=detection.max_instances, scale_range=scale_range,
            random_flip=config.data.random_flip, cache=bool(config.data.cache),
            shuffle_buffer=config.data.shuffle_buffer, deterministic=config.data.deterministic,
            focal_alpha=detection.focal_alpha, focal_gamma=detection.focal_gamma,
            label_smoothing=config.train.label_smoothing or 0.0,
            box_loss_weight=detection.box_loss_weight, huber_delta=detection.huber_delta,
            eval_nms=detection.eval_nms, max_pixels=config.data.max_pixels,
            bn_recalibration_images=recalibration, final_unjittered_share=unjittered,
            eval_annotations=detection.eval_annotations or "")

    @classmethod
    def plan_stages(cls, stages, config):
        """The stage (one: a detector trains at one size) split in two when
        detection.final_unjittered_share is set: its last share of the steps without scale
        jitter."""
        share = config.detection.final_unjittered_share or 0.0
        last = stages[-1]
        plain = int(round(share * last.end_step))
        if not plain or plain >= last.end_step - last.start_step:
            return stages
        split = last.end_step - plain
        return list(stages[:-1]) + [
            dataclasses.replace(last, end_step=split),
            dataclasses.replace(last, index=last.index + 1, start_step=split,
                                scale_jitter=False)]

    @classmethod
    def settings_from_dict(cls, values):
        values = dict(values)
        anchors = dict(values["anchors"])
        anchors["aspect_ratios"] = tuple(anchors["aspect_ratios"])
        values["anchors"] = anchors_lib.AnchorSettings(**anchors)
        values["scale_range"] = tuple(values["scale_range"])
        return DetectionTaskSettings(**values)

    @property
    def settings(self):
        return self.run.task_settings

    @property
    def input_scaling(self):
        """The model's input scaling (a run recorded before there was a choice: the row's)."""
        return self.run.model.input_scaling or registry.get(self.run.spec.backbone).normalization

    @property
    def pad_colour(self):
        """What the images are padded with: the colour the input scaling maps to 0, as the
        official code pads; black for runs recorded before (they were trained so)."""
        if self.run.model.input_scaling is None:
            return (0.0, 0.0, 0.0)
        return registry.zero_colour(self.input_scaling)

    def build_model(self, stage=None, for_serving=False):
        options = self.run.model
        size = self.settings.image_size
        return efficientdet.build(self.run.spec, options.num_classes, (size, size),
                                  batch_norm=options.batch_norm,
                                  input_dtype="float32" if for_serving else options.input_dtype,
                                  input_scaling=self.input_scaling)

    def data_settings(self, image_size, batch_size, seed=None):
        settings = self.settings
        return inputs_lib.DetectionSettings(
            image_size=image_size, batch_size=batch_size, num_classes=self.run.num_classes,
            anchors=settings.anchors, max_instances=settings.max_instances,
            scale_range=settings.scale_range, random_flip=settings.random_flip,
            dtype=tf.as_dtype(self.run.image_dtype), shuffle_buffer=settings.shuffle_buffer,
            cache=settings.cache, max_pixels=settings.max_pixels, seed=seed,
            deterministic=settings.deterministic,
            pad_colour=self.pad_colour)

    def train_dataset(self, stage, input_context=None, seed=None, counter=None):
        settings = self.data_settings(stage.image_size, self.run.per_replica_batch, seed)
        if not stage.scale_jitter:
            settings = dataclasses.replace(settings, scale_range=(1.0, 1.0))
        return inputs_lib.train_dataset(self.source, settings, input_context, counter,
                                      self.truncations if counter is not None else None)

    def eval_dataset(self, input_context=None, counter=None, batch_size=None):
        batch_size = batch_size or self.run.eval_batch // self.run.placement.replicas
        settings = self.data_settings(self.settings.image_size, batch_size)
        return inputs_lib.eval_dataset(self.source, settings, batch_size, input_context, counter)

    def recalibration_dataset(self, input_context=None):
        """(dataset of (images, targets) batches for one replica, number of batches) on which
        batch norm's statistics are recomputed at the end of training: training images as
        evaluation transforms them (no jitter, no flip), whole batches only; None when the run
        does not recalibrate."""
        images = min(self.settings.bn_recalibration_images, self.source.num_examples(TRAIN))
        if not images:
            return None
        batch = self.run.per_replica_batch
        settings = self.data_settings(self.settings.image_size, batch)
        dataset = inputs_lib.eval_dataset(self.source, settings, batch, input_context,
                                          split=TRAIN)
        return dataset, max(1, images // self.run.global_batch)

    def _loss_sums(self, targets, outputs):
        """Per-example (focal loss sum, box loss sum / 4), not yet normalized."""
        settings, num_classes = self.settings, self.run.num_classes
        class_sum, box_sum = 0.0, 0.0
        for level in settings.anchors.levels:
            classes = targets[f"classes_{level}"]
            logits = outputs[f"classes_{level}"]
            logits = tf.reshape(logits, tf.concat([tf.shape(classes), [num_classes]], 0))
            focal = loss_lib.focal_loss(logits, classes, num_classes, settings.focal_alpha,
                               settings.focal_gamma, settings.label_smoothing)
            class_sum += tf.reduce_sum(focal, axis=[1, 2, 3, 4])
            positive = tf.repeat(tf.cast(classes >= 0, tf.float32), 4, axis=-1)
            huber = loss_lib.huber_loss(outputs[f"boxes_{level}"], targets[f"boxes_{level}"],
                               settings.huber_delta)
            box_sum += tf.reduce_sum(huber * positive, axis=[1, 2, 3]) / 4.0
        return class_sum, box_sum

    def _normalized_sums(self, targets, outputs):
        """(focal sums, box sums, global positives + 1) of a step; train_metrics reads the
        ones its step's loss computed (the same traced tensors) instead of computing twice."""
        memo = getattr(self._step_sums, "value", None)  # per thread: replicas trace in their own
        if memo is not None and memo[0] is outputs:
            return memo[1]
        class_sum, box_sum = self._loss_sums(targets, outputs)
        sums = (class_sum, box_sum, loss_lib.global_positives(targets["num_positives"]))
        self._step_sums.value = (outputs, sums)
        return sums

    def loss(self, targets, outputs):
        """Per-example loss, scaled so that the loop's sum / global batch is the global-batch
        loss: (focal + weight x Huber) / (positives of the global batch + 1)."""
        class_sum, box_sum, normalizer = self._normalized_sums(targets, outputs)
        total = class_sum + self.settings.box_loss_weight * box_sum
        return total / normalizer * float(self.run.global_batch)

    def train_metrics(self, targets, outputs):
        class_sum, box_sum, normalizer = self._normalized_sums(targets, outputs)
        self._step_sums.value = None
        return {"class_loss": tf.reduce_sum(class_sum) / normalizer,
                "box_loss": tf.reduce_sum(box_sum) / normalizer,
                "positives": tf.reduce_sum(tf.cast(targets["num_positives"], tf.float32))}

    def summarize(self, totals):
        steps = max(totals["examples"] / self.run.global_batch, 1e-9)
        return {"class_loss": totals["class_loss"] / steps,
                "box_loss": totals["box_loss"] / steps,
                "positives_per_image": totals["positives"] / max(totals["examples"], 1.0)}

    def eval_step(self, model, inputs, targets):
        """The eval loss's sums and each image's best candidates (input pixels): NMS runs on
        the host (Evaluator), as soft-NMS has no XLA kernel for a TPU step."""
        outputs = model(inputs, training=False)
        class_sum, box_sum = self._loss_sums(targets, outputs)
        real = tf.cast(targets["image_id"] >= 0, tf.float32)
        logits, codes = postprocess.flatten(outputs, self.run.num_classes)
        size = self.settings.image_size
        boxes, scores, classes = postprocess.candidates(
            logits, codes, anchors_lib.generate((size, size), self.settings.anchors),
            self.nms_settings.max_candidates)
        return {"loss_sum": tf.reduce_sum((class_sum + self.settings.box_loss_weight * box_sum)
                                          * real),
                "positives": tf.reduce_sum(tf.cast(targets["num_positives"], tf.float32) * real),
                "image_id": targets["image_id"], "scale": targets["scale"], "boxes": boxes,
                "scores": scores, "classes": classes}

    @property
    def nms_settings(self):
        return postprocess.NmsSettings(method=self.settings.eval_nms)

    def ground_truth(self):
        """The eval split's ground truth: the original annotation file as it is when
        detection.eval_annotations names it (as automl scores COCO), else rebuilt from the
        source (boxes within a pixel of their image clipped to it)."""
        if self._ground_truth is None:
            path = self.settings.eval_annotations
            self._ground_truth = (
                detection_sources.file_ground_truth(path, self.source.category_ids,
                                                    self.run.class_names)
                if path else self.source.ground_truth(EVAL))
        return self._ground_truth

    def evaluator(self):
        return Evaluator(self.ground_truth(), self.run.class_names, self.nms_settings,
                         self.settings.image_size)

    def serving_module(self, model, top_k=5, nms=None):
        """The detector's SavedModel module: see serving_module (top_k is a classifier's)."""
        del top_k
        return serving.serving_module(model, self.run.spec, self.settings.image_size,
                              self.settings.anchors, self.run.class_names, nms,
                              self.settings.max_pixels, self.pad_colour)

    @staticmethod
    def pretrained_serving_module(model, spec, image_size, class_names=None, top_k=5, nms=None,
                                  probabilities="sigmoid"):
        """The serving module of pretrained weights (no run), at `image_size` (a detector's
        scores are sigmoids; top_k is a classifier's)."""
        del top_k, probabilities
        return serving.serving_module(model, spec, image_size, anchors_lib.settings_of(spec),
                              class_names, nms)

    def describe(self, metrics):
        return (f"COCO AP {100 * metrics['AP']:.2f} AP50 {100 * metrics['AP50']:.2f} AP75 "
                f"{100 * metrics['AP75']:.2f} (small/medium/large "
                f"{_percent(metrics['APs'])}/{_percent(metrics['APm'])}/"
                f"{_percent(metrics['APl'])}) on {metrics['examples']} images at "
                f"{self.settings.image_size} px")


def _percent(value):
    """COCO's -1 (no object of that size) as '-'."""
    return "-" if value < 0 else f"{100 * value:.1f}"

