"""Box geometry for detection: IoU and the Faster R-CNN box coder (Ren et al. 2015, eq. 2).

Boxes are [..., 4] as (ymin, xmin, ymax, xmax). A box is coded relative to its anchor as
(ty, tx, th, tw) = ((y - ya) / ha, (x - xa) / wa, log(h / ha), log(w / wa)) of centres and sizes,
with no scale factors (google/automl efficientdet uses FasterRcnnBoxCoder without them); decode
inverts it exactly. Pure TensorFlow with static shapes, for tf.data and TPU graphs.
"""

import tensorflow as tf

# Keeps the logarithm and the division finite for degenerate boxes (automl's coder adds 1e-8).
EPSILON = 1e-8


def _centres_and_sizes(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    height, width = ymax - ymin, xmax - xmin
    return ymin + height / 2, xmin + width / 2, height, width


def encode(boxes, anchors):
    """(ty, tx, th, tw) [..., 4] of `boxes` relative to `anchors` (same shape)."""
    y, x, h, w = _centres_and_sizes(tf.cast(boxes, tf.float32))
    ya, xa, ha, wa = _centres_and_sizes(tf.cast(anchors, tf.float32))
    ha, wa, h, w = ha + EPSILON, wa + EPSILON, h + EPSILON, w + EPSILON
    return tf.stack([(y - ya) / ha, (x - xa) / wa, tf.math.log(h / ha), tf.math.log(w / wa)],
                    axis=-1)


def decode(codes, anchors):
    """Boxes [..., 4] from their codes relative to `anchors` (encode's inverse)."""
    ty, tx, th, tw = tf.unstack(tf.cast(codes, tf.float32), axis=-1)
    ya, xa, ha, wa = _centres_and_sizes(tf.cast(anchors, tf.float32))
    ha, wa = ha + EPSILON, wa + EPSILON
    y, x = ty * ha + ya, tx * wa + xa
    h, w = tf.exp(th) * ha - EPSILON, tf.exp(tw) * wa - EPSILON
    return tf.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def area(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.maximum(ymax - ymin, 0.0) * tf.maximum(xmax - xmin, 0.0)


def iou(boxes, others):
    """Intersection over union [N, M] of boxes [N, 4] with others [M, 4] (0 where both are
    empty)."""
    boxes, others = tf.cast(boxes, tf.float32), tf.cast(others, tf.float32)
    ymin, xmin, ymax, xmax = [part[:, None] for part in tf.unstack(boxes, axis=-1)]
    oymin, oxmin, oymax, oxmax = [part[None, :] for part in tf.unstack(others, axis=-1)]
    height = tf.maximum(tf.minimum(ymax, oymax) - tf.maximum(ymin, oymin), 0.0)
    width = tf.maximum(tf.minimum(xmax, oxmax) - tf.maximum(xmin, oxmin), 0.0)
    intersection = height * width
    union = area(boxes)[:, None] + area(others)[None, :] - intersection
    return tf.math.divide_no_nan(intersection, union)
