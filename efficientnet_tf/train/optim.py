"""Learning-rate schedules, optimizers and the weight EMA of the official recipes.

Numbers: docs/reference.md §5.

RMSProp(decay 0.9, momentum 0.9, epsilon 1e-3) with its mean-square slot started at ones as TF1's
RMSPropOptimizer did; lr = base lr x global batch / 256, staircase decay x0.97 every 2.4 epochs
counted from step 0 (or cosine, or constant) under a linear warmup; EMA of weights and
batch-norm statistics with decay
min(d, (1 + t) / (10 + t)).
"""

import math

import keras
import tensorflow as tf

SCHEDULES = ("exponential", "cosine", "constant")
OPTIMIZERS = ("rmsprop", "sgd", "adamw")


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A decay counted from step 0, replaced by a linear ramp from 0 during the first
    `warmup_steps`, as both official codes (tensorflow/tpu utils.build_learning_rate, google/automl
    efficientnetv2 utils.WarmupLearningRateSchedule):

    exponential: peak * decay_rate ** floor(step / decay_steps) (staircase);
    cosine: from peak at step 0 to `minimum` at `total_steps`; constant: peak.
    Never below `minimum`. The warmup does not delay the decay: at the end of a 5-epoch warmup
    the exponential schedule is already at 0.97 ** 2 of the peak.
    """

    def __init__(self, peak, total_steps, warmup_steps=0, kind="exponential", decay_rate=0.97,
                 decay_steps=1, minimum=0.0):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {kind!r}; use one of {SCHEDULES}")
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be > 0, got {decay_steps!r}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.decay_rate = float(decay_rate)
        self.decay_steps = float(decay_steps)
        self.minimum = float(minimum)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup_steps, tf.float32)
        if self.kind == "exponential":
            decayed = self.peak * self.decay_rate ** tf.floor(step / self.decay_steps)
        elif self.kind == "cosine":
            progress = tf.minimum(step / max(self.total_steps, 1), 1.0)
            decayed = self.minimum + 0.5 * (self.peak - self.minimum) * (
                1.0 + tf.cos(math.pi * progress))
        else:
            decayed = tf.constant(self.peak)
        rate = tf.where(step < warmup, self.peak * step / tf.maximum(warmup, 1.0), decayed)
        return tf.maximum(rate, self.minimum)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "kind": self.kind,
                "decay_rate": self.decay_rate, "decay_steps": self.decay_steps,
                "minimum": self.minimum}


def schedule_from_run(settings, total_steps):
    """The WarmupSchedule of a Run's resolved optimization settings (train/run.Optimization)."""
    return WarmupSchedule(
        peak=settings.peak_learning_rate, total_steps=total_steps,
        warmup_steps=settings.warmup_steps, kind=settings.schedule,
        decay_rate=settings.decay_rate, decay_steps=settings.decay_steps,
        minimum=settings.min_learning_rate)


@keras.saving.register_keras_serializable(package="efficientnet_tf")
class TF1RMSprop(keras.optimizers.RMSprop):
    """keras RMSprop with the mean-square slot started at ones, as TF1's RMSPropOptimizer.

    With zeros (Keras), the first steps divide by sqrt(epsilon) and take huge strides; the
    official recipes were tuned with ones. The update itself is the same:
    ms = rho ms + (1 - rho) g^2; mom = momentum mom + lr g / sqrt(ms + eps); w -= mom.
    """

    def build(self, var_list):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)

        def slots(name, initializer="zeros"):
            # add_variable_from_reference: in every Keras 3 (add_optimizer_variables is 3.9+).
            return [self.add_variable_from_reference(variable, name, initializer=initializer)
                    for variable in var_list]

        self._velocities = slots("velocity", initializer="ones")
        self._momentums = slots("momentum") if self.momentum > 0 else []
        self._average_gradients = slots("average_gradient") if self.centered else []


# What weight decay leaves alone, by variable name (config train.weight_decay_exclude):
# google/automl efficientnetv2 hparams weight_decay_exclude '.*(bias|gamma|beta).*': biases and
# BN scale/offset. tensorflow/tpu efficientnet main.py excludes only 'batch_normalization'
# variables (BN gamma/beta): the V1 recipe decays the SE and classifier biases too.
NO_DECAY = ("bias", "gamma", "beta")
V1_NO_DECAY = ("gamma", "beta")


def decays(variable, exclude=NO_DECAY):
    """Whether weight decay applies to `variable`: not when its name holds one of `exclude`."""
    name = variable.path if hasattr(variable, "path") else variable.name
    return not any(part in name.split("/")[-1] for part in exclude)


def make_optimizer(name, learning_rate, momentum=0.9, rmsprop_decay=0.9, epsilon=1e-3,
                   nesterov=False, weight_decay=0.0, decoupled=False, exclude=NO_DECAY):
    """rmsprop (TF1), sgd or adamw; decoupled weight decay if asked (adamw: always), on the
    variables whose names hold none of `exclude`."""
    decay = weight_decay if decoupled else None
    if name == "rmsprop":
        optimizer = TF1RMSprop(learning_rate, rho=rmsprop_decay, momentum=momentum,
                               epsilon=epsilon, weight_decay=decay)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov,
                                         weight_decay=decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay,
                                           epsilon=epsilon)
    else:
        raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")
    if optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(exclude))
    return optimizer


def optimizer_from_run(settings, learning_rate):
    """The optimizer of a Run's resolved optimization settings (train/run.Optimization)."""
    return make_optimizer(settings.name, learning_rate, momentum=settings.momentum,
                          rmsprop_decay=settings.rmsprop_decay, epsilon=settings.epsilon,
                          nesterov=settings.nesterov, weight_decay=settings.weight_decay,
                          decoupled=settings.decoupled_weight_decay,
                          exclude=settings.weight_decay_exclude)


def l2_penalty(variables, weight_decay, exclude=NO_DECAY):
    """weight_decay * sum ||w||^2 / 2 over the decayed variables: the papers' weight decay as a
    loss term (tf.nn.l2_loss, as both official codes)."""
    kernels = [tf.cast(v, tf.float32) for v in variables if decays(v, exclude)]
    if not kernels or not weight_decay:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(kernel) for kernel in kernels])


class ExponentialMovingAverage(tf.Module):
    """Shadow copies of the model's weights AND batch-norm statistics, averaged every step.

    decay_t = min(decay, (1 + t) / (10 + t)), t the number of updates so far, as TF1's
    ExponentialMovingAverage(num_updates=global_step) in the official code. Evaluation and export
    swap the averages in (`swapped`).
    """

    def __init__(self, model, decay=0.9999):
        super().__init__(name="ema")
        self.decay = float(decay)
        self._model_variables = [v for v in model.weights]
        self.averages = [tf.Variable(tf.convert_to_tensor(v), trainable=False,
                                     name=f"ema_{i}") for i, v in enumerate(self._model_variables)]

    def decay_at(self, step):
        step = tf.cast(step, tf.float32)
        return tf.minimum(self.decay, (1.0 + step) / (10.0 + step))

    def update_in_replica(self, step):
        """The averaging step from inside the replicated train step, right after the optimizer's
        update: one merge into cross-replica context updates every average, so on TPU the
        averages stay in the compiled step (outside it they would run on the host and move
        every weight off the chips at every step)."""
        tf.distribute.get_replica_context().merge_call(
            lambda strategy: self.update(step, strategy))

    def update(self, step, strategy=None):
        """One averaging step (in cross-replica context, after the optimizer's update)."""
        decay = self.decay_at(step)
        strategy = strategy or tf.distribute.get_strategy()

        def average(shadow, value):
            return shadow.assign(decay * shadow + (1.0 - decay) * tf.cast(value, shadow.dtype))

        for shadow, variable in zip(self.averages, self._model_variables):
            value = variable.value if isinstance(variable, keras.Variable) else variable
            strategy.extended.update(shadow, average, args=(value,), group=False)

    def take_from_model(self, variables):
        """Sets the averages of `variables` (some of the model's) to their current values."""
        wanted = {id(variable) for variable in variables}
        for shadow, variable in zip(self.averages, self._model_variables):
            if id(variable) in wanted:
                shadow.assign(tf.cast(tf.convert_to_tensor(variable), shadow.dtype))

    def reset(self):
        """Restarts the averages from the model's current weights."""
        for shadow, variable in zip(self.averages, self._model_variables):
            shadow.assign(tf.convert_to_tensor(variable))

    def copy_to_model(self):
        for shadow, variable in zip(self.averages, self._model_variables):
            variable.assign(shadow)

    def swapped(self):
        """Context manager: the model holds the averages inside, its own weights after."""
        return _Swap(self)


class _Swap:
    def __init__(self, ema):
        self.ema = ema
        self.saved = None

    def __enter__(self):
        self.saved = [tf.identity(v) for v in self.ema._model_variables]
        self.ema.copy_to_model()
        return self.ema

    def __exit__(self, *exc_info):
        for value, variable in zip(self.saved, self.ema._model_variables):
            variable.assign(value)
        return False
