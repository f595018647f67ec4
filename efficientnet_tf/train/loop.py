"""The step functions and the host loop, for any task: our own loop on tf.distribute.

The loss is the task's per-example loss averaged over the GLOBAL batch (each replica divides its
sum by the global batch size and the optimizer sums gradients over replicas), in float32
whatever the compute precision; L2 weight decay and gradient clipping (by the norm of the
global batch's gradient, over all replicas, or automl's per replica) are added here, for every
task. The replica step also updates the EMA, so on TPU the whole step is one compiled program.
`steps_per_loop` train steps run inside one tf.function (the TPU host loop); each stage of
progressive learning gets its own function, so each image size is traced (and on TPU compiled)
once. Evaluation runs the task's eval step on each batch, reduces its outputs across replicas as
the task says, and feeds them to the task's evaluator.
"""

import dataclasses

import keras
import tensorflow as tf

from efficientnet_tf.train import optim


@dataclasses.dataclass(frozen=True)
class LossSettings:
    global_batch: int
    l2_weight_decay: float = 0.0  # as a loss term; decoupled decay lives in the optimizer
    weight_decay_exclude: tuple = optim.NO_DECAY  # name parts of the variables not decayed
    grad_clip_norm: float = 0.0
    grad_clip_mode: str = "global"  # config.CLIP_MODES


# How clipping at grad_clip_norm acts on several replicas (grad_clip_mode). "global": the norm of
# the global batch's gradient, summed over the replicas (what one device with the whole batch would
# clip; the same update on any replica count). "automl": each replica's own share of it (the
# gradient of its examples' loss / the replica count), first each tensor, then their global norm,
# before the replicas are summed: google/automl efficientdet's TF1 TPU path (det_model_fn.py: per-
# tensor tf.clip_by_norm, then tf.clip_by_global_norm, inside tf.tpu.CrossShardOptimizer, which
# divides the loss by the shard count and sums the clipped gradients), so on N replicas the
# threshold on the mean gradient is about N times the norm. On one replica both see the same
# gradient (automl's per-tensor clip can turn it where it clips).
CLIP_METRICS = ("grad_norm", "clip_checks", "clipped")


class Steps:
    """The replica step functions of one task, model and optimizer, and their distributed loops."""

    def __init__(self, task, model, optimizer, strategy, loss_settings, ema=None,
                 jit_compile=False):
        self.task = task
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.loss = loss_settings
        self.ema = ema
        self.jit_compile = jit_compile
        self.traces = {"train": 0, "eval": 0}  # how often each kind of function was traced
        self._eval_step = None  # one function; it traces once per eval input shape

    def train_step(self, inputs, targets):
        """One replica's step; returns per-replica sums (loss, examples, the task's metrics)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            outputs = self.model(inputs, training=True)
            per_example = tf.cast(self.task.loss(targets, outputs), tf.float32)
            loss = tf.reduce_sum(per_example) / self.loss.global_batch
            if self.loss.l2_weight_decay:
                replicas = tf.distribute.get_replica_context().num_replicas_in_sync
                loss += optim.l2_penalty(variables, self.loss.l2_weight_decay,
                                         self.loss.weight_decay_exclude) / replicas
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        clipping = {}
        if self.loss.grad_clip_norm:
            gradients, clipping = self._clip(gradients)
        self.optimizer.apply(gradients, variables)
        if self.ema is not None:
            self.ema.update_in_replica(self.optimizer.iterations)
        examples = tf.cast(tf.shape(per_example)[0], tf.float32)
        return {"loss": tf.reduce_sum(per_example), "examples": examples, **clipping,
                **self.task.train_metrics(targets, outputs)}

    def _clip(self, gradients):
        """(The replica's gradients clipped as grad_clip_mode says (above), CLIP_METRICS
        as per-replica shares). Summed over the replicas and steps, grad_norm / clip_checks is
        the mean norm that was compared with the threshold (before clipping, unscaled) and
        clipped / clip_checks the share of the comparisons that clipped.

        "global": the gradients are summed over the replicas here, clipped, and divided by the
        replica count, because the optimizer sums them over the replicas again (one more
        all-reduce of the gradients per step, only when clipping is on). A loss-scaled gradient
        is clipped at the scaled norm, the same as clipping the unscaled gradient (a non-finite
        one stays non-finite, so the loss scale optimizer still skips that step).
        """
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        scale = tf.cast(self.optimizer.scale_loss(tf.constant(1.0)), tf.float32)
        limit = self.loss.grad_clip_norm * scale
        if self.loss.grad_clip_mode == "automl":
            norm = tf.linalg.global_norm(gradients)
            gradients = [None if gradient is None else tf.clip_by_norm(gradient, limit)
                         for gradient in gradients]
            gradients, _ = tf.clip_by_global_norm(gradients, limit)
        else:
            if replicas > 1:
                gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            gradients, norm = tf.clip_by_global_norm(gradients, limit)
            if replicas > 1:
                gradients = [gradient / replicas for gradient in gradients]
        # A step whose loss-scaled gradient overflowed (skipped by the loss scale optimizer)
        # is left out of the figures.
        finite = tf.math.is_finite(norm)
        share = tf.where(finite, 1.0 / replicas, 0.0)
        return gradients, {"grad_norm": tf.where(finite, norm / scale, 0.0) * share,
                           "clip_checks": share,
                           "clipped": tf.cast(finite & (norm > limit), tf.float32) * share}

    def _reduce(self, per_replica, reductions=None):
        reduced = {}
        for key, value in per_replica.items():
            if (reductions or {}).get(key, "sum") == "gather":
                reduced[key] = self.strategy.gather(value, axis=0)
            else:
                reduced[key] = self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
        return reduced

    def make_train_loop(self):
        """A fresh tf.function running `num_steps` steps from a distributed iterator.

        Make one per stage: its trace holds the stage's dropout rate and image size.
        """
        replica_step = self.train_step
        if self.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)
        keys = (("loss", "examples") + (CLIP_METRICS if self.loss.grad_clip_norm else ())
                + tuple(self.task.TRAIN_METRICS))

        @tf.function
        def train_loop(iterator, num_steps):
            self.traces["train"] += 1  # Python side effect: runs once per trace
            totals = {key: tf.constant(0.0) for key in keys}
            for _ in tf.range(num_steps):
                inputs, targets = next(iterator)
                sums = self._reduce(self.strategy.run(replica_step, args=(inputs, targets)))
                totals = {key: totals[key] + sums[key] for key in keys}
            return totals

        return train_loop

    def batch_norms(self):
        """The model's trainable batch-norm layers (frozen ones keep their statistics)."""
        return [layer for layer in self.model._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]

    def recalibrate_batch_norm(self, distributed_dataset, num_batches):
        """Replaces every batch norm's moving statistics with the average of its batch
        statistics over `num_batches` batches of the dataset, the model in training mode and
        its weights fixed (PreciseBN: Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).
        The moving averages gathered while training follow weights that kept changing and
        inputs as the training augmentation made them; these are of the final weights on
        inputs as evaluation makes them. Returns the number of batches used."""
        layers = self.batch_norms()
        momenta = [layer.momentum for layer in layers]
        sums = [[tf.zeros_like(layer.moving_mean), tf.zeros_like(layer.moving_variance)]
                for layer in layers]
        for layer in layers:  # each forward pass sets the moving statistics to its batch's
            layer.momentum = 0.0

        @tf.function
        def forward(inputs):
            self.strategy.run(lambda images: self.model(images, training=True), args=(inputs,))

        used = 0
        try:
            for inputs, _ in distributed_dataset:
                if used == num_batches:
                    break
                forward(inputs)
                used += 1
                for pair, layer in zip(sums, layers):
                    pair[0] += tf.convert_to_tensor(layer.moving_mean)
                    pair[1] += tf.convert_to_tensor(layer.moving_variance)
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
        if used:
            for (mean, variance), layer in zip(sums, layers):
                layer.moving_mean.assign(mean / used)
                layer.moving_variance.assign(variance / used)
        return used

    def eval_step(self, inputs, targets):
        return self.task.eval_step(self.model, inputs, targets)

    def _make_eval_step(self):
        replica_step = self.eval_step
        if self.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def distributed_eval_step(inputs, targets):
            self.traces["eval"] += 1
            return self._reduce(self.strategy.run(replica_step, args=(inputs, targets)),
                                self.task.EVAL_REDUCTIONS)

        return distributed_eval_step

    def evaluate(self, distributed_dataset):
        """The task's metrics over one pass of a distributed eval dataset."""
        if self._eval_step is None:
            self._eval_step = self._make_eval_step()
        evaluator = self.task.evaluator()
        for inputs, targets in distributed_dataset:
            outputs = self._eval_step(inputs, targets)
            evaluator.update({key: value.numpy() for key, value in outputs.items()})
        return evaluator.finish()
