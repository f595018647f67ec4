"""Object detection: EfficientDet with focal and Huber losses, judged by COCO AP (EfficientDet §4).

The model is the row's EfficientDet (models/efficientdet.py); the data come from a detection
source (data/detection/sources.py) through data/detection/pipeline.py, labelled per anchor in the
input pipeline. The loss, as google/automl efficientdet (tf2/train_lib.py, hparams_config.py):
sigmoid focal loss (alpha 0.25, gamma 1.5, optional label smoothing) over every class of every
anchor that is not ignored, plus 50 x the Huber loss (delta 0.1) of the box codes of the
positive anchors over 4, both divided by the number of positive anchors + 1 -- counted over the
GLOBAL batch, summed across replicas: automl divides by each replica's own count, so a replica
with few objects weighs more, and its Keras path also forgets the replica count (automl PR
#833, #898); here 1 replica and N replicas with the same global batch make the same update.
Evaluation finds the detections as automl's evaluation does: the top 5000 (anchor, class)
candidates in the step, then on the host (soft-NMS has no XLA kernel for a TPU step) per-class
Gaussian soft-NMS, 100 per image, boxes mapped back to the original pixels and scored with
pycocotools against the source's ground truth.
"""

import dataclasses
import io
import threading
from typing import Tuple

import tensorflow as tf
from absl import logging
from PIL import Image, ImageDraw, ImageFont

from efficientnet_tf import export
from efficientnet_tf.data import image_header
from efficientnet_tf.data.detection import anchors as anchors_lib
from efficientnet_tf.data.detection import coco_metric, labeler, pipeline, postprocess
from efficientnet_tf.data.detection import sources as detection_sources
from efficientnet_tf.data.sources import EVAL
from efficientnet_tf.models import efficientdet, fold
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks import base


# predict --draw's box colours by class (class c: BOX_COLOURS[c % 10]), strong on photos.
BOX_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
               (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (255, 225, 25))


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
                "NMS")


def focal_loss(logits, targets, num_classes, alpha, gamma, label_smoothing=0.0):
    """Per (anchor, class) sigmoid focal loss (RetinaNet §3.3) of logits [..., C] against
    integer targets [...] (a class, labeler.BACKGROUND, or labeler.IGNORED: zero loss).

    With p = sigmoid(x), y the one-hot target, m = 1 - p_t (p, or 1 - p where y = 1), a = alpha_t
    and y' the smoothed target: loss = a m^gamma CE(y', x), and its gradient, written out (as
    p (1 - p) = m (1 - m), with no division by m, which a denormal m would overflow):
    a m^gamma [gamma (1 - m) (1 - 2y) CE(y', x) + p - y']. The forward
    pass keeps the few tensors it needs, and the backward pass is a few element-wise passes
    instead of autodiff's chain of some 35 over the [B, anchors, classes] logits (D0 at 512,
    batch 4, 90 classes: 17.7 M of them): forward and backward take 0.14 s instead of 0.30 on
    2 CPU cores (measured alone), the same values (tests/tasks/test_detection_loss.py checks
    both against autodiff of the formula)."""
    @tf.custom_gradient
    def loss_of(x):
        positive = tf.one_hot(tf.maximum(targets, -1), num_classes, dtype=tf.float32)  # -1: 0s
        kept = tf.cast(targets != labeler.IGNORED, tf.float32)[..., None]
        # The cheap forms: 1 - p_t and softplus(x) - y'x lose relative precision only where
        # p_t is near 1, where m^gamma makes the loss and gradient vanish (< 1e-6 absolute).
        probability = tf.sigmoid(x)
        m = probability + positive - 2.0 * positive * probability  # 1 - p_t
        weight = kept * ((1.0 - alpha) + (2.0 * alpha - 1.0) * positive)  # alpha_t
        target = positive * (1.0 - label_smoothing) + 0.5 * label_smoothing
        cross_entropy = tf.nn.softplus(x) - target * x
        weighted = weight * _power(m, gamma)
        loss = weighted * cross_entropy

        def gradient(upstream):
            return upstream * weighted * (gamma * (1.0 - m) * (1.0 - 2.0 * positive)
                                          * cross_entropy + probability - target)

        return loss, gradient

    return loss_of(tf.cast(logits, tf.float32))


def _power(values, exponent):
    """values ** exponent; RetinaNet's and EfficientDet's exponents (1.5, 2) as a square root and
    products: tf.pow is an exp of a log, and it made the focal loss half as slow again."""
    if exponent == 0:
        return tf.ones_like(values)
    if exponent == 1:
        return values
    if exponent == 1.5:
        return values * tf.sqrt(values)
    if exponent == 2:
        return values * values
    return values ** exponent


def huber_loss(predictions, targets, delta):
    """Element-wise Huber loss: 0.5 x^2 within delta, delta (|x| - delta / 2) beyond."""
    error = tf.abs(tf.cast(predictions, tf.float32) - targets)
    quadratic = tf.minimum(error, delta)
    return 0.5 * quadratic ** 2 + delta * (error - quadratic)


def global_positives(num_positives):
    """The positive anchors of the whole global batch (summed over replicas) + 1."""
    total = tf.reduce_sum(tf.cast(num_positives, tf.float32))
    context = tf.distribute.get_replica_context()
    if context is not None:  # in a replica (a strategy's step, or the default one)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, total)
    return tf.stop_gradient(total) + 1.0


class Evaluator:
    """One pass of eval-step outputs -> COCO metrics (after NMS, here on the host) and the
    eval loss (normalized by the positives of the whole split + 1)."""

    def __init__(self, ground_truth, class_names, nms_settings):
        self.coco = coco_metric.CocoEvaluator(ground_truth, class_names)
        self.nms_settings = nms_settings
        self.totals = {"loss_sum": 0.0, "positives": 0.0}
        self.image_ids = set()
        self.expected = len(ground_truth["images"])

    def update(self, results):
        real = results["image_id"] >= 0
        self.totals["loss_sum"] += float(results["loss_sum"])
        self.totals["positives"] += float(results["positives"])
        self.image_ids.update(int(i) for i in results["image_id"][real])
        if not real.any():
            return
        with tf.device("CPU:0"):
            found = postprocess.nms(results["boxes"][real], results["scores"][real],
                                    results["classes"][real], self.nms_settings)
            boxes = postprocess.to_original(found["boxes"], results["scale"][real],
                                            results["original_size"][real])
        self.coco.update(postprocess.to_coco(
            results["image_id"][real], boxes.numpy(), found["scores"].numpy(),
            found["classes"].numpy(), found["num_detections"].numpy()))

    def finish(self):
        """COCO metrics over the images that were evaluated: an image the pipeline skipped
        (undecodable, above max_pixels; named in the log) is left out, as classification
        leaves it out of top-1, and the difference is logged here."""
        if len(self.image_ids) != self.expected:
            logging.warning("COCO AP over %d of the %d ground-truth images: the others were "
                            "skipped (see the skipped files)", len(self.image_ids),
                            self.expected)
        metrics = self.coco.finish(self.image_ids)
        metrics["loss"] = self.totals["loss_sum"] / (self.totals["positives"] + 1.0)
        metrics["examples"] = len(self.image_ids)
        return metrics


class DetectionTask(base.Task):
    NAME = "detection"
    TRAIN_METRICS = ("class_loss", "box_loss", "positives")
    EVAL_REDUCTIONS = {"loss_sum": "sum", "positives": "sum", "image_id": "gather",
                       "scale": "gather", "original_size": "gather", "boxes": "gather",
                       "scores": "gather", "classes": "gather"}
    HEADLINE = "AP"
    HEADLINE_TITLE = "COCO AP"
    # A detector fine-tuned from another detector: its class predictor re-initialised.
    REINITIALIZED_LAYERS = ("class_net_predict",)

    def __init__(self, run, source):
        super().__init__(run, source)
        self.truncations = pipeline.TruncationCounter(self.settings.max_instances)
        self._ground_truth = None
        self._step_sums = threading.local()  # (outputs, sums) of the step being traced

    @classmethod
    def make_source(cls, data_config):
        return detection_sources.from_config(data_config)

    @classmethod
    def resolve(cls, config, spec, source, strategy):
        if not hasattr(spec, "fpn_width"):
            raise ValueError(f"task 'detection' trains EfficientDet rows, not {spec.name!r}; "
                             "use e.g. --config.model.name=efficientdet-d0")
        if config.progressive.schedule != "none":
            raise ValueError(f"config.progressive.schedule is {config.progressive.schedule!r}: "
                             "a detector trains at one size; set it to 'none'")
        detection = config.detection
        if not 0.0 < detection.scale_min <= detection.scale_max:
            raise ValueError(f"detection.scale_min {detection.scale_min} and scale_max "
                             f"{detection.scale_max}: need 0 < scale_min <= scale_max")
        if detection.max_instances < 1:
            raise ValueError(f"detection.max_instances must be >= 1, got "
                             f"{detection.max_instances}")
        postprocess.NmsSettings(method=detection.eval_nms)  # checks the name
        return DetectionTaskSettings(
            image_size=config.train.image_size or spec.image_size,
            anchors=efficientdet.anchor_settings(spec), max_instances=detection.max_instances,
            scale_range=(detection.scale_min, detection.scale_max),
            random_flip=config.data.random_flip, cache=bool(config.data.cache),
            shuffle_buffer=config.data.shuffle_buffer, deterministic=config.data.deterministic,
            focal_alpha=detection.focal_alpha, focal_gamma=detection.focal_gamma,
            label_smoothing=detection.label_smoothing,
            box_loss_weight=detection.box_loss_weight, huber_delta=detection.huber_delta,
            eval_nms=detection.eval_nms, max_pixels=config.data.max_pixels)

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
        return pipeline.DetectionSettings(
            image_size=image_size, batch_size=batch_size, num_classes=self.run.num_classes,
            anchors=settings.anchors, max_instances=settings.max_instances,
            scale_range=settings.scale_range, random_flip=settings.random_flip,
            dtype=tf.as_dtype(self.run.image_dtype), shuffle_buffer=settings.shuffle_buffer,
            cache=settings.cache, max_pixels=settings.max_pixels, seed=seed,
            deterministic=settings.deterministic,
            pad_colour=self.pad_colour)

    def train_dataset(self, stage, input_context=None, seed=None, counter=None):
        settings = self.data_settings(stage.image_size, self.run.per_replica_batch, seed)
        return pipeline.train_dataset(self.source, settings, input_context, counter,
                                      self.truncations if counter is not None else None)

    def eval_dataset(self, input_context=None, counter=None, batch_size=None):
        batch_size = batch_size or self.run.eval_batch // self.run.placement.replicas
        settings = self.data_settings(self.settings.image_size, batch_size)
        return pipeline.eval_dataset(self.source, settings, batch_size, input_context, counter)

    def _loss_sums(self, targets, outputs):
        """Per-example (focal loss sum, box loss sum / 4), not yet normalized."""
        settings, num_classes = self.settings, self.run.num_classes
        class_sum, box_sum = 0.0, 0.0
        for level in settings.anchors.levels:
            classes = targets[f"classes_{level}"]
            logits = outputs[f"classes_{level}"]
            logits = tf.reshape(logits, tf.concat([tf.shape(classes), [num_classes]], 0))
            focal = focal_loss(logits, classes, num_classes, settings.focal_alpha,
                               settings.focal_gamma, settings.label_smoothing)
            class_sum += tf.reduce_sum(focal, axis=[1, 2, 3, 4])
            positive = tf.repeat(tf.cast(classes >= 0, tf.float32), 4, axis=-1)
            huber = huber_loss(outputs[f"boxes_{level}"], targets[f"boxes_{level}"],
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
        sums = (class_sum, box_sum, global_positives(targets["num_positives"]))
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
                "image_id": targets["image_id"], "scale": targets["scale"],
                "original_size": targets["original_size"], "boxes": boxes, "scores": scores,
                "classes": classes}

    @property
    def nms_settings(self):
        return postprocess.NmsSettings(method=self.settings.eval_nms)

    def ground_truth(self):
        if self._ground_truth is None:
            self._ground_truth = self.source.ground_truth(EVAL)
        return self._ground_truth

    def evaluator(self):
        return Evaluator(self.ground_truth(), self.run.class_names, self.nms_settings)

    def serving_module(self, model, top_k=5, nms=None):
        """The detector's SavedModel module: see serving_module (top_k is a classifier's)."""
        del top_k
        return serving_module(model, self.run.spec, self.settings.image_size,
                              self.settings.anchors, self.run.class_names, nms,
                              self.settings.max_pixels, self.pad_colour)

    @staticmethod
    def pretrained_serving_module(model, spec, image_size, class_names=None, top_k=5, nms=None,
                                  probabilities="sigmoid"):
        """The serving module of pretrained weights (no run), at `image_size` (a detector's
        scores are sigmoids; top_k is a classifier's)."""
        del top_k, probabilities
        return serving_module(model, spec, image_size, efficientdet.anchor_settings(spec),
                              class_names, nms)

    # predict shows detections scored at least this (the export keeps those above 0.001,
    # what COCO AP scores; a person looking at the boxes wants the confident ones).
    MIN_SCORE = 0.3

    @staticmethod
    def read_outputs(outputs, top_k, min_score=0.0):
        """predict's result for one image: its detections scored at least min_score, best
        first (boxes in the image's pixels: ymin, xmin, ymax, xmax)."""
        del top_k
        count = int(outputs["num_detections"][0])
        boxes = outputs["boxes"][0].numpy()[:count].round(2).tolist()
        scores = outputs["scores"][0].numpy()[:count].tolist()
        classes = outputs["classes"][0].numpy()[:count].tolist()
        names = [name.decode("utf-8") for name in outputs["class_names"][0].numpy()[:count]]
        return {"detections": [{"box": box, "score": round(score, 4), "class": c, "label": name}
                               for box, score, c, name in zip(boxes, scores, classes, names)
                               if score >= min_score]}

    @staticmethod
    def format_result(result):
        if not result["detections"]:
            return ["  no detections"]
        return [f"  {d['label']:<16} {d['score']:.3f}  box (ymin, xmin, ymax, xmax) "
                f"{', '.join(f'{v:.1f}' for v in d['box'])}" for d in result["detections"]]

    @staticmethod
    def draw(data, result, path):
        """The image with each detection's box (in its class's colour, BOX_COLOURS) and a label
        'name score' above it, the best drawn last (on top), as a PNG at `path`."""
        with Image.open(io.BytesIO(data)) as picture:  # local: decodes bytes in memory
            picture = picture.convert("RGB")
        pen = ImageDraw.Draw(picture)
        width = max(2, round(min(picture.size) / 150))
        font = ImageFont.load_default()
        for detection in reversed(result["detections"]):
            colour = BOX_COLOURS[detection["class"] % len(BOX_COLOURS)]
            ymin, xmin, ymax, xmax = detection["box"]
            pen.rectangle([round(xmin), round(ymin), round(xmax), round(ymax)], outline=colour,
                          width=width)
            text = f"{detection['label']} {detection['score']:.2f}"
            left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
            y = max(0, round(ymin) - (bottom - top) - 2)
            pen.rectangle([round(xmin), y, round(xmin) + right - left + 3, y + bottom - top + 2],
                          fill=colour)
            pen.text((round(xmin) + 2, y + 1 - top), text, fill=(255, 255, 255), font=font)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        with tf.io.gfile.GFile(path, "wb") as stream:
            stream.write(buffer.getvalue())

    def describe(self, metrics):
        return (f"COCO AP {100 * metrics['AP']:.2f} AP50 {100 * metrics['AP50']:.2f} AP75 "
                f"{100 * metrics['AP75']:.2f} (small/medium/large "
                f"{_percent(metrics['APs'])}/{_percent(metrics['APm'])}/"
                f"{_percent(metrics['APl'])}) on {metrics['examples']} images at "
                f"{self.settings.image_size} px")


def serving_module(model, spec, image_size, anchors, class_names=None, nms=None,
                   max_pixels=image_header.MAX_PIXELS, pad_colour=None):
    """The detector's SavedModel module (export.DetectionServingModule) of `model` (built from
    `spec`) with its batch norms folded (models/fold.py folded_detector), at `image_size`, with
    `anchors` (anchors.AnchorSettings): `nms` is the serving NMS method, "hard" (the default:
    per-class NMS at IoU 0.5) or "gaussian" (soft-NMS, as the evaluation). It returns up to 100
    detections. `pad_colour`: default the colour the model's input scaling maps to 0."""
    nms_settings = (postprocess.SERVING_NMS if nms in (None, "hard")
                    else postprocess.NmsSettings(method=nms))
    folded = fold.folded_detector(model, spec, efficientdet.num_classes_of(model, spec),
                                  (image_size, image_size), activation="inference_swish")
    return export.DetectionServingModule(
        folded, image_size, anchors, nms_settings, class_names,
        metadata={"task": DetectionTask.NAME, "model": spec.name}, max_pixels=max_pixels,
        pad_colour=pad_colour)


def _percent(value):
    """COCO's -1 (no object of that size) as '-'."""
    return "-" if value < 0 else f"{100 * value:.1f}"

