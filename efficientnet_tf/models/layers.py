"""Squeeze-excite, stochastic depth, batch norm and the official initializers (V1 paper §4).

Squeeze-excite: Hu et al. 2018; stochastic depth: Huang et al. 2016.

Keras layers and ops, so the layers also run under the JAX backend; on the TensorFlow backend
(tf.distribute, TPUs) a few take faster or replica-aware TensorFlow paths.
"""

import math
import random

import keras
import tensorflow as tf
from keras import ops

_PACKAGE = "efficientnet_tf"


def _tensorflow_backend():
    return keras.backend.backend() == "tensorflow"


def _tf_swish(x):
    @tf.custom_gradient
    def swish_with_saved_sigmoid(x):
        sigmoid = tf.sigmoid(x)
        y = x * sigmoid

        def gradient(upstream):
            # d(x * s)/dx = s + x * s * (1 - s) = s + y - y * s: 4 passes over the tensor where
            # tf.nn.silu's gradient recomputes the sigmoid and takes 6.
            return upstream * (sigmoid + y - y * sigmoid)

        return y, gradient

    return swish_with_saved_sigmoid(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def swish(x):
    """x * sigmoid(x). On TensorFlow its gradient reuses the forward sigmoid (faster on CPU)."""
    if _tensorflow_backend():
        return _tf_swish(x)
    return ops.silu(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
def inference_swish(x):
    """x * sigmoid(x) without a custom gradient: for serving graphs, where the runtime may fuse
    the two ops into the preceding convolution."""
    return x * ops.sigmoid(x)


def get_activation(name):
    """The activation function called `name`; 'swish'/'silu' give the fast swish above and
    'inference_swish' the serving form."""
    if name in ("swish", "silu"):
        return swish
    if name == "inference_swish":
        return inference_swish
    return keras.activations.get(name)


def group_moments(inputs, axes, group_size):
    """Batch mean and variance over groups of `group_size` consecutive replicas.

    Each replica's sums (x, x squared, count) are all-gathered and the rows of its group added:
    the official code's grouped cross-replica BN, on any tf.distribute strategy.
    """
    x = tf.cast(inputs, tf.float32)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
    channels = x.shape[-1]
    stats = tf.concat([tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes), [count]], 0)
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas > 1:
        if replicas % group_size:
            raise ValueError(f"bn_group_size {group_size} does not divide the {replicas} "
                             f"replicas; use a divisor of {replicas}")
        gathered = context.all_gather(stats[None], axis=0)  # [replicas, 2 * channels + 1]
        first = (tf.cast(context.replica_id_in_sync_group, tf.int32) // group_size) * group_size
        stats = tf.reduce_sum(tf.slice(gathered, tf.stack([first, 0]), [group_size, -1]), 0)
    mean = stats[:channels] / stats[-1]
    variance = tf.maximum(stats[channels: 2 * channels] / stats[-1] - tf.square(mean), 0.0)
    return mean, variance


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BatchNorm(keras.layers.BatchNormalization):
    """keras BatchNormalization with TensorFlow's fused kernel where it applies.

    On the TensorFlow backend, for 4-D channels-last inputs (no mask, renorm or synchronization),
    one FusedBatchNormV3 and its gradient kernel replace about ten elementwise passes, and
    bfloat16/float16 inputs are not upcast to float32. Other cases take Keras's portable path.
    The moving variance then follows the unbiased batch variance, as TF1 and the official code
    did; Keras's own path uses the biased one (a factor n/(n-1), n = batch * height * width).

    Unsynchronized, the moving statistics are mean-aggregated across replicas, as tf.keras 2 did:
    Keras 3 creates them with aggregation "none", and under Mirrored/MultiWorkerMirrored/TPU
    strategies each replica then keeps its own statistics, so workers end a run with different
    models.
    """

    def __init__(self, *args, group_size=0, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_size = int(group_size or 0)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}

    def _moments(self, inputs, mask):
        if self.synchronized and self.group_size and mask is None and _tensorflow_backend():
            return group_moments(inputs, self._reduction_axes, self.group_size)
        return super()._moments(inputs, mask)

    def add_weight(self, *args, name=None, aggregation="none", **kwargs):
        # Synchronized BN updates every replica with the same (all-reduced) statistics already;
        # averaging them again would add a merge_call beside its collectives, which
        # MirroredStrategy's replica threads can order differently (an aborted collective).
        # With bn_group_size each group keeps its own, as on the official code's TPU runs.
        if name in ("moving_mean", "moving_variance") and not self.synchronized:
            aggregation = "mean"
        return super().add_weight(*args, name=name, aggregation=aggregation, **kwargs)

    def _fused(self, inputs, mask):
        return (_tensorflow_backend() and mask is None and not self.synchronized
                and not getattr(self, "renorm", False) and self.center and self.scale
                and len(inputs.shape) == 4 and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, is_training=True,
                exponential_avg_factor=1.0 - self.momentum)
            self.moving_mean.assign(mean)
            self.moving_variance.assign(variance)
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, self.gamma, self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, is_training=False)
        return ops.cast(outputs, self.compute_dtype)


def _draw_seed(seed):
    """`seed`, or one drawn from Python's generator, which keras.utils.set_random_seed resets
    in every Keras 3 (Keras before 3.9 does not reset its own global seed generator, whose
    integer state variable Keras 3.7 cannot even create under a distribution strategy)."""
    return seed if seed is not None else random.randint(0, 2 ** 31 - 1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConvKernelInitializer(keras.initializers.Initializer):
    """normal(0, sqrt(2 / fan_out)) with fan_out = kh * kw * out, as the official conv init.

    For a depthwise kernel (kh, kw, channels, 1) that is kh * kw, as in the official code.
    """

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel_height, kernel_width, _, out_filters = shape
        stddev = math.sqrt(2.0 / (kernel_height * kernel_width * out_filters))
        return keras.random.normal(shape, stddev=stddev, dtype=dtype, seed=_draw_seed(self.seed))

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DenseKernelInitializer(keras.initializers.Initializer):
    """uniform(-1/sqrt(units), 1/sqrt(units)) for a (inputs, units) kernel (official dense init)."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        limit = 1.0 / math.sqrt(shape[1])
        return keras.random.uniform(shape, -limit, limit, dtype=dtype, seed=_draw_seed(self.seed))

    def get_config(self):
        return {"seed": self.seed}


def replica_seed(seed_generator):
    """The generator's next seed with this replica's id folded in (TensorFlow backend).

    A SeedGenerator's state is one mirrored variable, so without the fold every replica of a
    Mirrored, MultiWorkerMirrored or TPU strategy would draw the same dropout and
    stochastic-depth masks. The id is the replica's index in the whole sync group (global across
    workers and hosts), so a run with a fixed seed draws the same masks every time.
    """
    seed = tf.cast(seed_generator.next(), tf.int64)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.random.experimental.stateless_fold_in(seed, replica)


def replica_uniform(shape, seed_generator, dtype):
    """uniform [0, 1) noise that differs between replicas (see replica_seed)."""
    if not _tensorflow_backend():
        return keras.random.uniform(shape, seed=seed_generator, dtype=dtype)
    return tf.random.stateless_uniform(shape, replica_seed(seed_generator), dtype=dtype)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StochasticDepth(keras.layers.Layer):
    """Drops the whole residual branch of an example with probability 1 - survival_prob.

    Kept branches are scaled by 1 / survival_prob so inference needs no rescaling.
    """

    def __init__(self, survival_prob, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < survival_prob <= 1.0:
            raise ValueError(f"survival_prob must be in (0, 1], got {survival_prob!r}")
        self.survival_prob = float(survival_prob)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if survival_prob < 1.0 else None

    def call(self, inputs, training=None):
        if not training or self.seed_generator is None:
            return inputs
        batch = ops.shape(inputs)[0]
        noise = replica_uniform((batch, 1, 1, 1), self.seed_generator, inputs.dtype)
        keep = ops.floor(self.survival_prob + noise)
        return inputs * keep / ops.cast(self.survival_prob, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "survival_prob": self.survival_prob, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Dropout(keras.layers.Dropout):
    """keras Dropout that may be given a rate above 0 after it was built with 0.

    Progressive learning changes the classifier's rate stage by stage; keras Dropout only owns a
    seed generator when built with a positive rate, so this one always does.
    """

    def __init__(self, rate, **kwargs):
        # Keras creates the generator only for a positive rate, and locks the layer's state at
        # the end of __init__: construct with a positive rate, then set the real one.
        super().__init__(rate if rate > 0 else 0.5, **kwargs)
        self.rate = rate

    def call(self, inputs, training=False):
        if not training or self.rate <= 0:
            return inputs
        if not _tensorflow_backend():
            return super().call(inputs, training=training)
        noise_shape = self.noise_shape
        if noise_shape is not None:
            noise_shape = [tf.shape(inputs)[i] if dim is None else dim
                           for i, dim in enumerate(noise_shape)]
        return tf.nn.experimental.stateless_dropout(
            inputs, rate=self.rate, noise_shape=noise_shape,
            seed=replica_seed(self.seed_generator))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SqueezeExcite(keras.layers.Layer):
    """Channel gating: global mean -> 1x1 reduce + activation -> 1x1 expand -> sigmoid -> scale.

    `reduced_filters` is max(1, int(block input filters * se_ratio)): the ratio is relative to the
    block's input, not to its expanded width (official code, docs/reference.md §2).
    """

    def __init__(self, filters, reduced_filters, activation="swish", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.reduced_filters = reduced_filters
        self.activation = activation
        self.reduce = keras.layers.Conv2D(
            reduced_filters, 1, activation=get_activation(activation), use_bias=True,
            kernel_initializer=ConvKernelInitializer(), name=f"{self.name}_reduce",
            dtype=self.dtype_policy)
        self.expand = keras.layers.Conv2D(
            filters, 1, activation="sigmoid", use_bias=True,
            kernel_initializer=ConvKernelInitializer(), name=f"{self.name}_expand",
            dtype=self.dtype_policy)

    def build(self, input_shape):
        pooled_shape = (input_shape[0], 1, 1, input_shape[-1])
        self.reduce.build(pooled_shape)
        self.expand.build(self.reduce.compute_output_shape(pooled_shape))

    def call(self, inputs):
        gate = ops.mean(inputs, axis=(1, 2), keepdims=True)
        gate = self.expand(self.reduce(gate))
        return inputs * gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "reduced_filters": self.reduced_filters, "activation": self.activation}
