"""Training throughput: end to end (input pipeline + our step), and our step vs keras model.fit.

    python scripts/bench_train.py

1. End to end, for efficientnet-b0 and efficientnetv2-b0 at 224, batch 16: the trainer's own
   pipeline on ImageNet-like JPEG TFRecords (written here from scikit-image's photos) with
   RandAugment(2, 15), feeding the trainer's host loop (RMSProp, label smoothing, L2 decay, EMA),
   1000 classes. images/s over the timed steps, after two warm-up steps.
2. Train step only, on one in-memory batch: our step (the same host loop, without EMA) on our
   model vs keras.applications EfficientNetB0 with model.fit (RMSprop, label smoothing), the same
   batch, alternating rounds. train_step_speedup = keras step time / ours.
The last line printed is one JSON object with the figures.
"""

import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_input import write_imagenet_like_records  # noqa: E402

import efficientnet_tf  # noqa: E402
from efficientnet_tf.tasks.classification import task as classification  # noqa: E402
from efficientnet_tf.train import config as config_lib  # noqa: E402
from efficientnet_tf.train import loop, trainer  # noqa: E402

flags.DEFINE_list("variants", ["efficientnet-b0", "efficientnetv2-b0"], "The variants timed end to "
                  "end.")
flags.DEFINE_integer("batch", 16, "Global batch.")
flags.DEFINE_integer("image_size", 224, "Training image size.")
flags.DEFINE_integer("steps", 8, "Timed steps per end-to-end measurement.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds of the step comparison (median reported).")
flags.DEFINE_integer("steps_per_round", 3, "Steps per model per round.")
FLAGS = flags.FLAGS


def end_to_end(variant, records_dir):
    config = config_lib.base_config()
    config.model.name = variant
    config.data.source = "tfrecord"
    config.data.train_pattern = f"{records_dir}/train-*"
    config.data.eval_pattern = f"{records_dir}/train-*"
    config.data.num_train_examples = 256
    config.data.num_eval_examples = 256
    config.data.shuffle_buffer = 256
    config.data.cache = True
    config.train.batch_size = FLAGS.batch
    config.train.steps = FLAGS.steps + 2
    config.progressive.schedule = "custom"
    config.progressive.num_stages = 1
    config.progressive.image_size_min = config.progressive.image_size_max = FLAGS.image_size
    strategy = tf.distribute.get_strategy()
    run = trainer.resolve_run(config, strategy)
    state = trainer.build_state(run, strategy, tempfile.mkdtemp())
    stage = run.stages[0]
    state.task.enter_stage(state.model, stage)
    iterator = trainer.train_iterator(state, stage, 0)
    train_loop = state.steps.make_train_loop()
    float(train_loop(iterator, tf.constant(2))["loss"])  # trace and warm up
    start = time.perf_counter()
    float(train_loop(iterator, tf.constant(FLAGS.steps))["loss"])
    return FLAGS.steps * FLAGS.batch / (time.perf_counter() - start)


class SmoothedCrossEntropy:
    """The two parts of a task the train step calls (tasks/base.py): the classification loss
    with label smoothing 0.1, as Keras' CategoricalCrossentropy below, and no extra metrics."""

    TRAIN_METRICS = ()

    def loss(self, targets, outputs):
        return classification.cross_entropy(targets, outputs, label_smoothing=0.1)

    def train_metrics(self, targets, outputs):
        return {}


def step_comparison():
    size, batch = FLAGS.image_size, FLAGS.batch
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)), tf.float32)
    labels = tf.one_hot(rng.randint(0, 1000, batch), 1000)

    ours_model = efficientnet_tf.create_model("efficientnet-b0")
    optimizer = keras.optimizers.RMSprop(0.001, rho=0.9, momentum=0.9, epsilon=1e-3)
    steps = loop.Steps(SmoothedCrossEntropy(), ours_model, optimizer,
                       tf.distribute.get_strategy(), loop.LossSettings(global_batch=batch))
    ours_loop = steps.make_train_loop()
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    iterator = iter(dataset)

    theirs = keras.applications.EfficientNetB0(weights=None, classifier_activation=None,
                                               input_shape=(size, size, 3))
    theirs.compile(optimizer=keras.optimizers.RMSprop(0.001, rho=0.9, momentum=0.9, epsilon=1e-3),
                   loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                             label_smoothing=0.1),
                   jit_compile=False)
    fit_dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()

    def ours(count):
        start = time.perf_counter()
        float(ours_loop(iterator, tf.constant(count))["loss"])
        return (time.perf_counter() - start) / count

    def keras_fit(count):
        start = time.perf_counter()
        theirs.fit(fit_dataset, steps_per_epoch=count, epochs=1, verbose=0)
        return (time.perf_counter() - start) / count

    ours(1)
    keras_fit(1)
    times = {"ours": [], "keras": []}
    for round_index in range(FLAGS.rounds):
        order = (("ours", ours), ("keras", keras_fit))
        for name, run in order if round_index % 2 == 0 else order[::-1]:
            times[name].append(run(FLAGS.steps_per_round))
    return statistics.median(times["ours"]), statistics.median(times["keras"])


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    with tempfile.TemporaryDirectory() as records_dir:
        write_imagenet_like_records(records_dir)
        end_to_end_rates = {variant: end_to_end(variant, records_dir)
                            for variant in FLAGS.variants}
    ours_step, keras_step = step_comparison()
    result = {
        "end_to_end_img_s": {k: round(v, 2) for k, v in end_to_end_rates.items()},
        "train_step_speedup": round(keras_step / ours_step, 3),
        "ours_step_seconds": round(ours_step, 3), "keras_fit_step_seconds": round(keras_step, 3),
        "batch": FLAGS.batch, "image_size": FLAGS.image_size,
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    print("end to end (pipeline + train step, batch %d at %d): %s; train step efficientnet-b0: "
          "ours %.2f s vs keras.applications model.fit %.2f s (%.2fx)" % (
              FLAGS.batch, FLAGS.image_size,
              ", ".join(f"{k} {v:.1f} img/s" for k, v in result["end_to_end_img_s"].items()),
              ours_step, keras_step, result["train_step_speedup"]))
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
