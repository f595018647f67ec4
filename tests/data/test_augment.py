"""RandAugment / AutoAugment ops and mixup / cutmix (REFERENCE.md §5), checked against PIL where
PIL defines the op."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from efficientnet_tf.data import augment

from imagedata import photo

IMAGE = photo("astronaut", (64, 48))  # uint8, 48 x 64 x 3
SEED = tf.constant([3, 4], tf.int64)


def run(name, magnitude, image=IMAGE, seed=SEED):
    return augment.apply_op(name, tf.constant(image), tf.constant(float(magnitude)), seed).numpy()


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
    got = run(name, magnitude).astype(int)
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


def test_randaugment_magnitude_changes_without_rebuilding_the_pipeline():
    randaugment = augment.RandAugment(num_layers=2, magnitude=0, ops=("Rotate", "TranslateX"))
    dataset = tf.data.Dataset.from_tensors(IMAGE).repeat(4).map(
        lambda image: randaugment(image, SEED))
    iterator = iter(dataset)
    np.testing.assert_array_equal(next(iterator).numpy(), IMAGE)
    randaugment.magnitude.assign(10.0)
    changed = [next(iterator).numpy() for _ in range(3)]
    assert (changed[-1] != IMAGE).mean() > 0.2


def test_autoaugment_runs_a_policy_in_tf_data():
    autoaugment = augment.AutoAugment()
    assert len(augment.POLICY_V0) == 25
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


def _batch():
    images = np.stack([np.full((16, 16, 3), 10.0 * (i + 1), np.float32) for i in range(8)])
    return tf.constant(images), tf.constant(np.arange(8) % 4)


def test_mixup_mixes_each_example_with_its_own_lambda():
    images, labels = _batch()
    mixed, soft = augment.Mixing(4, mixup_alpha=0.4)(images, labels, SEED)
    soft = soft.numpy()
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    own = soft[np.arange(8), labels.numpy()]
    assert (own >= 0.5 - 1e-6).all() and len(np.unique(own.round(4))) > 4  # max(l, 1-l), per example
    partner = images.numpy()[::-1]
    expected = own[:, None, None, None] * images.numpy() + (1 - own[:, None, None, None]) * partner
    # Examples i and 7-i share classes only when labels match; here they never do (0..3, 3..0).
    np.testing.assert_allclose(mixed.numpy(), expected, rtol=1e-5)


def test_cutmix_label_weight_is_the_share_of_own_pixels():
    images, labels = _batch()
    mixed, soft = augment.Mixing(4, cutmix_alpha=1.0)(images, labels, SEED)
    mixed, soft = mixed.numpy(), soft.numpy()
    own_share = (mixed == images.numpy()).all(axis=-1).mean(axis=(1, 2))
    np.testing.assert_allclose(soft[np.arange(8), labels.numpy()], own_share, atol=1e-6)
    assert own_share.min() < 1.0


def test_zero_alphas_leave_the_batch_alone_and_alphas_are_variables():
    images, labels = _batch()
    mixing = augment.Mixing(4)
    mixed, soft = mixing(images, labels, SEED)
    np.testing.assert_array_equal(mixed, images)
    np.testing.assert_array_equal(soft, tf.one_hot(labels, 4))
    mixing.mixup_alpha.assign(0.5)
    assert not np.array_equal(mixing(images, labels, SEED)[0], images)


def test_both_alphas_give_both_kinds_of_mixing():
    images, labels = _batch()
    mixed, _ = augment.Mixing(4, mixup_alpha=1.0, cutmix_alpha=1.0)(
        tf.tile(images, [4, 1, 1, 1]), tf.tile(labels, [4]), SEED)
    mixed = mixed.numpy()
    flat_values = [len(np.unique(m)) for m in mixed]
    assert 1 in flat_values or min(flat_values) <= 2  # mixup: one blended value per image
    assert max(flat_values) == 2  # cutmix: own and partner pixels
