"""Mixup and cutmix on a batch, as google/automl efficientnetv2 applies them (V2 paper §4.2).

Mixup (Zhang et al. 2018): example i is blended with example n-1-i of the same (half) batch, with
its own lambda ~ Beta(alpha, alpha) folded to max(lambda, 1 - lambda), images and labels alike.
Cutmix (Yun et al. 2019): each example gets a box of side sqrt(1 - area) x the image side,
area ~ Beta(alpha, alpha), at a uniform center, clipped to the image; inside it the pixels come
from example n-1-i; the labels are weighted by the MEAN box share over the batch (automl's
`cutmix`: one weight for the whole batch, not one per example).
With both alphas set, the first half of the batch gets mixup and the second half cutmix, each
mixed within its own half (automl datasets.py ImageNetInput.mixing). An alpha of 0 turns its kind
off. The alphas are plain numbers fixed per training stage: the dataset function captures no
variable, so it can run on every host of a TPU pod.
"""

import tensorflow as tf


def _seeds(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def beta(shape, alpha, seed):
    """Beta(alpha, alpha) samples from two stateless gamma draws (alpha > 0)."""
    first, second = _seeds(seed, 2)
    x = tf.random.stateless_gamma(shape, first, alpha=alpha)
    y = tf.random.stateless_gamma(shape, second, alpha=alpha)
    return x / tf.maximum(x + y, 1e-12)


def mixup(images, labels, alpha, seed):
    """images [n, H, W, C] float, soft labels [n, K]: each blended with the reversed batch."""
    weight = beta([tf.shape(images)[0]], alpha, seed)
    weight = tf.maximum(weight, 1.0 - weight)
    image_weight = weight[:, tf.newaxis, tf.newaxis, tf.newaxis]
    label_weight = weight[:, tf.newaxis]
    return (image_weight * images + (1.0 - image_weight) * tf.reverse(images, [0]),
            label_weight * labels + (1.0 - label_weight) * tf.reverse(labels, [0]))


def cutmix_boxes(batch, height, width, alpha, seed):
    """[batch, H, W, 1] float masks, 1 inside each example's box (automl datasets.cutmix_mask)."""
    area_seed, y_seed, x_seed = _seeds(seed, 3)
    ratio = tf.sqrt(1.0 - beta([batch], alpha, area_seed))
    box_height = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32)
    box_width = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32)
    center_y = tf.random.stateless_uniform([batch], y_seed, maxval=height, dtype=tf.int32)
    center_x = tf.random.stateless_uniform([batch], x_seed, maxval=width, dtype=tf.int32)
    top = tf.clip_by_value(center_y - box_height // 2, 0, height)
    bottom = tf.clip_by_value(center_y + box_height // 2, 0, height)
    left = tf.clip_by_value(center_x - box_width // 2, 0, width)
    right = tf.clip_by_value(center_x + box_width // 2, 0, width)
    rows = tf.range(height)[tf.newaxis, :, tf.newaxis]
    columns = tf.range(width)[tf.newaxis, tf.newaxis, :]
    inside = ((rows >= top[:, None, None]) & (rows < bottom[:, None, None])
              & (columns >= left[:, None, None]) & (columns < right[:, None, None]))
    return tf.cast(inside, tf.float32)[..., tf.newaxis]


def cutmix(images, labels, alpha, seed):
    """images [n, H, W, C] float, soft labels [n, K]: a box of the reversed batch pasted in each."""
    shape = tf.shape(images)
    masks = cutmix_boxes(shape[0], shape[1], shape[2], alpha, seed)
    pasted = tf.reduce_mean(masks)  # the share of pasted pixels, over the whole batch
    return ((1.0 - masks) * images + masks * tf.reverse(images, [0]),
            (1.0 - pasted) * labels + pasted * tf.reverse(labels, [0]))


class Mixing:
    """Mixup and/or cutmix of a stage, applied to batches (images float, one-hot labels)."""

    def __init__(self, mixup_alpha=0.0, cutmix_alpha=0.0):
        for name, alpha in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
            if alpha < 0:
                raise ValueError(f"{name} must be >= 0, got {alpha!r}")
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)

    @property
    def active(self):
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images, labels, seed):
        """images [B, H, W, C], labels [B, K] float -> mixed images (float32), soft labels."""
        images = tf.cast(images, tf.float32)
        labels = tf.cast(labels, tf.float32)
        mixup_seed, cutmix_seed = _seeds(seed, 2)
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            half = tf.shape(images)[0] // 2
            first = mixup(images[:half], labels[:half], self.mixup_alpha, mixup_seed)
            second = cutmix(images[half:], labels[half:], self.cutmix_alpha, cutmix_seed)
            return (tf.concat([first[0], second[0]], 0), tf.concat([first[1], second[1]], 0))
        if self.mixup_alpha > 0:
            return mixup(images, labels, self.mixup_alpha, mixup_seed)
        if self.cutmix_alpha > 0:
            return cutmix(images, labels, self.cutmix_alpha, cutmix_seed)
        return images, labels
