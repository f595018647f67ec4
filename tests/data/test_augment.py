"""RandAugment / AutoAugment ops (docs/reference.md §5): checked against PIL where PIL defines the
op, and against the official code's numbers where it computes something else."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from efficientnet_tf.data import augment

from imagedata import photo

IMAGE = photo("astronaut", (64, 48))  # uint8, 48 x 64 x 3
SEED = tf.constant([3, 4], tf.int64)


def run(name, magnitude, image=IMAGE, seed=SEED, corrected=False):
    return augment.apply_op(name, tf.constant(image), tf.constant(float(magnitude)), seed,
                            corrected=corrected).numpy()


@pytest.mark.parametrize("name", augment.RANDAUGMENT_OPS)
def test_every_op_eagerly_and_inside_tf_data(name):
    eager = run(name, 7)
    assert eager.dtype == np.uint8 and eager.shape == IMAGE.shape
    dataset = tf.data.Dataset.from_tensors(IMAGE).map(
        lambda image: augment.apply_op(name, image, tf.constant(7.0), SEED))
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), eager)  # same seed, same result


@pytest.mark.parametrize("name", augment.GEOMETRIC_OPS)
def test_magnitude_zero_leaves_geometric_ops_as_identity(name):
    np.testing.assert_array_equal(run(name, 0), IMAGE)


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "TranslateY", "Color", "Posterize"])
def test_a_real_magnitude_changes_the_image(name):
    assert (run(name, 9) != IMAGE).mean() > 0.2


def test_pointwise_ops():
    np.testing.assert_array_equal(run("Invert", 5), 255 - IMAGE)
    threshold = int(0.5 * 256)
    np.testing.assert_array_equal(run("Solarize", 5),
                                  np.where(IMAGE < threshold, IMAGE, 255 - IMAGE))
    np.testing.assert_array_equal(run("Posterize", 5), IMAGE & 0b11000000)  # int(0.5*4)=2 bits
    added = np.minimum(IMAGE.astype(int) + int(0.5 * 110), 255).astype(np.uint8)
    np.testing.assert_array_equal(run("SolarizeAdd", 5), np.where(IMAGE < 128, added, IMAGE))


@pytest.mark.parametrize("magnitude, threshold", [
    (5, 128), (6.6667, 170), (10, 0), (11.6667, 42), (15, 128), (20, 0)])
def test_solarize_threshold_wraps_in_uint8_as_the_official_code(magnitude, threshold):
    """autoaugment.py: int(magnitude / 10 * 256) compared with a uint8 image wraps modulo 256,
    so magnitude 10 inverts every pixel and 15 acts as 5 (automl V2-S/M/L stage magnitudes)."""
    pixels = np.array([[[0, 41, 42], [127, 128, 129], [169, 170, 255]]], np.uint8)
    expected = np.where(pixels < threshold, pixels, 255 - pixels)
    np.testing.assert_array_equal(run("Solarize", magnitude, pixels), expected)
    corrected = run("Solarize", magnitude, pixels, corrected=True)
    np.testing.assert_array_equal(corrected, np.where(pixels < int(magnitude / 10 * 256),
                                                      pixels, 255 - pixels))


@pytest.mark.parametrize("side, gray", [(224, 196), (192, 144), (171, 114), (64, 16), (256, 255),
                                        (300, 255)])
def test_contrast_blends_towards_pixel_count_over_256_as_the_official_code(side, gray):
    """autoaugment.py contrast(): the 'mean' is sum(histogram) / 256 = pixel count / 256, clipped
    to 255 and cast to uint8 -- a gray set by the image size, not its content."""
    for value in (0, 255):
        image = np.full((side, side, 3), value, np.uint8)
        factor = 0.5 / 10 * 1.8 + 0.1  # magnitude 0.5: factor 0.19
        expected = np.clip(gray + factor * (value - gray), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(run("Contrast", 0.5, image), expected)


def test_equalize_and_autocontrast_equal_pil():
    pil = Image.fromarray(IMAGE)
    np.testing.assert_array_equal(run("Equalize", 5), np.asarray(ImageOps.equalize(pil)))
    np.testing.assert_array_equal(augment.autocontrast(tf.constant(IMAGE)),
                                  _per_channel(ImageOps.autocontrast, IMAGE))
    flat = np.full((8, 8, 3), 77, np.uint8)
    np.testing.assert_array_equal(augment.equalize(tf.constant(flat)), flat)
    np.testing.assert_array_equal(augment.autocontrast(tf.constant(flat)), flat)


def _per_channel(function, image):
    return np.stack([np.asarray(function(Image.fromarray(image[:, :, c])))
                     for c in range(3)], axis=-1)


@pytest.mark.parametrize("name, enhancer", [
    ("Color", ImageEnhance.Color), ("Contrast", ImageEnhance.Contrast),
    ("Brightness", ImageEnhance.Brightness), ("Sharpness", ImageEnhance.Sharpness)])
@pytest.mark.parametrize("magnitude", [2, 10, 15])
def test_enhance_ops_follow_pil(name, enhancer, magnitude):
    factor = magnitude / 10 * 1.8 + 0.1
    expected = np.asarray(enhancer(Image.fromarray(IMAGE)).enhance(factor)).astype(int)
    got = run(name, magnitude, corrected=True).astype(int)
    # PIL rounds where we truncate, and its grayscale uses integer weights: off by a few levels.
    assert np.abs(got - expected).max() <= 4
    assert np.abs(got - expected).mean() < 1.0


def test_rotate_follows_pil_nearest_with_gray_fill():
    degrees = 0.5 * 30  # magnitude 5, before the random sign
    got = augment.rotate(tf.constant(IMAGE), degrees).numpy()
    expected = np.asarray(Image.fromarray(IMAGE).rotate(degrees, resample=Image.NEAREST,
                                                        fillcolor=(128, 128, 128)))
    assert (got == expected).mean() > 0.97  # pixel-center rounding differs on a few edges
    assert (got[0, 0] == 128).all()


def test_shear_and_translate_geometry():
    translated = augment.translate_x(tf.constant(IMAGE), 10.0).numpy()
    np.testing.assert_array_equal(translated[:, 10:], IMAGE[:, :-10])
    assert (translated[:, :10] == 128).all()
    up = augment.translate_y(tf.constant(IMAGE), -5.0).numpy()
    np.testing.assert_array_equal(up[:-5], IMAGE[5:])
    assert (up[-5:] == 128).all()
    sheared = augment.shear_x(tf.constant(IMAGE), 0.2).numpy()
    np.testing.assert_array_equal(sheared[0], IMAGE[0])  # row 0 does not move
    row = 40
    np.testing.assert_array_equal(sheared[row, :50], IMAGE[row, 8:58])  # x_in = x + 0.2 * y


def test_cutout_square():
    image = np.zeros((50, 50, 3), np.uint8)
    out = augment.cutout(tf.constant(image), 5, SEED).numpy()
    ys, xs = np.nonzero(out[:, :, 0] == 128)
    assert (out[ys, xs] == 128).all() and len(ys) > 0
    assert ys.max() - ys.min() + 1 <= 10 and xs.max() - xs.min() + 1 <= 10
    assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one rectangle


def test_magnitudes_above_ten_extrapolate():
    assert (run("Brightness", 20) >= run("Brightness", 10)).all()
    assert np.abs(augment.rotate(tf.constant(IMAGE), 60.0).numpy().astype(int) - IMAGE).mean() > \
        np.abs(augment.rotate(tf.constant(IMAGE), 30.0).numpy().astype(int) - IMAGE).mean()


def test_randaugment_picks_ops_uniformly_and_independently_per_image():
    randaugment = augment.RandAugment(num_layers=2, magnitude=9)
    seeds = [tf.constant([i, 11], tf.int64) for i in range(800)]
    picks = np.array([randaugment.op_indices(seed).numpy() for seed in seeds])
    assert picks.shape == (800, 2)
    counts = np.bincount(picks.ravel(), minlength=16)
    assert counts.min() > 60 and counts.max() < 145  # 100 expected per op
    assert (picks[:, 0] == picks[:, 1]).mean() < 0.12  # independent: 1/16 expected


def test_size_relative_constants_scale_translation_and_cutout_with_the_image():
    assert augment.scaled_constants(augment.RANDAUGMENT_CONSTANTS, 64) == pytest.approx(
        {"translate": 100 * 64 / 224, "cutout": 40 * 64 / 224})
    image = np.zeros((64, 64, 3), np.uint8) + 200
    official = augment.RandAugment(1, 10, ops=("TranslateX",))
    relative = augment.RandAugment(1, 10, ops=("TranslateX",), relative_to_size=True)
    # Magnitude 10: 100 px, more than the image (all fill), or 28.6 -> 29 px of 64.
    filled = [(op(tf.constant(image), SEED).numpy()[..., 0] == 128).mean()
              for op in (official, relative)]
    assert filled == pytest.approx([1.0, 29 / 64])


# tensorflow/tpu autoaugment.py policy_v0(): (op, probability, level) pairs, written out here.
POLICY_V0 = """
Equalize 0.8 1, ShearY 0.8 4 | Color 0.4 9, Equalize 0.6 3 | Color 0.4 1, Rotate 0.6 8
Solarize 0.8 3, Equalize 0.4 7 | Solarize 0.4 2, Solarize 0.6 2 | Color 0.2 0, Equalize 0.8 8
Equalize 0.4 8, SolarizeAdd 0.8 3 | ShearX 0.2 9, Rotate 0.6 8 | Color 0.6 1, Equalize 1.0 2
Invert 0.4 9, Rotate 0.6 0 | Equalize 1.0 9, ShearY 0.6 3 | Color 0.4 7, Equalize 0.6 0
Posterize 0.4 6, AutoContrast 0.4 7 | Solarize 0.6 8, Color 0.6 9 | Solarize 0.2 4, Rotate 0.8 9
Rotate 1.0 7, TranslateY 0.8 9 | ShearX 0.0 0, Solarize 0.8 4 | ShearY 0.8 0, Color 0.6 4
Color 1.0 0, Rotate 0.6 2 | Equalize 0.8 4, Equalize 0.0 8 | Equalize 1.0 4, AutoContrast 0.6 2
ShearY 0.4 7, SolarizeAdd 0.6 7 | Posterize 0.8 2, Solarize 0.6 10 | Solarize 0.6 8, Equalize 0.6 1
Color 0.8 6, Rotate 0.4 5
"""


def test_autoaugment_policy_is_the_official_v0():
    expected = tuple(
        tuple((name, float(probability), int(level)) for name, probability, level in
              (op.split() for op in sub_policy.split(",")))
        for sub_policy in POLICY_V0.replace("\n", " | ").split("|") if sub_policy.strip())
    assert augment.POLICY_V0 == expected


def test_autoaugment_runs_a_policy_in_tf_data():
    autoaugment = augment.AutoAugment()
    dataset = tf.data.Dataset.range(16).map(
        lambda i: autoaugment(tf.constant(IMAGE), tf.stack([i, tf.constant(1, tf.int64)])))
    outputs = [image.numpy() for image in dataset]
    assert all(o.shape == IMAGE.shape and o.dtype == np.uint8 for o in outputs)
    assert sum((o != IMAGE).any() for o in outputs) >= 8


def test_unknown_op_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown augmentation op 'Blur'"):
        run("Blur", 5)
    with pytest.raises(ValueError, match=r"unknown RandAugment ops \['Blur'\]"):
        augment.RandAugment(ops=("Rotate", "Blur"))
