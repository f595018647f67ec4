"""RandAugment and AutoAugment (policy v0): per-image ops in TensorFlow (docs/reference.md §5).

RandAugment (Cubuk et al. 2020) and AutoAugment (Cubuk et al. 2019) as the official
tensorflow/tpu and google/automl code applies them to uint8 images: the 16 ops below, a
magnitude on a 0..10 scale (values above 10 extrapolate), fill value 128. No tensorflow-addons:
geometric ops are one ImageProjectiveTransformV3 each. Every random choice comes from a
stateless seed (shape [2]), so a pipeline with a seed is reproducible however many threads run it.

Two ops of the official code (autoaugment.py) compute something other than their definition,
and the published accuracies were obtained with them, so they are the default here
(`corrected=False`); `corrected=True` gives the ops as PIL defines them:
  Solarize  the threshold int(magnitude / 10 * 256) is a uint8 there, so it wraps: 256 -> 0
            (every pixel inverted at magnitude 10 and 20), 384 -> 128 at magnitude 15.
  Contrast  blends towards the gray level pixel count / 256 (min 255), not the mean gray level:
            196 for every 224 x 224 image whatever its content.
"""

import math

import tensorflow as tf

MAX_LEVEL = 10.0
FILL = 128
RANDAUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateX", "TranslateY", "Cutout", "SolarizeAdd")
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout")
# Per-policy constants of the official code: RandAugment translates up to 100 px and cuts out
# up to 2 * 40 px; AutoAugment up to 250 and 2 * 100.
RANDAUGMENT_CONSTANTS = {"translate": 100.0, "cutout": 40.0}
AUTOAUGMENT_CONSTANTS = {"translate": 250.0, "cutout": 100.0}
# The image size those pixel constants were set for (ImageNet at 224 px).
REFERENCE_SIZE = 224


def scaled_constants(constants, image_size, reference_size=REFERENCE_SIZE):
    """The pixel constants for `image_size`-px images, in proportion to `reference_size`: on a
    64-px image RandAugment's 100-px translation at magnitude 10 leaves nothing of the content;
    28 px is what it is to a 224-px image."""
    return {key: value * image_size / reference_size for key, value in constants.items()}


def _seeds(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _uniform(seed, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval)


def _random_sign(value, seed):
    return tf.where(_uniform(seed) < 0.5, -value, value)


def blend(image1, image2, factor):
    """image1 + factor * (image2 - image1), clipped to [0, 255] (factor > 1 extrapolates)."""
    image1, image2 = tf.cast(image1, tf.float32), tf.cast(image2, tf.float32)
    return tf.cast(tf.clip_by_value(image1 + factor * (image2 - image1), 0.0, 255.0), tf.uint8)


def _transform(image, matrix):
    """Projective transform (output pixel -> input pixel, 8 parameters), nearest, fill 128."""
    transformed = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis], transforms=tf.cast(tf.stack(matrix)[tf.newaxis], tf.float32),
        output_shape=tf.shape(image)[:2], fill_value=float(FILL), interpolation="NEAREST",
        fill_mode="CONSTANT")
    return transformed[0]


def rotate(image, degrees):
    """Counter-clockwise rotation about the image center."""
    radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    height = tf.cast(tf.shape(image)[0] - 1, tf.float32)
    width = tf.cast(tf.shape(image)[1] - 1, tf.float32)
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = (width - (cos * width - sin * height)) / 2.0
    y_offset = (height - (sin * width + cos * height)) / 2.0
    return _transform(image, [cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])


def shear_x(image, level):
    return _transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image, level):
    return _transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def _shift(image, shift, axis):
    """Moves the image by `shift` whole pixels along `axis` (1 = x, 0 = y), filling with 128.

    The nearest-neighbour projective transform of the official code rounds a translation to
    whole pixels anyway; a pad and a slice do the same without resampling every pixel.
    """
    size = tf.shape(image)[axis]
    shift = tf.clip_by_value(tf.cast(tf.round(shift), tf.int32), -size, size)
    before, after = tf.maximum(shift, 0), tf.maximum(-shift, 0)
    paddings = tf.tensor_scatter_nd_update(tf.zeros([3, 2], tf.int32), [[axis, 0], [axis, 1]],
                                           tf.stack([before, after]))
    padded = tf.pad(image, paddings, constant_values=FILL)
    begin = tf.tensor_scatter_nd_update(tf.zeros([3], tf.int32), [[axis]], [after])
    return tf.slice(padded, begin, tf.shape(image))


def translate_x(image, pixels):
    """Content moves right by `pixels` (left when negative)."""
    return _shift(image, pixels, axis=1)


def translate_y(image, pixels):
    """Content moves down by `pixels` (up when negative)."""
    return _shift(image, pixels, axis=0)


def cutout(image, half_side, seed):
    """Fills a square of side 2 * half_side (clipped at the borders) at a random center with 128."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    y_seed, x_seed = _seeds(seed, 2)
    center_y = tf.random.stateless_uniform([], y_seed, maxval=height, dtype=tf.int32)
    center_x = tf.random.stateless_uniform([], x_seed, maxval=width, dtype=tf.int32)
    top, bottom = tf.maximum(center_y - half_side, 0), tf.minimum(center_y + half_side, height)
    left, right = tf.maximum(center_x - half_side, 0), tf.minimum(center_x + half_side, width)
    box = tf.ones([tf.maximum(bottom - top, 0), tf.maximum(right - left, 0), 1], tf.uint8)
    mask = tf.pad(box, [[top, height - tf.maximum(bottom, top)],
                        [left, width - tf.maximum(right, left)], [0, 0]])
    # Arithmetic rather than tf.where: Select is several times slower on uint8 images.
    return image * (1 - mask) + FILL * mask


def invert(image):
    return 255 - image


def posterize(image, bits):
    """Keeps the `bits` high bits of every channel value."""
    shift = tf.cast(8 - tf.clip_by_value(bits, 0, 8), tf.uint8)
    return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image, threshold):
    """Inverts the values at or above `threshold` (0..255; 0 inverts every pixel)."""
    above = tf.cast(tf.cast(image, tf.int32) >= threshold, tf.uint8)
    # x + (255 - 2x) = 255 - x in uint8's modular arithmetic; no Select (slow on uint8).
    return image + above * (255 - 2 * image)


def solarize_add(image, addition, threshold=128):
    """Adds `addition` to the values below `threshold` (clipped to [0, 255])."""
    pixels = tf.cast(image, tf.float32)
    below = tf.cast(pixels < threshold, tf.float32)
    added = tf.clip_by_value(pixels + tf.cast(addition, tf.float32), 0.0, 255.0)
    return tf.cast(pixels + below * (added - pixels), tf.uint8)


def _grayscale(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def color(image, factor):
    return blend(_grayscale(image), image, factor)


def contrast(image, factor, corrected=True):
    """Blends with a flat gray: the image's mean gray level (PIL), or, uncorrected, the official
    code's pixel count / 256 clipped to 255 and truncated to uint8."""
    if corrected:
        gray = tf.reduce_mean(tf.cast(tf.image.rgb_to_grayscale(image), tf.float32))
    else:
        pixels = tf.cast(tf.shape(image)[0] * tf.shape(image)[1], tf.float32)
        gray = tf.floor(tf.minimum(pixels / 256.0, 255.0))
    return blend(tf.fill(tf.shape(image), gray), image, factor)


def brightness(image, factor):
    return blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
    """Blends with a 3x3 smoothed image (kernel 1 1 1 / 1 5 1 / 1 1 1, /13); borders unchanged."""
    pixels = tf.cast(image, tf.float32)
    rows = pixels[:-2] + pixels[1:-1] + pixels[2:]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]  # 3x3 sums of the interior pixels
    smooth = tf.round((box + 4.0 * pixels[1:-1, 1:-1]) / 13.0)
    interior = tf.pad(tf.ones_like(smooth[:, :, :1]), [[1, 1], [1, 1], [0, 0]])
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]) * interior + pixels * (1.0 - interior)
    return blend(smooth, image, factor)


def autocontrast(image):
    """Stretches every channel to [0, 255]; a flat channel stays as it is."""
    pixels = tf.cast(image, tf.float32)
    low = tf.reduce_min(pixels, axis=[0, 1])
    high = tf.reduce_max(pixels, axis=[0, 1])
    scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1.0), 1.0)
    offset = tf.where(high > low, -low * scale, 0.0)
    return tf.cast(tf.clip_by_value(pixels * scale + offset, 0.0, 255.0), tf.uint8)


def equalize(image):
    """Histogram equalization per channel, with PIL's lookup table."""
    channels = tf.cast(image, tf.int32)
    histogram = tf.stack([tf.histogram_fixed_width(channels[:, :, c], [0, 255], nbins=256)
                          for c in range(3)])
    last = tf.reduce_max(tf.where(histogram > 0, tf.range(256)[tf.newaxis], -1), axis=1)
    last_count = tf.gather(histogram, last, batch_dims=1)
    step = (tf.reduce_sum(histogram, axis=1) - last_count) // 255
    safe_step = tf.maximum(step, 1)[:, tf.newaxis]
    table = (tf.cumsum(histogram, axis=1) + safe_step // 2) // safe_step
    table = tf.clip_by_value(tf.pad(table[:, :-1], [[0, 0], [1, 0]]), 0, 255)
    identity = tf.broadcast_to(tf.range(256), tf.shape(table))
    table = tf.where(tf.equal(step, 0)[:, tf.newaxis], identity, table)
    # One lookup in the flattened [3 * 256] table: channel c reads entries c*256 .. c*256+255.
    flat_table = tf.cast(tf.reshape(table, [-1]), tf.uint8)
    return tf.gather(flat_table, channels + tf.constant([0, 256, 512]))


def solarize_threshold(level, corrected=True):
    """The official threshold int(level * 256) for level = magnitude / 10; uncorrected it wraps
    in uint8 as it does in the official code."""
    threshold = tf.cast(level * 256.0, tf.int32)
    return threshold if corrected else tf.math.floormod(threshold, 256)


def apply_op(name, image, magnitude, seed, constants=None, corrected=False):
    """Applies op `name` at `magnitude` (0..10 scale) with the official arguments; `corrected`
    gives Solarize and Contrast as defined rather than as the official code computes them."""
    constants = constants or RANDAUGMENT_CONSTANTS
    level = tf.cast(magnitude, tf.float32) / MAX_LEVEL
    sign_seed, op_seed = _seeds(seed, 2)
    enhance = level * 1.8 + 0.1
    operations = {
        "AutoContrast": lambda: autocontrast(image),
        "Equalize": lambda: equalize(image),
        "Invert": lambda: invert(image),
        "Rotate": lambda: rotate(image, _random_sign(level * 30.0, sign_seed)),
        "Posterize": lambda: posterize(image, tf.cast(level * 4.0, tf.int32)),
        "Solarize": lambda: solarize(image, solarize_threshold(level, corrected)),
        "SolarizeAdd": lambda: solarize_add(image, tf.cast(level * 110.0, tf.int32)),
        "Color": lambda: color(image, enhance),
        "Contrast": lambda: contrast(image, enhance, corrected),
        "Brightness": lambda: brightness(image, enhance),
        "Sharpness": lambda: sharpness(image, enhance),
        "ShearX": lambda: shear_x(image, _random_sign(level * 0.3, sign_seed)),
        "ShearY": lambda: shear_y(image, _random_sign(level * 0.3, sign_seed)),
        "TranslateX": lambda: translate_x(
            image, _random_sign(level * constants["translate"], sign_seed)),
        "TranslateY": lambda: translate_y(
            image, _random_sign(level * constants["translate"], sign_seed)),
        "Cutout": lambda: cutout(image, tf.cast(level * constants["cutout"], tf.int32), op_seed),
    }
    if name not in operations:
        raise ValueError(f"unknown augmentation op {name!r}; known: {', '.join(operations)}")
    return operations[name]()


class RandAugment:
    """`num_layers` ops per image, each drawn uniformly from `ops` and always applied.

    The official code also draws a probability from uniform(0.2, 0.8) per op but never uses it,
    so every chosen op applies there too, as in the RandAugment paper. `magnitude` is a number
    fixed for the pipeline (a training stage builds its own). With `relative_to_size`,
    translation and cutout scale with the image (scaled_constants); without, they are the
    official pixels at any size.
    """

    def __init__(self, num_layers=2, magnitude=10.0, ops=RANDAUGMENT_OPS, relative_to_size=False,
                 corrected=False):
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers!r}")
        unknown = sorted(set(ops) - set(RANDAUGMENT_OPS))
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; known: {RANDAUGMENT_OPS}")
        self.num_layers = num_layers
        self.magnitude = float(magnitude)
        self.ops = tuple(ops)
        self.relative_to_size = relative_to_size
        self.corrected = corrected

    def _layer_seeds(self, seed):
        """(choice seed, op seed) of each layer."""
        if not self.num_layers:
            return []
        return [tuple(_seeds(layer_seed, 2)) for layer_seed in _seeds(seed, self.num_layers)]

    def _choose(self, choice_seed):
        return tf.random.stateless_uniform([], choice_seed, maxval=len(self.ops), dtype=tf.int32)

    def op_indices(self, seed):
        """Indices into `ops` of the ops that `seed` picks, one per layer."""
        return tf.stack([self._choose(choice) for choice, _ in self._layer_seeds(seed)])

    def _constants(self, image):
        if not self.relative_to_size:
            return RANDAUGMENT_CONSTANTS
        if None in image.shape[:2]:
            raise ValueError("RandAugment(relative_to_size=True) needs images of a static size")
        return scaled_constants(RANDAUGMENT_CONSTANTS, min(image.shape[0], image.shape[1]))

    def __call__(self, image, seed):
        constants = self._constants(image)
        for choice_seed, op_seed in self._layer_seeds(seed):
            op_index = self._choose(choice_seed)
            image = tf.switch_case(op_index, [
                lambda name=name, image=image, op_seed=op_seed: apply_op(
                    name, image, self.magnitude, op_seed, constants, self.corrected)
                for name in self.ops])
            image.set_shape([None, None, 3])
        return image


# AutoAugment ImageNet policy v0 of the official code: 25 sub-policies of (op, probability, level).
POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


class AutoAugment:
    """One sub-policy of POLICY_V0 per image, chosen uniformly; each of its ops applied with its
    probability at its level."""

    def __init__(self, policy=POLICY_V0, corrected=False):
        self.policy = policy
        self.corrected = corrected

    def __call__(self, image, seed):
        choice_seed, op_seed = _seeds(seed, 2)
        index = tf.random.stateless_uniform([], choice_seed, maxval=len(self.policy),
                                            dtype=tf.int32)

        def sub_policy(operations):
            def run():
                result = image
                for (name, probability, level), step_seed in zip(operations,
                                                                 _seeds(op_seed, len(operations))):
                    apply_seed, arg_seed = _seeds(step_seed, 2)
                    result = tf.cond(
                        _uniform(apply_seed) < probability,
                        lambda name=name, level=level, result=result, arg_seed=arg_seed: apply_op(
                            name, result, tf.constant(level, tf.float32), arg_seed,
                            AUTOAUGMENT_CONSTANTS, self.corrected),
                        lambda result=result: result)
                return result
            return run

        return tf.switch_case(index, [sub_policy(operations) for operations in self.policy])
