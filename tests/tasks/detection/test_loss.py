"""The detection loss (loss.py; task.py's loss): focal and Huber numbers by hand, normalization by
the positive anchors of the GLOBAL batch, and one training step that makes the same update on one
replica and on two (MirroredStrategy over the 2 logical CPUs) with the same global batch."""

import math
import types

import keras
import numpy as np
import tensorflow as tf

from efficientnet_tf.tasks.detection import anchors as anchors_lib
from efficientnet_tf.tasks.detection import targets as targets_lib
from efficientnet_tf.models import efficientdet
from efficientnet_tf.tasks.detection import loss as loss_lib
from efficientnet_tf.tasks.detection import task as detection
from efficientnet_tf.train import loop

SIZE, NUM_CLASSES, BATCH = 64, 3, 4


def test_focal_loss_matches_the_formula_by_hand():
    logit, alpha, gamma = 0.3, 0.25, 1.5
    p = 1.0 / (1.0 + math.exp(-logit))
    positive = alpha * (1 - p) ** gamma * -math.log(p)  # class 1 is the target
    negative = (1 - alpha) * p ** gamma * -math.log(1 - p)
    loss = loss_lib.focal_loss(tf.fill([2, 3], logit), tf.constant([1, targets_lib.BACKGROUND]), 3,
                                alpha, gamma).numpy()
    np.testing.assert_allclose(loss[0], [negative, positive, negative], rtol=1e-5)
    np.testing.assert_allclose(loss[1], [negative] * 3, rtol=1e-5)
    ignored = loss_lib.focal_loss(tf.fill([1, 3], logit), tf.constant([targets_lib.IGNORED]), 3,
                                   alpha, gamma)
    assert float(tf.reduce_sum(ignored)) == 0.0
    # label smoothing 0.2 moves the target of every class 0.1 towards 1/2
    smoothed = loss_lib.focal_loss(tf.fill([1, 3], logit), tf.constant([1]), 3, alpha, gamma,
                                    label_smoothing=0.2).numpy()[0, 1]
    expected = alpha * (1 - p) ** gamma * -(0.9 * math.log(p) + 0.1 * math.log(1 - p))
    np.testing.assert_allclose(smoothed, expected, rtol=1e-5)


def _focal_by_autodiff(logits, targets, num_classes, alpha, gamma, label_smoothing):
    """The focal loss as the formula reads, left to autodiff."""
    positive = tf.one_hot(tf.maximum(targets, -1), num_classes)
    p = tf.sigmoid(logits)
    p_t = positive * p + (1 - positive) * (1 - p)
    alpha_t = positive * alpha + (1 - positive) * (1 - alpha)
    target = positive * (1 - label_smoothing) + 0.5 * label_smoothing
    loss = alpha_t * (1 - p_t) ** gamma * tf.nn.sigmoid_cross_entropy_with_logits(target, logits)
    return loss * tf.cast(targets != targets_lib.IGNORED, tf.float32)[..., None]


def test_focal_loss_gradient_is_autodiffs_of_the_formula():
    """The written-out gradient against autodiff of the formula: saturated logits (p exactly 0
    or 1 in float32), ignored anchors, label smoothing, gamma 0 / 1.5 / 2."""
    rng = np.random.RandomState(0)
    logits = tf.constant(np.concatenate([rng.normal(0, 4, (300, 5)), np.full((2, 5), 40.0),
                                         np.full((2, 5), -40.0)]), tf.float32)
    targets = tf.constant(rng.choice([0, 3, targets_lib.BACKGROUND, targets_lib.IGNORED], 304),
                          tf.int32)
    for gamma, smoothing in ((1.5, 0.0), (2.0, 0.1), (0.0, 0.0)):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(logits)
            ours = loss_lib.focal_loss(logits, targets, 5, 0.25, gamma, smoothing)
            theirs = _focal_by_autodiff(logits, targets, 5, 0.25, gamma, smoothing)
            weights = tf.constant(rng.uniform(0.5, 2.0, (304, 5)), tf.float32)
            ours_sum, theirs_sum = tf.reduce_sum(ours * weights), tf.reduce_sum(theirs * weights)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
        ours_gradient = tape.gradient(ours_sum, logits).numpy()
        theirs_gradient = tape.gradient(theirs_sum, logits).numpy()
        assert np.isfinite(ours_gradient).all()
        # autodiff of m^0 at m = 0 (gamma 0, a saturated logit) is 0 x inf = NaN; ours is 0
        finite = np.isfinite(theirs_gradient)
        assert finite.mean() > 0.98
        np.testing.assert_allclose(ours_gradient[finite], theirs_gradient[finite], rtol=1e-4,
                                   atol=1e-6)


def test_huber_loss_is_quadratic_within_delta_and_linear_beyond():
    loss = loss_lib.huber_loss(tf.constant([0.05, -0.3, 0.0]), tf.constant([0.0, 0.0, 0.0]),
                                0.1).numpy()
    np.testing.assert_allclose(loss, [0.5 * 0.05 ** 2, 0.1 * (0.3 - 0.05), 0.0], rtol=1e-6)


def _task(global_batch=BATCH):
    spec = anchors_lib.settings_of("efficientdet-test")
    settings = detection.DetectionTaskSettings(
        image_size=SIZE, anchors=spec, max_instances=8, scale_range=(0.1, 2.0), random_flip=True,
        cache=False, shuffle_buffer=10, deterministic=True, focal_alpha=0.25, focal_gamma=1.5,
        label_smoothing=0.0, box_loss_weight=50.0, huber_delta=0.1, eval_nms="gaussian")
    run = types.SimpleNamespace(task_settings=settings, num_classes=NUM_CLASSES,
                                global_batch=global_batch)
    return detection.DetectionTask(run, source=None)


def _batch():
    """4 images whose targets differ in their number of positives: images 0-1 (replica 0 under
    two replicas) hold 3 boxes each, images 2-3 one each."""
    rng = np.random.RandomState(0)
    anchors = anchors_lib.generate((SIZE, SIZE), _task().settings.anchors)
    images, targets = [], []
    for index, count in enumerate([3, 3, 1, 1]):
        corners = rng.uniform(0, SIZE - 24, size=(count, 2))
        sides = rng.uniform(12, 24, size=(count, 2))
        boxes = np.concatenate([corners, corners + sides], axis=1).astype("float32")
        classes = np.arange(count) % NUM_CLASSES + index % 2
        padded_boxes, padded_classes, _ = targets_lib.pad_instances(boxes, classes % NUM_CLASSES, 8)
        labelled = targets_lib.label(anchors, padded_boxes, padded_classes, (SIZE, SIZE),
                                 _task().settings.anchors)
        targets.append({**{f"classes_{k}": v for k, v in labelled.classes.items()},
                        **{f"boxes_{k}": v for k, v in labelled.boxes.items()},
                        "num_positives": labelled.num_positives})
        images.append(rng.uniform(0, 255, size=(SIZE, SIZE, 3)).astype("float32"))
    stacked = {key: tf.stack([t[key] for t in targets]) for key in targets[0]}
    return tf.constant(np.stack(images)), stacked


def test_the_loss_is_normalized_by_the_positives_of_the_whole_batch_plus_one():
    task = _task()
    images, targets = _batch()
    model = efficientdet.build("efficientdet-test", NUM_CLASSES, (SIZE, SIZE))
    outputs = model(images, training=False)
    class_sums, box_sums = task._loss_sums(targets, outputs)
    positives = float(tf.reduce_sum(targets["num_positives"]))
    assert positives >= 8  # every box has at least its forced anchor
    expected = float(tf.reduce_sum(class_sums + 50.0 * box_sums)) / (positives + 1.0)
    per_example = task.loss(targets, outputs)
    np.testing.assert_allclose(float(tf.reduce_sum(per_example)) / BATCH, expected, rtol=1e-5)
    # a positive anchor's box loss: Huber of its code over 4 (automl's / (positives * 4))
    assert float(tf.reduce_sum(box_sums)) > 0


def _one_step(replicas):
    keras.utils.set_random_seed(0)
    strategy = (tf.distribute.get_strategy() if replicas == 1 else tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()))
    task = _task()
    with strategy.scope():
        model = _frozen_batch_norm(efficientdet.build("efficientdet-test", NUM_CLASSES,
                                                      (SIZE, SIZE)))
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        optimizer.build(model.trainable_variables)
    steps = loop.Steps(task, model, optimizer, strategy, loop.LossSettings(
        global_batch=BATCH, l2_weight_decay=4e-5, grad_clip_norm=10.0))
    dataset = tf.data.Dataset.from_tensors(_batch()).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    totals = steps.make_train_loop()(iterator, tf.constant(1))
    return {v.path: v.numpy() for v in model.weights}, {k: float(v) for k, v in totals.items()}


def _frozen_batch_norm(model):
    """The model with its batch norms in inference mode (as when fine-tuning), so that how the
    batch is split over replicas does not change their statistics. Synchronized BN would do
    that too (tests/models/test_layers.py holds it to the whole batch's statistics), but
    MirroredStrategy traces each of its all-reduces' gradients by walking the other replicas'
    graph (tensorflow custom_gradient): two minutes for this small detector, 20 s without."""
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return model


def test_one_step_on_one_replica_and_on_two_makes_the_same_update():
    """Replica 0 sees 6 boxes, replica 1 two: normalized per replica (automl) the two halves of
    the gradient would be weighted differently; normalized over the global batch they are not."""
    one_weights, one_totals = _one_step(1)
    two_weights, two_totals = _one_step(2)
    assert one_weights.keys() == two_weights.keys()
    np.testing.assert_allclose(one_totals["loss"], two_totals["loss"], rtol=1e-5)
    np.testing.assert_allclose(one_totals["positives"], two_totals["positives"])
    # the updates themselves agree, to float32's resolution at each weight's magnitude (most
    # updates are near 1e-6, too small to compare the weights with a tolerance)
    initial, model = _initial_weights()
    trainable = [v.path for v in model.trainable_weights]
    for name in trainable:
        resolution = 4 * np.spacing(np.abs(initial[name]).max().astype(np.float32))
        np.testing.assert_allclose(two_weights[name] - initial[name],
                                   one_weights[name] - initial[name], rtol=2e-3,
                                   atol=resolution, err_msg=name)
    moved = sum(np.any(one_weights[name] != initial[name]) for name in trainable)
    assert moved > 0.8 * len(trainable)  # the step did update the model


def _initial_weights():
    keras.utils.set_random_seed(0)
    model = _frozen_batch_norm(efficientdet.build("efficientdet-test", NUM_CLASSES, (SIZE, SIZE)))
    return {v.path: v.numpy() for v in model.weights}, model
