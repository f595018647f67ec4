"""Layers: initializers, squeeze-excite, stochastic depth, blocks (docs/reference.md §2-3)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.models import blocks, layers


def test_conv_initializer_is_normal_with_fan_out_std():
    kernel = layers.ConvKernelInitializer()((3, 3, 64, 128)).numpy()
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / (3 * 3 * 128)), rel=0.02)
    assert abs(kernel.mean()) < 1e-3
    # Depthwise kernels (k, k, channels, 1): fan_out = k * k, as in the official code.
    depthwise = layers.ConvKernelInitializer()((5, 5, 4096, 1)).numpy()
    assert depthwise.std() == pytest.approx(np.sqrt(2.0 / 25), rel=0.02)


def test_dense_initializer_is_uniform_one_over_sqrt_units():
    kernel = layers.DenseKernelInitializer()((1280, 1000)).numpy()
    bound = 1 / np.sqrt(1000)
    assert kernel.max() <= bound and kernel.min() >= -bound
    assert kernel.max() > 0.99 * bound
    assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)


def test_initializers_differ_per_call_and_follow_seeds():
    init = layers.ConvKernelInitializer()
    assert not np.allclose(init((3, 3, 8, 8)), init((3, 3, 8, 8)))
    seeded = layers.ConvKernelInitializer(seed=3)
    assert np.allclose(seeded((3, 3, 8, 8)), layers.ConvKernelInitializer(seed=3)((3, 3, 8, 8)))


def test_squeeze_excite_gates_each_channel_by_its_mean():
    se = layers.SqueezeExcite(filters=6, reduced_filters=2, name="se")
    x = np.random.RandomState(0).normal(size=(2, 5, 5, 6)).astype("float32")
    out = se(x).numpy()
    pooled = x.mean(axis=(1, 2))
    reduce_kernel, reduce_bias = [w.numpy() for w in se.reduce.weights]
    expand_kernel, expand_bias = [w.numpy() for w in se.expand.weights]
    hidden = pooled @ reduce_kernel[0, 0] + reduce_bias
    hidden = hidden / (1 + np.exp(-hidden))  # swish
    gate = 1 / (1 + np.exp(-(hidden @ expand_kernel[0, 0] + expand_bias)))
    np.testing.assert_allclose(out, x * gate[:, None, None, :], rtol=1e-5, atol=1e-6)


def test_se_ratio_is_relative_to_block_input_filters():
    block = blocks.MBConv(input_filters=16, output_filters=24, expand_ratio=6, se_ratio=0.25,
                          strides=2, name="block2a")
    block.build((None, 32, 32, 16))
    assert block.se.reduce.filters == 4  # 16 * 0.25, not 96 * 0.25
    assert block.se.expand.filters == 96


def test_stochastic_depth_drops_whole_examples_and_keeps_the_mean():
    drop = layers.StochasticDepth(0.8, seed=1)
    x = tf.ones((4000, 2, 2, 3))
    out = drop(x, training=True).numpy()
    per_example = out.reshape(4000, -1)
    assert set(np.unique(per_example.round(4))) == {0.0, 1.25}
    assert (per_example == per_example[:, :1]).all()  # the whole example or nothing
    assert (per_example[:, 0] == 0).mean() == pytest.approx(0.2, abs=0.02)
    assert out.mean() == pytest.approx(1.0, abs=0.03)
    np.testing.assert_array_equal(drop(x, training=False), x)


def test_stochastic_depth_inside_tf_data():
    drop = layers.StochasticDepth(0.5, seed=2)
    dataset = tf.data.Dataset.from_tensors(tf.ones((64, 1, 1, 1))).map(
        lambda x: drop(x, training=True))
    values = next(iter(dataset)).numpy().ravel()
    assert set(values) <= {0.0, 2.0} and 0 < (values == 0).sum() < 64


@pytest.mark.parametrize("block_class, expand, has_expand_conv", [
    (blocks.MBConv, 1, False), (blocks.MBConv, 6, True),
    (blocks.FusedMBConv, 1, False), (blocks.FusedMBConv, 4, True)])
def test_block_structure_and_residual(block_class, expand, has_expand_conv):
    block = block_class(input_filters=8, output_filters=8, expand_ratio=expand,
                        se_ratio=0.25 if block_class is blocks.MBConv else 0.0,
                        survival_prob=0.9, name="block1b")
    x = np.random.RandomState(0).normal(size=(2, 8, 8, 8)).astype("float32")
    out = block(x, training=False)
    assert out.shape == (2, 8, 8, 8)
    assert (block.expand_conv is not None) == has_expand_conv
    assert block.has_residual and block.drop.survival_prob == 0.9
    # The residual adds the input back: zeroing the projection BN output leaves the input.
    block.project_bn.gamma.assign(tf.zeros_like(block.project_bn.gamma))
    block.project_bn.beta.assign(tf.zeros_like(block.project_bn.beta))
    np.testing.assert_allclose(block(x, training=False), x, atol=1e-6)


def test_fused_block_with_expansion_one_is_a_single_strided_conv():
    block = blocks.FusedMBConv(input_filters=8, output_filters=16, kernel_size=3, strides=2,
                               expand_ratio=1, name="block1a")
    out = block(np.zeros((1, 9, 9, 8), "float32"))
    assert out.shape == (1, 5, 5, 16)
    assert block.project_conv.kernel.shape == (3, 3, 8, 16) and block.project_conv.strides == (2, 2)
    assert not block.has_residual and block.drop is None


def test_strided_or_widening_blocks_have_no_shortcut():
    for kwargs in (dict(input_filters=8, output_filters=8, strides=2),
                   dict(input_filters=8, output_filters=16),
                   dict(input_filters=8, output_filters=8, id_skip=False)):
        assert not blocks.MBConv(**kwargs, name="b").has_residual


def test_block_config_round_trip():
    block = blocks.MBConv(input_filters=16, output_filters=24, kernel_size=5, strides=2,
                          expand_ratio=6, se_ratio=0.25, survival_prob=0.9, bn_momentum=0.9,
                          name="block3a")
    clone = blocks.MBConv.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    serialized = keras.saving.serialize_keras_object(block)
    assert keras.saving.deserialize_keras_object(serialized).name == "block3a"


def test_bad_stride_is_a_clear_error():
    with pytest.raises(ValueError, match="strides must be 1 or 2, got 3"):
        blocks.MBConv(input_filters=8, output_filters=8, strides=3, name="block9a")


def test_fast_swish_matches_silu_and_its_gradient():
    x = tf.constant(np.linspace(-8, 8, 101, dtype="float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        fast, reference = layers.swish(x), tf.nn.silu(x)
    np.testing.assert_allclose(fast, reference, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(fast, x), tape.gradient(reference, x), atol=1e-6)
    assert layers.get_activation("silu") is layers.swish
    assert layers.get_activation("relu") is keras.activations.relu


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_batch_norm_matches_keras_batch_normalization(dtype):
    rng = np.random.RandomState(0)
    x = tf.constant(rng.normal(3.0, 2.0, (8, 5, 5, 4)), dtype)
    ours = layers.BatchNorm(momentum=0.9, epsilon=1e-3,
                            dtype=f"mixed_{dtype}" if dtype != "float32" else None)
    theirs = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.set_weights([rng.uniform(0.5, 1.5, 4), rng.uniform(-1, 1, 4),
                           np.zeros(4), np.ones(4)] if layer is ours else ours.get_weights())
    assert ours._fused(x, None)
    tolerance = 1e-5 if dtype == "float32" else 5e-2
    for training in (False, True):  # inference first: training updates the statistics
        np.testing.assert_allclose(tf.cast(ours(x, training=training), "float32"),
                                   theirs(tf.cast(x, "float32"), training=training),
                                   atol=tolerance, rtol=tolerance)
    np.testing.assert_allclose(ours.moving_mean, theirs.moving_mean,
                               rtol=1e-5 if dtype == "float32" else 1e-2)
    # Fused: unbiased batch variance in the running average (n = 8 * 5 * 5 = 200).
    batch_variance = tf.math.reduce_variance(tf.cast(x, "float32"), axis=(0, 1, 2)).numpy()
    np.testing.assert_allclose(ours.moving_variance, 0.9 + 0.1 * batch_variance * 200 / 199,
                               rtol=1e-5 if dtype == "float32" else 1e-2)
    assert ours.moving_variance.dtype == "float32"


def test_batch_norm_takes_the_portable_path_where_fusing_does_not_apply():
    synced = layers.BatchNorm(synchronized=True)
    flat = layers.BatchNorm()
    assert not synced._fused(tf.zeros((2, 3, 3, 4)), None)
    assert not flat._fused(tf.zeros((2, 4)), None)
    np.testing.assert_allclose(flat(tf.ones((2, 4)) * 3.0, training=False), 3.0 / np.sqrt(1 + 1e-3),
                               rtol=1e-6)


def two_replicas():
    """MirroredStrategy over the 2 logical CPUs, reducing without collective ops: collectives
    launched here would share instance keys with later strategies in this process."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.mark.parametrize("fused", [True, False])
def test_batch_norm_moving_statistics_are_averaged_across_replicas(fused):
    """Two replicas see different batches; both end with the mean of their updates (Keras 3's
    own BN would leave each replica with its own statistics)."""
    strategy = two_replicas()
    with strategy.scope():
        norm = layers.BatchNorm(momentum=0.5, epsilon=1e-3)
        norm.build((None, 2, 2, 3) if fused else (None, 3))
    shape = (4, 2, 2, 3) if fused else (4, 3)
    batches = [np.full(shape, 2.0, np.float32), np.full(shape, 6.0, np.float32)]
    batches[1][0] += 1.0  # some variance on the second replica

    @tf.function
    def step(dataset_inputs):
        def replica_fn(inputs):
            norm(inputs, training=True)
        strategy.run(replica_fn, args=(dataset_inputs,))

    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(batches[context.replica_id_in_sync_group]))
    step(values)
    means = [v.numpy() for v in strategy.experimental_local_results(norm.moving_mean.value)]
    variances = [v.numpy() for v in
                 strategy.experimental_local_results(norm.moving_variance.value)]
    # moving = 0.5 * initial + 0.5 * batch statistic, averaged over the replicas.
    batch_means = [b.reshape(-1, 3).mean(0) for b in batches]
    np.testing.assert_allclose(means[0], 0.5 * 0 + 0.5 * np.mean(batch_means, 0), rtol=1e-5)
    np.testing.assert_array_equal(means[0], means[1])
    np.testing.assert_array_equal(variances[0], variances[1])


@pytest.mark.parametrize("group_size", [1, 2])
def test_grouped_synchronized_batch_norm_normalizes_with_its_groups_statistics(group_size):
    """Two replicas, groups of 1 (each its own statistics) or 2 (both replicas' statistics),
    as the official code's num_shards_per_group."""
    strategy = two_replicas()
    with strategy.scope():
        norm = layers.BatchNorm(epsilon=0.0, center=False, scale=False, synchronized=True,
                                group_size=group_size)
        norm.build((None, 2))
    rng = np.random.RandomState(0)
    batches = [rng.normal(2.0, 1.0, (6, 2)).astype("float32"),
               rng.normal(6.0, 3.0, (6, 2)).astype("float32")]

    @tf.function
    def step(inputs):
        return strategy.run(lambda x: norm(x, training=True), args=(inputs,))

    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(batches[context.replica_id_in_sync_group]))
    outputs = [o.numpy() for o in strategy.experimental_local_results(step(values))]
    for replica, batch in enumerate(batches):
        group = batches[replica // group_size * group_size: (replica // group_size + 1)
                        * group_size]
        pooled = np.concatenate(group)
        expected = (batch - pooled.mean(0)) / pooled.std(0)
        np.testing.assert_allclose(outputs[replica], expected, rtol=1e-4, atol=1e-4)


def test_a_bn_group_size_that_does_not_divide_the_replicas_is_a_clear_error():
    strategy = two_replicas()
    with strategy.scope():
        norm = layers.BatchNorm(synchronized=True, group_size=3)
        norm.build((None, 2))
    with pytest.raises(ValueError, match="bn_group_size 3 does not divide the 2 replicas"):
        strategy.run(lambda: norm(tf.ones([4, 2]), training=True))


def test_bn_group_size_reaches_every_batch_norm_and_survives_a_keras_round_trip(tmp_path):
    import efficientnet_tf

    model = efficientnet_tf.create_model("efficientnetv2-test", num_classes=3, bn_group_size=2)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, layers.BatchNorm)]
    assert len(norms) > 10 and all(n.synchronized and n.group_size == 2 for n in norms)
    model.save(tmp_path / "grouped.keras")
    loaded = keras.models.load_model(tmp_path / "grouped.keras")
    norms = [layer for layer in loaded._flatten_layers() if isinstance(layer, layers.BatchNorm)]
    assert all(n.group_size == 2 for n in norms)


def _masks_per_replica(layer_factory, seed):
    """The training-mode outputs of a dropout-like layer on ones, one array per replica, for two
    consecutive steps under MirroredStrategy over the 2 logical CPUs."""
    keras.utils.set_random_seed(seed)
    strategy = two_replicas()
    with strategy.scope():
        layer = layer_factory()
        layer.build((None, 1, 1, 64))

    @tf.function
    def step():
        return strategy.run(lambda: layer(tf.ones((64, 1, 1, 64)), training=True))

    return [[v.numpy() for v in strategy.experimental_local_results(step())] for _ in range(2)]


@pytest.mark.parametrize("layer_factory", [
    lambda: layers.StochasticDepth(0.5, name="drop"),
    lambda: layers.Dropout(0.5, name="top_dropout")], ids=["stochastic_depth", "dropout"])
def test_replicas_draw_different_masks_and_a_seed_repeats_them(layer_factory):
    first_run = _masks_per_replica(layer_factory, seed=7)
    for replica_0, replica_1 in first_run:
        assert 0.3 < (replica_0 == 0).mean() < 0.7
        assert (replica_0 != replica_1).mean() > 0.3  # independent masks differ in ~half
    assert (first_run[0][0] != first_run[1][0]).mean() > 0.3  # and change from step to step
    second_run = _masks_per_replica(layer_factory, seed=7)
    for step_a, step_b in zip(first_run, second_run):
        for replica_a, replica_b in zip(step_a, step_b):
            np.testing.assert_array_equal(replica_a, replica_b)
