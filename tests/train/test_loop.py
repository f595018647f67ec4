"""The step functions and the run settings around them, against independent computations:
evaluation's top-1/top-5, mixed_float16 with loss scaling, weight decay, clipping, label
smoothing, dropout raised after building, evaluation without EMA, seeds, TF_CONFIG."""

import json
import os
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.models import layers
from efficientnet_tf.tasks.classification import inputs as inputs_lib
from efficientnet_tf.tasks.classification import task as classification
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import distribute, loop, optim, report, trainer

from imagedata import train_settings
from trainutil import SoftmaxTask, tiny_config


@pytest.fixture(scope="module")
def seven_classes(tmp_path_factory):
    """7 classes x 3 train and 3 eval images of random colours: 21 eval images, which batches
    of 8 do not divide (3 padding rows in the last batch)."""
    root = tmp_path_factory.mktemp("seven")
    rng = np.random.RandomState(0)
    for split in ("train", "eval"):
        for label in range(7):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(3):
                pixels = rng.randint(0, 256, (20, 24, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return str(root / "train"), str(root / "eval")


def build(config, workdir, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    run = trainer.resolve_run(config, strategy)
    return run, trainer.build_state(run, strategy, str(workdir))


def test_eval_top1_and_top5_equal_numpy_and_skip_the_padding(seven_classes, tmp_path):
    train_root, eval_root = seven_classes
    config = tiny_config(train_root, **{"data.eval_root": eval_root, "train.ema_decay": 0.0})
    run, state = build(config, tmp_path)
    metrics = trainer.evaluate(state)
    # Independently: the same eval batches, padding rows dropped, logits ranked in NumPy.
    logits, labels = [], []
    for images, batch_labels in inputs_lib.eval_dataset(
            run.source, run.task_settings.eval_transform, 8, 7):
        keep = batch_labels.numpy() >= 0
        logits.append(state.model(images, training=False).numpy()[keep])
        labels.append(batch_labels.numpy()[keep])
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    assert len(labels) == 21 and metrics["examples"] == 21
    ranks = np.argsort(-logits, axis=1)
    top1 = np.mean(ranks[:, 0] == labels)
    top5 = np.mean([label in row[:5] for label, row in zip(labels, ranks)])
    assert 0.0 < top5 < 1.0 and top1 < top5  # a random model: something to count
    assert metrics["top1"] == pytest.approx(top1, abs=1e-6)
    assert metrics["top5"] == pytest.approx(top5, abs=1e-6)
    shifted = logits - logits.max(axis=1, keepdims=True)
    cross_entropy = -(shifted[np.arange(21), labels] - np.log(np.exp(shifted).sum(axis=1)))
    assert metrics["loss"] == pytest.approx(cross_entropy.mean(), rel=1e-4)


def _sgd_updates(photo_folder, workdir, precision, batch, max_steps):
    """Trains on one fixed batch until a step changes the weights; returns (state, update of
    that step, loss scales before each step)."""
    config = tiny_config(photo_folder, **{"train.precision": precision, "train.ema_decay": 0.0,
                                          "model.survival_prob": 1.0, "model.dropout_rate": 0.0})
    config.optimizer.name = "sgd"
    config.optimizer.momentum = 0.0
    config.optimizer.lr_per_256 = 0.32  # 0.01 at batch 8
    strategy = tf.distribute.get_strategy()
    _, state = build(config, workdir, strategy)
    train_loop = state.steps.make_train_loop()
    iterator = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).repeat()))
    scales = []
    for _ in range(max_steps):
        if isinstance(state.optimizer, keras.optimizers.LossScaleOptimizer):
            scales.append(float(state.optimizer.dynamic_scale.numpy()))
        before = [v.numpy().copy() for v in state.model.trainable_variables]
        train_loop(iterator, tf.constant(1))
        update = [v.numpy() - b for v, b in zip(state.model.trainable_variables, before)]
        if any(np.any(u != 0) for u in update):
            break
    keras.mixed_precision.set_global_policy("float32")
    return state, update, scales


def test_a_mixed_float16_step_scales_the_loss_and_unscales_its_update(photo_folder, tmp_path):
    """Dynamic loss scaling through our step: the loss is multiplied by the scale (2^15 at
    first) before the gradient; a step whose float16 gradients overflow is skipped and halves
    the scale; the first step taken equals the float32 step from the same weights and batch,
    not 2^k times it."""
    config = tiny_config(photo_folder)
    run = trainer.resolve_run(config, tf.distribute.get_strategy())
    images, labels = next(iter(inputs_lib.train_dataset(run.source, train_settings(
        batch_size=8, shuffle_buffer=10_000))))
    batch = (images, labels)
    _, update32, _ = _sgd_updates(photo_folder, tmp_path / "f32", "float32", batch, 1)
    state, update16, scales = _sgd_updates(photo_folder, tmp_path / "f16", "mixed_float16",
                                           batch, 20)
    assert isinstance(state.optimizer, keras.optimizers.LossScaleOptimizer)
    assert all(v.dtype == "float32" for v in state.model.trainable_variables)
    assert scales[0] == 2.0 ** 15
    assert scales == [2.0 ** (15 - k) for k in range(len(scales))]  # halved at each skip
    norm32 = np.sqrt(sum(np.sum(u ** 2) for u in update32))
    norm16 = np.sqrt(sum(np.sum(u ** 2) for u in update16))
    assert norm32 > 0 and norm16 == pytest.approx(norm32, rel=0.05)


def test_decoupled_weight_decay_leaves_biases_and_batch_norm_alone():
    config = config_lib.base_config().optimizer
    with config.unlocked():
        config.name, config.momentum = "sgd", 0.0
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, bias_initializer="ones"),
                              keras.layers.BatchNormalization()])
    optimizer = optim.make_optimizer(config.name, 0.5, momentum=config.momentum,
                                     weight_decay=0.1, decoupled=True)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                    model.trainable_variables)
    for variable in model.trainable_variables:
        if variable.path.endswith("kernel"):  # w -= lr * wd * w
            np.testing.assert_allclose(variable.numpy(), before[variable.path] * (1 - 0.05),
                                       rtol=1e-6)
        else:  # bias, gamma, beta
            np.testing.assert_array_equal(variable.numpy(), before[variable.path])


def _tiny_steps(**loss_settings):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(model.trainable_variables)
    settings = loop.LossSettings(global_batch=2, **loss_settings)
    return model, loop.Steps(SoftmaxTask(), model, optimizer, tf.distribute.get_strategy(),
                             settings)


def test_gradient_clipping_bounds_the_global_norm():
    model, steps = _tiny_steps(grad_clip_norm=0.01)
    before = [v.numpy().copy() for v in model.trainable_variables]
    images = tf.constant([[10.0, -20.0, 30.0, 5.0], [1.0, 2.0, 3.0, 4.0]])
    steps.train_step(images, tf.one_hot([0, 2], 3))
    change = np.sqrt(sum(np.sum((v.numpy() - b) ** 2)
                         for v, b in zip(model.trainable_variables, before)))
    assert change == pytest.approx(0.01, rel=1e-4)  # lr 1 x the clipped global norm


CLIP_BATCH = (tf.constant([[10.0, -20.0, 30.0, 5.0], [-1.0, 2.0, 3.0, -40.0]]),
              tf.one_hot([0, 2], 3))


def _clipped_update(replicas, loss_scaled=False, mode="global", with_totals=False):
    """The update of one SGD(1.0) step clipped at norm 0.01, on one replica or two (each replica
    sees one of the two examples, whose gradients differ); with the loop's totals if asked."""
    strategy = (tf.distribute.get_strategy() if replicas == 1 else tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
        optimizer = keras.optimizers.SGD(1.0)
        if loss_scaled:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    steps = loop.Steps(SoftmaxTask(), model, optimizer, strategy,
                       loop.LossSettings(global_batch=2, grad_clip_norm=0.01, grad_clip_mode=mode))
    iterator = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(CLIP_BATCH).repeat()))
    before = [v.numpy().copy() for v in model.trainable_variables]
    totals = steps.make_train_loop()(iterator, tf.constant(1))
    update = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
    return (update, {k: float(v) for k, v in totals.items()}) if with_totals else update


def _gradients(examples):
    """The gradients of the examples' summed loss / 2 (the global batch) at the seed-0 weights
    _clipped_update starts from, and their global norm."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
    images, labels = (tf.gather(tensor, examples) for tensor in CLIP_BATCH)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(SoftmaxTask().loss(labels, model(images))) / 2
    gradients = tape.gradient(loss, model.trainable_variables)
    return gradients, float(tf.linalg.global_norm(gradients))


def _automl_clip(gradients):
    """google/automl's TF1 clipping (det_model_fn.py): each tensor to norm 0.01, then all."""
    return tf.clip_by_global_norm([tf.clip_by_norm(g, 0.01) for g in gradients], 0.01)[0]


@pytest.mark.parametrize("replicas", [1, 2])
def test_clipping_bounds_the_norm_of_the_whole_batch_gradient_on_any_replica_count(replicas):
    """Clipped per replica, each half would be cut to 0.01 on its own and their sum would
    move the weights by more than 0.01 (up to 0.02); clipped after the sum over replicas, the
    step is the one-device step."""
    update = _clipped_update(replicas)
    norm = np.sqrt(sum(np.sum(u ** 2) for u in update))
    assert norm == pytest.approx(0.01, rel=1e-4)
    if replicas == 2:
        for got, expected in zip(update, _clipped_update(1)):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("replicas", [1, 2])
def test_automl_clipping_clips_each_replicas_share_and_logs_the_norms(replicas):
    """grad_clip_mode="automl" is automl's TF1 TPU update: each replica clips the gradient of
    its examples' loss / 2 (per tensor, then globally) and the optimizer sums the clipped
    shares, so two replicas move the weights by more than the 0.01 that one device allows.
    The loop logs the norm the threshold was compared with and how often it clipped."""
    shares = [[0, 1]] if replicas == 1 else [[0], [1]]
    expected = [-sum(pieces) for pieces in zip(*(_automl_clip(_gradients(examples)[0])
                                                  for examples in shares))]
    update, totals = _clipped_update(replicas, mode="automl", with_totals=True)
    for got, want in zip(update, expected):  # (weights ~1: their float32 rounding ~1e-7)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-7)
    norm = np.sqrt(sum(np.sum(u ** 2) for u in update))
    assert norm == pytest.approx(0.01, rel=1e-4) if replicas == 1 else 0.012 < norm < 0.02
    share_norms = [_gradients(examples)[1] for examples in shares]
    assert totals["clip_checks"] == pytest.approx(1.0) and totals["clipped"] == 1.0
    assert totals["grad_norm"] == pytest.approx(np.mean(share_norms), rel=1e-5)
    # The global mode logs the norm of the whole batch's gradient, on any replica count.
    _, global_totals = _clipped_update(replicas, with_totals=True)
    assert global_totals["grad_norm"] == pytest.approx(_gradients([0, 1])[1], rel=1e-5)


def test_the_progress_line_and_summaries_show_the_norm_clipping_compared(tmp_path):
    progress = report.Progress(str(tmp_path), 10, 5, 2)
    progress.add({"loss": 4.0, "examples": 4.0, "grad_norm": 30.0, "clip_checks": 2.0,
                  "clipped": 1.0}, 2, 1.0)
    line = progress.emit(2, 0.1)
    assert line.endswith("grad norm 15 (clipped 50%)")
    assert (progress.last["grad_norm"], progress.last["clipped_share"]) == (15.0, 0.5)
    progress.add({"loss": 4.0, "examples": 4.0}, 2, 1.0)  # clipping off: nothing shown
    assert "grad norm" not in progress.emit(4, 0.1) and "grad_norm" not in progress.last


def test_an_overflowing_step_is_left_out_of_the_clipping_figures():
    """Under loss scaling a float16 overflow makes the norm inf; the optimizer skips that step,
    and the logged norm and clipped share leave it out instead of turning inf."""
    _, steps = _tiny_steps(grad_clip_norm=0.01)
    _, figures = steps._clip([tf.constant([np.inf, 1.0]), tf.constant([2.0])])
    assert {k: float(v) for k, v in figures.items()} == {"grad_norm": 0.0, "clip_checks": 0.0,
                                                          "clipped": 0.0}


def test_clipping_acts_on_the_unscaled_gradient_under_loss_scaling():
    """With a loss scale of 2^15 the gradient is 2^15 times larger until the optimizer divides
    it; clipping that at 0.01 would shrink the step to 0.01 / 2^15."""
    update = _clipped_update(1, loss_scaled=True)
    norm = np.sqrt(sum(np.sum(u ** 2) for u in update))
    assert norm == pytest.approx(0.01, rel=1e-4)


def test_label_smoothing_spreads_its_share_over_all_classes():
    logits = tf.constant([[2.0, 0.5, -1.0, 0.0]])
    labels = tf.one_hot([0], 4)
    got = float(classification.cross_entropy(labels, logits, label_smoothing=0.1)[0])
    target = np.array([0.9 + 0.025, 0.025, 0.025, 0.025])
    log_softmax = logits.numpy()[0] - np.log(np.exp(logits.numpy()[0]).sum())
    assert got == pytest.approx(-(target * log_softmax).sum(), rel=1e-6)


def test_a_dropout_layer_built_at_rate_zero_drops_once_raised():
    dropout = layers.Dropout(0.0, name="top_dropout")
    inputs = tf.ones((64, 100))
    np.testing.assert_array_equal(dropout(inputs, training=True), inputs)
    dropout.rate = 0.5
    dropped = (dropout(inputs, training=True).numpy() == 0).mean()
    assert dropped == pytest.approx(0.5, abs=0.05)
    np.testing.assert_array_equal(dropout(inputs, training=False), inputs)


def test_use_ema_false_evaluates_the_raw_weights(photo_folder, tmp_path):
    config = tiny_config(photo_folder, **{"train.steps": 6, "train.ema_decay": 0.9})
    workdir = str(tmp_path / "run")
    trainer.train_and_evaluate(config, workdir)
    strategy = tf.distribute.get_strategy()
    with_ema = trainer.evaluate_workdir(workdir, config)
    config.eval.use_ema = False
    raw = trainer.evaluate_workdir(workdir, config)
    run, state = build(config, tmp_path / "check", strategy)
    tf.train.Checkpoint(model=state.model).restore(
        tf.train.latest_checkpoint(workdir)).expect_partial()
    direct = state.steps.evaluate(strategy.distribute_datasets_from_function(
        lambda context: inputs_lib.eval_dataset(run.source, run.task_settings.eval_transform, 8,
                                              3, context)))
    assert raw["loss"] == pytest.approx(direct["loss"], rel=1e-5)
    assert raw["loss"] != pytest.approx(with_ema["loss"], rel=1e-3)


def test_an_unset_seed_is_drawn_recorded_and_reused_when_the_run_resumes(photo_folder,
                                                                         tmp_path):
    config = tiny_config(photo_folder, **{"train.steps": 2, "train.checkpoint_every_steps": 2})
    config.train.seed = None
    seeds = []
    for name in ("a", "b"):
        trainer.train_and_evaluate(config, str(tmp_path / name))
        saved = json.load(open(os.path.join(tmp_path, name, "config.json")))
        seeds.append(saved["resolved"]["seed"])
    assert seeds[0] != seeds[1]  # two runs, two seeds (a clash is a 1-in-2^31 chance)
    assert trainer.resolve_run(config, tf.distribute.get_strategy(),
                        str(tmp_path / "a")).seed == seeds[0]


def test_a_fixed_seed_fixes_the_initial_weights(photo_folder, tmp_path):
    config = tiny_config(photo_folder, **{"train.seed": 5})
    first = [v.numpy() for v in build(config, tmp_path / "1")[1].model.weights]
    keras.utils.set_random_seed(99)  # whatever the process did before
    second = [v.numpy() for v in build(config, tmp_path / "2")[1].model.weights]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("text, message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG has no cluster with workers"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     r"TF_CONFIG task .* is not one of the cluster's worker 0..1"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "is not one of the cluster's")])
def test_an_invalid_tf_config_is_one_clear_error(text, message, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", text)
    with pytest.raises(distribute.StrategyError, match=message):
        distribute.resolve()


def test_a_chief_task_is_the_chief_and_worker_zero_is_not():
    def strategy(task_type, task_id):
        fake = mock.create_autospec(tf.distribute.MultiWorkerMirroredStrategy, instance=True)
        fake.cluster_resolver.task_type, fake.cluster_resolver.task_id = task_type, task_id
        fake.cluster_resolver.cluster_spec.return_value.as_dict.return_value = {
            "chief": ["c:1"], "worker": ["w0:1", "w1:1"]}
        return fake

    assert distribute.is_chief(strategy("chief", 0))
    assert not distribute.is_chief(strategy("worker", 0))
    assert distribute.worker(strategy("chief", 0)) == (0, 3)
    assert distribute.worker(strategy("worker", 1)) == (2, 3)
    assert distribute.check_tf_config(
        '{"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "chief", '
        '"index": 0}}') == {"chief": ["c:1"], "worker": ["w:1"]}


@pytest.mark.parametrize("replicas", [1, 2])
def test_the_ema_update_inside_the_replica_step_follows_the_recurrence(replicas):
    """shadow_t = d_t * shadow_{t-1} + (1 - d_t) * w_t with d_t = min(d, (1 + t) / (10 + t)),
    t the step count after the update: the averages move once per step, in the replicated step
    itself, on one replica and on two (MirroredStrategy over the 2 logical CPUs)."""
    strategy = (tf.distribute.get_strategy() if replicas == 1 else tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")])
        optimizer = keras.optimizers.SGD(0.5)
        optimizer.build(model.trainable_variables)
        ema = optim.ExponentialMovingAverage(model, decay=0.6)
    steps = loop.Steps(SoftmaxTask(), model, optimizer, strategy,
                       loop.LossSettings(global_batch=2), ema)
    batch = (tf.constant([[1.0, -2.0, 3.0, 0.5], [0.1, 0.2, -0.3, 4.0]]), tf.one_hot([0, 2], 3))
    iterator = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch).repeat()))
    train_loop = steps.make_train_loop()
    expected = [v.numpy().copy() for v in model.weights]
    for t in range(1, 5):
        train_loop(iterator, tf.constant(1))
        decay = min(0.6, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * v.numpy() for e, v in zip(expected, model.weights)]
        for shadow, value in zip(ema.averages, expected):
            for local in strategy.experimental_local_results(shadow):
                np.testing.assert_allclose(local.numpy(), value, rtol=1e-6)
    assert int(optimizer.iterations.numpy()) == 4


def test_a_run_too_short_for_its_batch_norm_momentum_is_warned(photo_folder):
    """efficientnetv2-test's momentum 0.9 over 12 steps leaves 0.9^12 = 28% of the moving
    statistics' start (mean 0, variance 1); 0.5 leaves 0.02%; fine-tuning starts from trained
    statistics."""
    def plan(init_from=None, **settings):
        config = tiny_config(photo_folder, **settings)
        config.init_from = init_from
        return trainer.resolve_run(config, tf.distribute.get_strategy())

    warning = trainer.short_for_batch_norm(plan())
    assert warning.startswith("batch norm momentum 0.9 over 12 steps leaves 28.2% of the moving")
    assert "set model.bn_momentum=0.56 or lower" in warning  # 0.001 ** (1 / 12) = 0.562
    assert trainer.short_for_batch_norm(plan(**{"model.bn_momentum": 0.5})) is None
    assert trainer.short_for_batch_norm(plan(init_from="runs/x")) is None


@pytest.mark.parametrize("replicas", [1, 2])
def test_batch_norm_recalibration_averages_the_batch_statistics_of_fixed_weights(replicas):
    """PreciseBN (Steps.recalibrate_batch_norm): each batch norm's moving statistics become the
    mean of its batch statistics over the given batches (each replica's share, averaged over
    the replicas: the moving statistics are mean-aggregated), of the weights as they are; the
    momentum is as before, frozen layers keep theirs; the EMA takes the new statistics."""
    strategy = (tf.distribute.get_strategy() if replicas == 1 else tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    with strategy.scope():
        model = keras.Sequential([keras.Input((3, 3, 2)), layers.BatchNorm(momentum=0.9),
                                  keras.layers.Conv2D(2, 1, name="conv"),
                                  layers.BatchNorm(momentum=0.9, name="frozen")])
        model.get_layer("frozen").trainable = False
        ema = optim.ExponentialMovingAverage(model)
    rng = np.random.RandomState(0)
    images = (rng.normal(2.0, 3.0, (12, 3, 3, 2))).astype(np.float32)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((images, np.zeros(12, np.float32))).batch(4))
    steps = loop.Steps(SoftmaxTask(), model, None, strategy, loop.LossSettings(global_batch=4),
                       ema)
    assert steps.recalibrate_batch_norm(dataset, num_batches=2) == 2  # of the 3 batches
    shares = images[:8].reshape(2 * replicas, 4 // replicas * 9, 2)  # what each replica saw
    first = model.layers[0]
    np.testing.assert_allclose(first.moving_mean.numpy(), shares.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(),  # unbiased, as the fused kernel
                               shares.var(1, ddof=1).mean(0), rtol=1e-5)
    assert first.momentum == 0.9
    frozen = model.get_layer("frozen")
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(frozen.moving_variance.numpy(), [1.0, 1.0])
    ema.take_from_model([first.moving_mean])
    index = [id(v) for v in model.weights].index(id(first.moving_mean))
    np.testing.assert_allclose(ema.averages[index].numpy(), first.moving_mean.numpy())
    assert not np.allclose(ema.averages[index + 1].numpy(), first.moving_variance.numpy())
