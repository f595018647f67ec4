"""The step functions and the host loop (DESIGN.md: our own loop on tf.distribute).

The loss is averaged over the GLOBAL batch (each replica divides its sum by the global batch
size and the optimizer sums gradients over replicas), computed in float32 from float32 logits
whatever the compute precision. The replica step also updates the EMA, so on TPU the whole step
is one compiled program. `steps_per_loop` train steps run inside one tf.function (the TPU host
loop); each stage of progressive learning gets its own function, so each image size is traced
(and on TPU compiled) once.
"""

import dataclasses

import tensorflow as tf

from efficientnet_tf.train import optim


@dataclasses.dataclass(frozen=True)
class LossSettings:
    global_batch: int
    num_classes: int
    label_smoothing: float = 0.0
    l2_weight_decay: float = 0.0  # as a loss term; decoupled decay lives in the optimizer
    weight_decay_exclude: tuple = optim.NO_DECAY  # name parts of the variables not decayed
    grad_clip_norm: float = 0.0


def cross_entropy(labels, logits, label_smoothing=0.0):
    """Per-example cross-entropy of soft (one-hot or mixed) labels with label smoothing."""
    labels = tf.cast(labels, tf.float32)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / tf.cast(
            tf.shape(labels)[-1], tf.float32)
    return tf.nn.softmax_cross_entropy_with_logits(labels, tf.cast(logits, tf.float32))


class Steps:
    """The replica step functions of one model/optimizer pair and their distributed loops."""

    def __init__(self, model, optimizer, strategy, loss_settings, ema=None, jit_compile=False):
        self.model = model
        self.optimizer = optimizer
        self.strategy = strategy
        self.loss = loss_settings
        self.ema = ema
        self.jit_compile = jit_compile
        self.traces = {"train": 0, "eval": 0}  # how often each kind of function was traced
        self._eval_step = None  # one function; it traces once per eval image size

    def train_step(self, images, labels):
        """One replica's step; returns per-replica sums (loss, correct, examples)."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            per_example = cross_entropy(labels, logits, self.loss.label_smoothing)
            loss = tf.reduce_sum(per_example) / self.loss.global_batch
            if self.loss.l2_weight_decay:
                replicas = tf.distribute.get_replica_context().num_replicas_in_sync
                loss += optim.l2_penalty(variables, self.loss.l2_weight_decay,
                                         self.loss.weight_decay_exclude) / replicas
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, variables)
        if self.loss.grad_clip_norm:
            gradients, _ = tf.clip_by_global_norm(gradients, self.loss.grad_clip_norm)
        self.optimizer.apply(gradients, variables)
        if self.ema is not None:
            self.ema.update_in_replica(self.optimizer.iterations)
        correct = tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1))
        return {"loss": tf.reduce_sum(per_example),
                "correct": tf.reduce_sum(tf.cast(correct, tf.float32)),
                "examples": tf.cast(tf.shape(labels)[0], tf.float32)}

    def _reduce(self, per_replica):
        return {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for key, value in per_replica.items()}

    def make_train_loop(self):
        """A fresh tf.function running `num_steps` steps from a distributed iterator.

        Make one per stage: its trace holds the stage's dropout rate and image size.
        """
        replica_step = self.train_step
        if self.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def train_loop(iterator, num_steps):
            self.traces["train"] += 1  # Python side effect: runs once per trace
            totals = {key: tf.constant(0.0) for key in ("loss", "correct", "examples")}
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                sums = self._reduce(self.strategy.run(replica_step, args=(images, labels)))
                totals = {key: totals[key] + sums[key] for key in totals}
            return totals

        return train_loop

    def eval_step(self, images, labels):
        """Sums of loss, top-1 and top-5 hits over the real (label >= 0) examples."""
        logits = tf.cast(self.model(images, training=False), tf.float32)
        real = labels >= 0
        safe_labels = tf.maximum(labels, 0)
        weights = tf.cast(real, tf.float32)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(safe_labels, logits)
        top_k = min(5, self.loss.num_classes)
        return {"loss": tf.reduce_sum(per_example * weights),
                "top1": tf.reduce_sum(tf.cast(tf.math.in_top_k(safe_labels, logits, 1),
                                              tf.float32) * weights),
                "top5": tf.reduce_sum(tf.cast(tf.math.in_top_k(safe_labels, logits, top_k),
                                              tf.float32) * weights),
                "examples": tf.reduce_sum(weights)}

    def _make_eval_step(self):
        replica_step = self.eval_step
        if self.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        @tf.function
        def distributed_eval_step(images, labels):
            self.traces["eval"] += 1
            return self._reduce(self.strategy.run(replica_step, args=(images, labels)))

        return distributed_eval_step

    def evaluate(self, distributed_dataset):
        """{'loss', 'top1', 'top5', 'examples'} over one pass of a distributed eval dataset."""
        if self._eval_step is None:
            self._eval_step = self._make_eval_step()
        step = self._eval_step
        totals = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "examples": 0.0}
        for images, labels in distributed_dataset:
            for key, value in step(images, labels).items():
                totals[key] += float(value)
        count = max(totals["examples"], 1.0)
        return {"loss": totals["loss"] / count, "top1": totals["top1"] / count,
                "top5": totals["top5"] / count, "examples": int(totals["examples"])}


def set_dropout(model, rate):
    """Sets the classifier dropout (progressive learning), for the functions traced after."""
    try:
        layer = model.get_layer("top_dropout")
    except ValueError:
        return
    layer.rate = float(rate)
