"""Schedules, TF1 RMSProp, weight decay and EMA against their formulas (docs/reference.md §5)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import optim
from efficientnet_tf.train import run as run_lib


def test_official_schedule_decays_from_step_zero_under_the_warmup():
    """tensorflow/tpu utils.build_learning_rate and automl's WarmupLearningRateSchedule:
    lr(s) = 0.256 * s / 1563 for s < 1563, else 0.256 * 0.97 ** floor(s / 750.67)."""
    config = config_lib.base_config()
    steps_per_epoch = 1_281_167 / 4096  # ImageNet at batch 4096: 312.78 steps per epoch
    schedule = optim.schedule_from_run(
        run_lib.optimization_settings(config, 4096, steps_per_epoch), 350 * 313)
    assert schedule.warmup_steps == 1563  # int(5 * 312.78)
    assert float(schedule(0)) == 0.0
    assert float(schedule(781)) == pytest.approx(0.256 * 781 / 1563, rel=1e-6)
    # At the end of the warmup the staircase has already taken two steps (1563 / 750.67 = 2.08).
    assert float(schedule(1563)) == pytest.approx(0.2408704, rel=1e-6)  # 0.256 * 0.97 ** 2
    assert float(schedule(50_000)) == pytest.approx(0.03429055, rel=1e-5)  # 0.256 * 0.97 ** 66
    assert float(schedule(750)) == pytest.approx(0.256 * 750 / 1563, rel=1e-6)  # still warming


def test_cosine_and_constant_schedules():
    # Cosine from step 0 over the whole run (official), under the warmup.
    cosine = optim.WarmupSchedule(1.0, total_steps=100, warmup_steps=10, kind="cosine",
                                  minimum=0.1)
    assert float(cosine(5)) == pytest.approx(0.5)
    assert float(cosine(10)) == pytest.approx(0.1 + 0.45 * (1 + np.cos(np.pi * 0.1)))
    assert float(cosine(50)) == pytest.approx(0.55)
    assert float(cosine(100)) == pytest.approx(0.1)
    assert float(cosine(500)) == pytest.approx(0.1)
    constant = optim.WarmupSchedule(0.001, total_steps=100, warmup_steps=4, kind="constant")
    assert [round(float(constant(s)), 6) for s in (0, 2, 4, 99)] == [0.0, 0.0005, 0.001, 0.001]
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        optim.WarmupSchedule(1.0, 10, kind="step")


def test_rmsprop_matches_the_tf1_update():
    """ms starts at 1; ms = rho ms + (1-rho) g^2; mom = m mom + lr g / sqrt(ms + eps); w -= mom."""
    config = config_lib.base_config().optimizer
    optimizer = optim.make_optimizer(config.name, 0.1, momentum=config.momentum,
                                     rmsprop_decay=config.rmsprop_decay, epsilon=config.epsilon)
    weights = keras.Variable(np.array([1.0, -2.0, 3.0], np.float32))
    target = np.array([0.5, 0.5, 0.5], np.float32)
    w, ms, mom = weights.numpy().astype(np.float64), np.ones(3), np.zeros(3)
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((weights - target) ** 2)
        gradient = tape.gradient(loss, weights)
        optimizer.apply([gradient], [weights])
        g = 2 * (w - target)
        ms = 0.9 * ms + 0.1 * g ** 2
        mom = 0.9 * mom + 0.1 * g / np.sqrt(ms + 1e-3)
        w = w - mom
        np.testing.assert_allclose(weights.numpy(), w, rtol=1e-5)


def test_keras_rmsprop_would_have_differed():
    # The reason for TF1RMSprop: with Keras's zero-initialised slot the first step is ~3x larger.
    ours = optim.TF1RMSprop(0.1, rho=0.9, momentum=0.0, epsilon=1e-3)
    theirs = keras.optimizers.RMSprop(0.1, rho=0.9, momentum=0.0, epsilon=1e-3)
    steps = []
    for optimizer in (ours, theirs):
        weight = keras.Variable(np.array([1.0], np.float32))
        optimizer.apply([tf.constant([1.0])], [weight])
        steps.append(1.0 - weight.numpy()[0])
    assert steps[0] == pytest.approx(0.1 / np.sqrt(1.0 + 1e-3), rel=1e-5)
    assert steps[1] == pytest.approx(0.1 / np.sqrt(0.1 + 1e-3), rel=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_other_optimizers(name):
    config = config_lib.base_config().optimizer
    with config.unlocked():
        config.name = name
    optimizer = optim.make_optimizer(config.name, 0.01, weight_decay=0.1, decoupled=True)
    assert optimizer.weight_decay == pytest.approx(0.1)
    with config.unlocked():
        config.name = "lamb"
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        optim.make_optimizer(config.name, 0.01)


def test_l2_weight_decay_covers_kernels_only():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.BatchNormalization()])
    kernel = model.layers[0].kernel.numpy()
    penalty = optim.l2_penalty(model.trainable_variables, 1e-5)
    assert float(penalty) == pytest.approx(1e-5 * (kernel ** 2).sum() / 2, rel=1e-5)
    assert [optim.decays(v) for v in model.trainable_variables] == [True, False, False, False]


def test_v1_weight_decay_takes_everything_but_batch_norm():
    """tensorflow/tpu main.py: every trainable variable whose name lacks 'batch_normalization',
    so the SE and classifier biases are decayed; automl V2 leaves them alone."""
    import efficientnet_tf

    model = efficientnet_tf.create_model("efficientnet-test", num_classes=3)
    v1 = {v.path.split("/")[-1] for v in model.trainable_variables
          if optim.decays(v, optim.V1_NO_DECAY)}
    v2 = {v.path.split("/")[-1] for v in model.trainable_variables if optim.decays(v)}
    assert v1 == {"kernel", "bias"} and v2 == {"kernel"}  # conv, depthwise and dense kernels
    biases = [v for v in model.trainable_variables if v.path.endswith("bias")]
    assert {b.path.split("/")[-2] for b in biases} >= {"predictions", "block1a_se_reduce"}
    penalty = optim.l2_penalty(model.trainable_variables, 0.5, optim.V1_NO_DECAY)
    expected = 0.5 * sum(float(np.sum(np.square(v.numpy())) / 2)
                         for v in model.trainable_variables
                         if not v.path.endswith(("gamma", "beta")))
    assert float(penalty) == pytest.approx(expected, rel=1e-5)


def test_ema_follows_the_formula_over_weights_and_bn_statistics():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2),
                              keras.layers.BatchNormalization()])
    ema = optim.ExponentialMovingAverage(model, decay=0.9999)
    assert len(ema.averages) == 6  # kernel, bias, gamma, beta, moving mean, moving variance
    expected = [v.numpy().astype(np.float64) for v in model.weights]
    rng = np.random.RandomState(0)
    for step in range(4):
        new = [rng.normal(size=v.shape).astype(np.float32) for v in model.weights]
        for variable, value in zip(model.weights, new):
            variable.assign(value)
        ema.update(step)
        decay = min(0.9999, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * n for e, n in zip(expected, new)]
    for average, value in zip(ema.averages, expected):
        np.testing.assert_allclose(average.numpy(), value, rtol=1e-5)
    with ema.swapped():
        np.testing.assert_allclose(model.weights[4].numpy(), expected[4], rtol=1e-5)
    np.testing.assert_allclose(model.weights[4].numpy(), new[4])
    ema.reset()
    np.testing.assert_allclose(ema.averages[0].numpy(), new[0])


def test_ema_decay_warms_up():
    ema = optim.ExponentialMovingAverage(keras.Sequential([keras.Input((1,)),
                                                           keras.layers.Dense(1)]), decay=0.9999)
    assert float(ema.decay_at(0)) == pytest.approx(0.1)
    assert float(ema.decay_at(90)) == pytest.approx(0.91)
    assert float(ema.decay_at(10 ** 7)) == pytest.approx(0.9999)
