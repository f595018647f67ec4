"""Mixup and cutmix as google/automl efficientnetv2 datasets.py applies them (docs/fidelity.md)."""

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.data import mixing

SEED = tf.constant([3, 4], tf.int64)


def batch(size=8, classes=8):
    """Image i is flat with value 10 * (i + 1); its label is class i (so partners never share)."""
    images = np.stack([np.full((16, 16, 3), 10.0 * (i + 1), np.float32) for i in range(size)])
    return tf.constant(images), tf.one_hot(np.arange(size) % classes, classes)


def test_mixup_blends_each_example_with_its_mirror_by_its_own_weight():
    images, labels = batch()
    mixed, soft = mixing.Mixing(mixup_alpha=0.4)(images, labels, SEED)
    own = soft.numpy()[np.arange(8), np.arange(8)]
    partner = soft.numpy()[np.arange(8), np.arange(8)[::-1]]
    np.testing.assert_allclose(own + partner, 1.0, rtol=1e-6)
    assert (own >= 0.5).all() and len(np.unique(own.round(5))) == 8  # max(l, 1-l), per example
    values = 10.0 * np.arange(1, 9)
    np.testing.assert_allclose(mixed.numpy()[:, 0, 0, 0], own * values + partner * values[::-1],
                               rtol=1e-5)
    assert all(len(np.unique(image)) == 1 for image in mixed.numpy())  # a blend, no box


def test_cutmix_pastes_the_mirrors_box_and_weighs_labels_by_the_batch_mean_area():
    images, labels = batch()
    mixed, soft = mixing.Mixing(cutmix_alpha=1.0)(images, labels, SEED)
    mixed, soft = mixed.numpy(), soft.numpy()
    values = 10.0 * np.arange(1, 9)
    pasted = mixed[..., 0] == values[::-1][:, None, None]  # pixels from the partner
    kept = mixed[..., 0] == values[:, None, None]
    assert (pasted | kept).all()
    # automl's cutmix: ONE label weight, the share of pasted pixels over the whole batch.
    share = pasted.mean()
    assert 0.0 < share < 1.0 and len(np.unique(pasted.mean(axis=(1, 2)).round(4))) > 2
    np.testing.assert_allclose(soft[np.arange(8), np.arange(8)], 1.0 - share, rtol=1e-5)
    np.testing.assert_allclose(soft[np.arange(8), np.arange(8)[::-1]], share, rtol=1e-5)
    for mask in pasted:  # each box is one rectangle
        rows, columns = np.nonzero(mask)
        if len(rows):
            assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(columns) + 1)


def test_with_both_the_first_half_gets_mixup_and_the_second_half_cutmix():
    images, labels = batch()
    mixed, soft = mixing.Mixing(mixup_alpha=1.0, cutmix_alpha=1.0)(images, labels, SEED)
    mixed, soft = mixed.numpy(), soft.numpy()
    values = 10.0 * np.arange(1, 9)
    # First half 0..3 mixed within itself (partners 3..0), second half 4..7 (partners 7..4).
    first, second = mixed[:4, ..., 0], mixed[4:, ..., 0]
    assert all(len(np.unique(image)) == 1 for image in first)
    lam = soft[np.arange(4), np.arange(4)]
    np.testing.assert_allclose(first[:, 0, 0], lam * values[:4] + (1 - lam) * values[:4][::-1],
                               rtol=1e-5)
    assert set(np.unique(second)) <= set(values[4:])
    share = (second != values[4:, None, None]).mean()
    np.testing.assert_allclose(soft[np.arange(4, 8), np.arange(4, 8)], 1 - share, rtol=1e-5)
    assert soft[:4, 4:].max() == 0.0 and soft[4:, :4].max() == 0.0  # halves stay apart


def test_zero_alphas_leave_the_batch_alone_and_negative_ones_are_errors():
    images, labels = batch()
    mix = mixing.Mixing()
    assert not mix.active
    mixed, soft = mix(images, labels, SEED)
    np.testing.assert_array_equal(mixed, images)
    np.testing.assert_array_equal(soft, labels)
    with pytest.raises(ValueError, match="mixup_alpha must be >= 0, got -0.1"):
        mixing.Mixing(mixup_alpha=-0.1)


def test_beta_samples_have_the_beta_mean_and_variance():
    samples = mixing.beta([20000], 0.5, SEED).numpy()
    assert samples.mean() == pytest.approx(0.5, abs=0.01)
    assert samples.var() == pytest.approx(0.25 / 2.0, abs=0.01)  # a^2 / ((2a)^2 (2a + 1))
