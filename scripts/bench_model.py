"""Inference and train-step throughput: our model vs keras.applications, alternating.

    python scripts/bench_model.py --variant=efficientnet-b0 --batch=16 --image_size=224

Both models get the same images, the same tf.function train step (SGD with momentum, sparse
cross-entropy on logits) and the same number of timed iterations, in alternating rounds so that
machine noise hits both alike. A speedup is theirs-time / ours-time (> 1: ours is faster).
The last line printed is one JSON object with the figures.
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import efficientnet_tf  # noqa: E402

flags.DEFINE_string("variant", "efficientnet-b0", "A variant keras.applications also has.")
flags.DEFINE_integer("batch", 16, "Images per step.")
flags.DEFINE_integer("image_size", 224, "Square input size.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds; the median round is reported.")
flags.DEFINE_integer("iterations", 5, "Timed calls per model per round.")
FLAGS = flags.FLAGS

KERAS_APPLICATIONS = {
    **{f"efficientnet-b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"efficientnetv2-{s}": f"EfficientNetV2{s.upper()}"
       for s in ("b0", "b1", "b2", "b3", "s", "m", "l")},
}


def make_steps(model):
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)

    @tf.function
    def infer(images):
        return model(images, training=False)

    @tf.function
    def train(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return infer, train


def seconds_per_call(function, *args, iterations):
    start = time.perf_counter()
    for _ in range(iterations):
        result = function(*args)
    np.asarray(result)  # wait for the last call
    return (time.perf_counter() - start) / iterations


def main(argv):
    del argv
    name = efficientnet_tf.get_spec(FLAGS.variant).name
    if name not in KERAS_APPLICATIONS:
        raise app.UsageError(f"keras.applications has no {name}; pick one of "
                             f"{sorted(KERAS_APPLICATIONS)}")
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(0, 255, (FLAGS.batch, FLAGS.image_size, FLAGS.image_size, 3)),
                         tf.float32)
    labels = tf.constant(rng.randint(0, 1000, FLAGS.batch))
    shape = (FLAGS.image_size, FLAGS.image_size, 3)
    ours = make_steps(efficientnet_tf.create_model(name, input_shape=shape))
    theirs = make_steps(getattr(keras.applications, KERAS_APPLICATIONS[name])(
        weights=None, input_shape=shape, classifier_activation=None))
    for steps in (ours, theirs):  # trace and warm up
        steps[0](images)
        steps[1](images, labels)

    times = {key: [] for key in ("ours_infer", "theirs_infer", "ours_train", "theirs_train")}
    for round_index in range(FLAGS.rounds):
        for who, steps in (("ours", ours), ("theirs", theirs)) if round_index % 2 == 0 else (
                ("theirs", theirs), ("ours", ours)):
            times[f"{who}_infer"].append(seconds_per_call(steps[0], images,
                                                          iterations=FLAGS.iterations))
            times[f"{who}_train"].append(seconds_per_call(steps[1], images, labels,
                                                          iterations=FLAGS.iterations))
    median = {key: statistics.median(values) for key, values in times.items()}
    result = {
        "variant": name, "batch": FLAGS.batch, "image_size": FLAGS.image_size,
        "infer_speedup": round(median["theirs_infer"] / median["ours_infer"], 3),
        "train_speedup": round(median["theirs_train"] / median["ours_train"], 3),
        "ours_infer_img_s": round(FLAGS.batch / median["ours_infer"], 1),
        "keras_infer_img_s": round(FLAGS.batch / median["theirs_infer"], 1),
        "ours_train_img_s": round(FLAGS.batch / median["ours_train"], 1),
        "keras_train_img_s": round(FLAGS.batch / median["theirs_train"], 1),
        "rounds": FLAGS.rounds, "iterations": FLAGS.iterations,
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    print(f"{name} batch {FLAGS.batch} at {FLAGS.image_size}: inference ours "
          f"{result['ours_infer_img_s']} img/s vs keras.applications {result['keras_infer_img_s']} "
          f"({result['infer_speedup']}x); train step ours {result['ours_train_img_s']} img/s vs "
          f"{result['keras_train_img_s']} ({result['train_speedup']}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
