"""EfficientDet's losses (EfficientDet §3.3 and §4; RetinaNet §3.3): the sigmoid focal loss over
every (anchor, class), the Huber loss of the box codes, and the global-batch normaliser.

As google/automl efficientdet (tf2/train_lib.py, hparams_config.py): alpha 0.25, gamma 1.5,
Huber delta 0.1, the box loss weighted 50 and divided by 4 codes; both divided by the positive
anchors + 1 -- here of the GLOBAL batch (global_positives), see tasks/detection/task.py.
"""

import tensorflow as tf

from efficientnet_tf.tasks.detection import targets as targets_lib


def focal_loss(logits, targets, num_classes, alpha, gamma, label_smoothing=0.0):
    """Per (anchor, class) sigmoid focal loss (RetinaNet §3.3) of logits [..., C] against
    integer targets [...] (a class, targets_lib.BACKGROUND, or targets_lib.IGNORED: zero loss).

    With p = sigmoid(x), y the one-hot target, m = 1 - p_t (p, or 1 - p where y = 1), a = alpha_t
    and y' the smoothed target: loss = a m^gamma CE(y', x), and its gradient, written out (as
    p (1 - p) = m (1 - m), with no division by m, which a denormal m would overflow):
    a m^gamma [gamma (1 - m) (1 - 2y) CE(y', x) + p - y']. The forward
    pass keeps the few tensors it needs, and the backward pass is a few element-wise passes
    instead of autodiff's chain of some 35 over the [B, anchors, classes] logits (D0 at 512,
    batch 4, 90 classes: 17.7 M of them; scripts/bench_detect_train.py times the step), with
    the same values (tests/tasks/detection/test_loss.py checks both against autodiff of the
    formula)."""
    @tf.custom_gradient
    def loss_of(x):
        positive = tf.one_hot(tf.maximum(targets, -1), num_classes, dtype=tf.float32)  # -1: 0s
        kept = tf.cast(targets != targets_lib.IGNORED, tf.float32)[..., None]
        # The cheap forms: 1 - p_t and softplus(x) - y'x lose relative precision only where
        # p_t is near 1, where m^gamma makes the loss and gradient vanish (< 1e-6 absolute).
        probability = tf.sigmoid(x)
        m = probability + positive - 2.0 * positive * probability  # 1 - p_t
        weight = kept * ((1.0 - alpha) + (2.0 * alpha - 1.0) * positive)  # alpha_t
        target = positive * (1.0 - label_smoothing) + 0.5 * label_smoothing
        cross_entropy = tf.nn.softplus(x) - target * x
        weighted = weight * _power(m, gamma)
        loss = weighted * cross_entropy

        def gradient(upstream):
            return upstream * weighted * (gamma * (1.0 - m) * (1.0 - 2.0 * positive)
                                          * cross_entropy + probability - target)

        return loss, gradient

    return loss_of(tf.cast(logits, tf.float32))


def _power(values, exponent):
    """values ** exponent; RetinaNet's and EfficientDet's exponents (1.5, 2) as a square root and
    products: tf.pow is an exp of a log, and it made the focal loss half as slow again."""
    if exponent == 0:
        return tf.ones_like(values)
    if exponent == 1:
        return values
    if exponent == 1.5:
        return values * tf.sqrt(values)
    if exponent == 2:
        return values * values
    return values ** exponent


def huber_loss(predictions, targets, delta):
    """Element-wise Huber loss: 0.5 x^2 within delta, delta (|x| - delta / 2) beyond."""
    error = tf.abs(tf.cast(predictions, tf.float32) - targets)
    quadratic = tf.minimum(error, delta)
    return 0.5 * quadratic ** 2 + delta * (error - quadratic)


def global_positives(num_positives):
    """The positive anchors of the whole global batch (summed over replicas) + 1."""
    total = tf.reduce_sum(tf.cast(num_positives, tf.float32))
    context = tf.distribute.get_replica_context()
    if context is not None:  # in a replica (a strategy's step, or the default one)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, total)
    return tf.stop_gradient(total) + 1.0
