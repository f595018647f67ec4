"""Detections from a detector's outputs: best candidates, decoded boxes, per-class soft-NMS.

Follows google/automl efficientdet's evaluation path (tf2/postprocess.py: pre_nms L119-156, nms
L159-205, per-class NMS then the best 100 overall L409-467; tf2/eval.py L52): the 5000 best
(anchor, class) pairs of an image by score, their boxes decoded (boxes.decode), Gaussian
soft-NMS (Bodla et al. 2017) class by class with the paper's sigma 0.5 and score threshold 0.001,
then the 100 best detections overall. Unlike automl, classes stay 0-based (automl adds
CLASS_OFFSET = 1 to give COCO ids): mapping class indices to dataset ids is the caller's.

Conventions of the outputs: boxes (ymin, xmin, ymax, xmax) in input pixels, sorted by score;
rows past `num_detections` are padding with score 0, class PADDING (-1) and box 0. Shapes are
static apart from the batch, so this runs under tf.function and in a SavedModel; hard NMS
(tf.image.non_max_suppression_padded) also compiles with XLA (TPU), soft-NMS does not (TF has no
XLA kernel for NonMaxSuppressionV5): on TPU, run it on the host, outside the compiled step.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from efficientnet_tf.tasks.detection import boxes as boxes_lib

PADDING = -1  # the class of a padded row, as targets.PADDING marks padded ground truth
METHODS = ("gaussian", "hard")


@dataclasses.dataclass(frozen=True)
class NmsSettings:
    """Non-maximum suppression.

    method: "gaussian" soft-NMS (a box's score decays by exp(-iou^2 / sigma) per selected box of
        its class; iou_threshold is then unused, as in TF's op) or "hard" (a box overlapping a
        selected box of its class by IoU > iou_threshold is dropped).
    sigma: the soft-NMS paper's sigma (Bodla et al. 2017, Gaussian penalty). TF's
        soft_nms_sigma weighs by exp(-iou^2 / (2 soft_nms_sigma)) (measured in the tests), so
        it is given sigma / 2, as automl's nms does.
    score_threshold: scores at or below it are dropped (also after decay).
    max_candidates: (anchor, class) pairs kept per image before NMS, by score.
    max_detections: detections kept per image after NMS.
    """

    method: str = "gaussian"
    iou_threshold: float = 0.5
    sigma: float = 0.5
    score_threshold: float = 0.001
    max_candidates: int = 5000
    max_detections: int = 100

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown NMS method {self.method!r}; expected one of {METHODS}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold {self.iou_threshold} must be in (0, 1]")
        if not self.sigma > 0.0:
            raise ValueError(f"sigma {self.sigma} must be positive (the paper uses 0.5)")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold {self.score_threshold} must be in [0, 1)")
        for name in ("max_candidates", "max_detections"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def soft_nms_sigma(self):
        """The sigma argument of tf.image.non_max_suppression_with_scores (0 = hard NMS)."""
        return self.sigma / 2 if self.method == "gaussian" else 0.0


# The official evaluation (research notes §9, §11.21).
EVAL_NMS = NmsSettings()
# Serving: hard NMS, which compiles with XLA (TPU) and is cheaper; the low score threshold
# keeps the output what the evaluation would score, so a client filters by score for display.
SERVING_NMS = NmsSettings(method="hard", iou_threshold=0.5, score_threshold=0.001)


def _levels(outputs):
    levels = sorted(int(key.split("_", 1)[1]) for key in outputs if key.startswith("classes_"))
    missing = [level for level in levels if f"boxes_{level}" not in outputs]
    if not levels or missing:
        raise ValueError(f"outputs need classes_L and boxes_L for each level L, got keys "
                         f"{sorted(outputs)}")
    return levels


def flatten(outputs, num_classes):
    """(class logits [B, N, num_classes], box codes [B, N, 4]) float32 of the model's per-level
    outputs, in anchors.generate's order: level by level, row, column, then anchor."""
    class_logits, box_codes = [], []
    for level in _levels(outputs):
        classes = tf.convert_to_tensor(outputs[f"classes_{level}"])
        codes = tf.convert_to_tensor(outputs[f"boxes_{level}"])
        _, height, width, channels = classes.shape
        if channels % num_classes or codes.shape[-1] != channels // num_classes * 4:
            raise ValueError(f"level {level}: {channels} class channels and {codes.shape[-1]} "
                             f"box channels do not fit {num_classes} classes per anchor")
        per_level = height * width * (channels // num_classes)
        # Channel a * num_classes + c (models/efficientdet.py) splits as [anchor, class].
        class_logits.append(tf.reshape(classes, [-1, per_level, num_classes]))
        box_codes.append(tf.reshape(codes, [-1, per_level, 4]))
    return (tf.cast(tf.concat(class_logits, axis=1), tf.float32),
            tf.cast(tf.concat(box_codes, axis=1), tf.float32))


def _soft_nms(boxes, scores, settings):
    """(indices [B, D], scores [B, D], count [B]) of Gaussian soft-NMS, image by image (TF's
    soft-NMS op takes one image and returns as many rows as it keeps: padded to D here)."""
    size = settings.max_detections

    def one_image(args):
        image_boxes, image_scores = args
        index, decayed = tf.image.non_max_suppression_with_scores(
            image_boxes, image_scores, size, score_threshold=settings.score_threshold,
            soft_nms_sigma=settings.soft_nms_sigma)
        count = tf.shape(index)[0]
        index = tf.ensure_shape(tf.pad(index, [[0, size - count]]), [size])
        decayed = tf.ensure_shape(tf.pad(decayed, [[0, size - count]]), [size])
        return index, decayed, count

    signature = (tf.TensorSpec([size], tf.int32), tf.TensorSpec([size], tf.float32),
                 tf.TensorSpec([], tf.int32))
    return tf.map_fn(one_image, (boxes, scores), fn_output_signature=signature)


def _hard_nms(boxes, scores, settings):
    index, count = tf.image.non_max_suppression_padded(
        boxes, scores, settings.max_detections, iou_threshold=settings.iou_threshold,
        score_threshold=settings.score_threshold, pad_to_max_output_size=True,
        canonicalized_coordinates=True)
    return index, tf.gather(scores, index, batch_dims=1), count


def nms(boxes, scores, classes, settings):
    """Per-class NMS of candidates (boxes [B, K, 4], scores [B, K], classes [B, K] int32) ->
    detect()'s dict.

    One NMS call serves every class: each box is moved by class x span, where span exceeds the
    extent of all the boxes, so boxes of different classes never overlap (IoU 0: no
    suppression, a soft-NMS weight of exactly 1). Both NMS ops select greedily in order of
    (decayed) score, so the first max_detections they return are the best max_detections of
    running NMS class by class.
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    classes = tf.cast(classes, tf.int32)
    low, high = tf.reduce_min(boxes), tf.reduce_max(boxes)
    span = high - low + 1.0
    moved = boxes - low + (tf.cast(classes, tf.float32) * span)[..., None]
    run = _soft_nms if settings.method == "gaussian" else _hard_nms
    index, kept_scores, count = run(moved, scores, settings)
    valid = tf.range(settings.max_detections)[None, :] < count[:, None]
    kept_boxes = tf.gather(boxes, index, batch_dims=1)
    kept_classes = tf.gather(classes, index, batch_dims=1)
    return {
        "boxes": tf.where(valid[..., None], kept_boxes, 0.0),
        "scores": tf.where(valid, kept_scores, 0.0),
        "classes": tf.where(valid, kept_classes, PADDING),
        "num_detections": tf.cast(count, tf.int32),
    }


def candidates(class_logits, box_codes, anchors, max_candidates):
    """(boxes [B, K, 4], scores [B, K], classes [B, K]) of the K = max_candidates best
    (anchor, class) pairs of each image by score, boxes decoded and clipped to the anchors'
    extent (which reaches past the image by half the largest anchor: only runaway boxes
    change, and an overflowing code cannot make the class offset of nms() infinite)."""
    class_logits = tf.cast(class_logits, tf.float32)
    anchors = tf.cast(tf.convert_to_tensor(anchors), tf.float32)
    num_anchors, num_classes = class_logits.shape[1], class_logits.shape[2]
    if num_anchors is None or num_classes is None:
        raise ValueError(f"class logits need static anchor and class dimensions, got shape "
                         f"{class_logits.shape}")
    if anchors.shape[0] != num_anchors:
        raise ValueError(f"{anchors.shape[0]} anchors for {num_anchors} anchors of outputs")
    count = min(max_candidates, num_anchors * num_classes)
    # The sigmoid is monotonic: the best logits are the best scores.
    logits, pair = tf.math.top_k(tf.reshape(class_logits, [-1, num_anchors * num_classes]),
                                 k=count)
    anchor_index, classes = pair // num_classes, pair % num_classes
    codes = tf.gather(tf.cast(box_codes, tf.float32), anchor_index, batch_dims=1)
    boxes = boxes_lib.decode(codes, tf.gather(anchors, anchor_index))
    boxes = tf.clip_by_value(boxes, tf.reduce_min(anchors), tf.reduce_max(anchors))
    return boxes, tf.sigmoid(logits), classes


def detect(class_logits, box_codes, anchors, settings=EVAL_NMS, image_extents=None):
    """Detections of flattened outputs (flatten()) over `anchors` [N, 4] (anchors.generate):
    {"boxes": [B, D, 4] float32 (ymin, xmin, ymax, xmax in input pixels), "scores": [B, D],
    "classes": [B, D] int32 (0-based; PADDING past num_detections), "num_detections": [B]
    int32}, D = settings.max_detections, rows sorted by score.

    `image_extents` [B, 2] (height, width in input pixels of each image, whose padding lies
    below and right): boxes are clipped to them BEFORE the NMS, so that the boxes a client sees
    are the boxes the NMS compared, and a box left without area (it lay in the padding) is
    dropped (serving). None keeps them as the evaluation does (automl's per-class path does
    not clip)."""
    boxes, scores, classes = candidates(class_logits, box_codes, anchors,
                                        settings.max_candidates)
    if image_extents is not None:
        extents = tf.tile(tf.cast(image_extents, tf.float32), [1, 2])[:, None, :]
        boxes = tf.clip_by_value(boxes, 0.0, extents)
        has_area = tf.logical_and(boxes[..., 2] > boxes[..., 0], boxes[..., 3] > boxes[..., 1])
        scores = tf.where(has_area, scores, 0.0)
    return nms(boxes, scores, classes, settings)


def to_original(boxes, scale, original_size):
    """Boxes [..., 4] of an input made by resizing an image by `scale` (min(size / height,
    size / width)) and padding it bottom/right, in the image's pixels, clipped to it. `scale`
    has the batch shape of boxes[..., 0, 0] (or is a scalar); original_size (height, width)
    [..., 2]."""
    boxes = tf.cast(boxes, tf.float32)
    scale = tf.cast(scale, tf.float32)[..., None, None]
    original_size = tf.cast(original_size, tf.float32)
    height, width = original_size[..., 0, None], original_size[..., 1, None]
    ymin, xmin, ymax, xmax = tf.unstack(boxes / scale, axis=-1)
    return tf.stack([tf.clip_by_value(ymin, 0.0, height), tf.clip_by_value(xmin, 0.0, width),
                     tf.clip_by_value(ymax, 0.0, height), tf.clip_by_value(xmax, 0.0, width)],
                    axis=-1)


def to_coco(image_ids, boxes, scores, classes, num_detections):
    """float64 [M, 7] rows (image_id, x, y, width, height, score, class) of a batch of
    detections (detect()'s, boxes in the original image's pixels), padding rows dropped: the
    array pycocotools' COCO.loadRes takes and metric.CocoEvaluator.update accumulates."""
    image_ids, boxes, scores, classes, num_detections = (
        np.asarray(value) for value in (image_ids, boxes, scores, classes, num_detections))
    rows = []
    for image in range(len(image_ids)):
        count = int(num_detections[image])
        ymin, xmin, ymax, xmax = np.asarray(boxes[image, :count], np.float64).T
        rows.append(np.stack([np.full(count, image_ids[image], np.float64), xmin, ymin,
                              xmax - xmin, ymax - ymin, scores[image, :count],
                              classes[image, :count]], axis=1).astype(np.float64))
    return np.concatenate(rows) if rows else np.zeros([0, 7], np.float64)
