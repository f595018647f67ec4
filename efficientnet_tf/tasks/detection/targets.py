"""Anchor labeling: which object each anchor must predict, as dense static-shape targets.

An argmax matcher (RetinaNet §4; google/automl efficientdet's ArgMaxMatcher with matched and
unmatched thresholds 0.5 and force_match_for_each_row): each anchor takes the ground-truth box
it overlaps most; IoU >= `matched_threshold` makes it a positive for that box's class, below
`unmatched_threshold` background, in between ignored (both are 0.5 in automl: none is). Then
every ground-truth box is forced onto the anchor that overlaps it most, so that no object goes
untrained (a small or odd-shaped box may reach IoU 0.5 with no anchor). Positives get the box's
code (boxes.encode) as target.

Ground truth arrives padded to `max_instances` rows (class -1 marks padding) and the targets
have static shapes: this runs per example inside tf.data (on the host; inside, only the real
objects are compared with the anchors) and feeds TPU steps.
"""

import dataclasses

import tensorflow as tf

from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import boxes as boxes_lib

BACKGROUND, IGNORED, PADDING = -1, -2, -1


@dataclasses.dataclass(frozen=True)
class AnchorTargets:
    """One example's targets: per level {level: tensor}; classes [H, W, A] int32 (a class id,
    BACKGROUND or IGNORED), boxes [H, W, A * 4] float32 codes (0 where not positive)."""

    classes: dict
    boxes: dict
    num_positives: tf.Tensor  # float32 scalar


def pad_instances(boxes, classes, max_instances):
    """(boxes [max_instances, 4], classes [max_instances] with PADDING rows, number of
    instances dropped): the first `max_instances` of an example's objects, padded."""
    count = tf.shape(classes)[0]
    dropped = tf.maximum(count - max_instances, 0)
    boxes = tf.cast(boxes[:max_instances], tf.float32)
    classes = tf.cast(classes[:max_instances], tf.int32)
    padding = max_instances - tf.shape(classes)[0]
    boxes = tf.pad(boxes, [[0, padding], [0, 0]])
    classes = tf.pad(classes, [[0, padding]], constant_values=PADDING)
    boxes.set_shape([max_instances, 4])
    classes.set_shape([max_instances])
    return boxes, classes, dropped


def match(anchors, gt_boxes, gt_classes, matched_threshold=0.5, unmatched_threshold=0.5):
    """(index of each anchor's box [N] int32, or BACKGROUND / IGNORED): the argmax matcher with
    every valid box forced onto its best anchor.

    Only the valid rows are compared with the anchors: an image has a few objects and
    max_instances (100) rows, and the [N, K] overlaps of all of them were most of the input
    pipeline's time (scripts/bench_detect_train.py measures the pipeline)."""
    objects = tf.cast(tf.where(gt_classes != PADDING)[:, 0], tf.int32)  # [k], in order
    count = tf.shape(objects)[0]
    overlaps = boxes_lib.iou(anchors, tf.gather(gt_boxes, objects))  # [N, k]
    # A last column below any IoU keeps the argmax defined when there is no object (k = 0).
    best = tf.argmax(tf.pad(overlaps, [[0, 0], [0, 1]], constant_values=-1.0), axis=1,
                     output_type=tf.int32)
    best_overlap = tf.reduce_max(overlaps, axis=1)  # the lowest float when k = 0
    rows = tf.concat([objects, [BACKGROUND]], 0)  # compared column -> ground-truth row
    best_box = tf.gather(rows, best)
    matches = tf.where(best_overlap >= matched_threshold, best_box,
                       tf.where(best_overlap < unmatched_threshold, BACKGROUND, IGNORED))
    # Force: the best anchor of each object is that object's; where objects share their best
    # anchor, the first of them keeps it (automl's ArgMaxMatcher).
    best_anchor = tf.argmax(overlaps, axis=0, output_type=tf.int32)  # [k]
    owner = tf.math.unsorted_segment_min(tf.range(count), best_anchor, tf.shape(anchors)[0])
    is_forced = owner < count  # an empty segment holds the largest int32
    return tf.where(is_forced, tf.gather(rows, tf.minimum(owner, count)), matches)


def label(anchors, gt_boxes, gt_classes, image_size, settings, matched_threshold=0.5,
          unmatched_threshold=0.5):
    """Targets for one example: `anchors` [N, 4] of anchors.generate(image_size, settings),
    padded ground truth `gt_boxes` [K, 4] (input pixels) and `gt_classes` [K] (0-based)."""
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_classes = tf.cast(gt_classes, tf.int32)
    matches = match(anchors, gt_boxes, gt_classes, matched_threshold, unmatched_threshold)
    positive = matches >= 0
    safe = tf.maximum(matches, 0)
    classes = tf.where(positive, tf.gather(gt_classes, safe), matches)
    codes = boxes_lib.encode(tf.gather(gt_boxes, safe), anchors)
    codes = tf.where(positive[:, None], codes, 0.0)
    return AnchorTargets(classes=anchors_lib.split_by_level(classes, image_size, settings),
                   boxes=anchors_lib.split_by_level(codes, image_size, settings),
                   num_positives=tf.reduce_sum(tf.cast(positive, tf.float32)))
