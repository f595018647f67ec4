"""Detector training speed: our train step against model.fit, and the detection input pipeline.

    python scripts/bench_detect_train.py [--rounds=5] [--steps_per_round=3]

Data: COCO JSON scenes written here (scikit-learn's digits pasted onto the bundled photos,
tasks/detection/digit_scenes.py) at 640 px, the size of a COCO image's long side, as JPEGs (as
COCO's), with the annotation file's categories widened to COCO's 90 class slots.

1. Train step, EfficientDet-D0 at 512, batch 4, 90 classes: the recipe of
   experiments/coco_det.py (SGD momentum 0.9, L2 4e-5 on kernels, clipping at global norm 10,
   focal + 50 x Huber normalized by the positive anchors + 1), built by the trainer (plan,
   build_state) and run by its host loop (several steps per call), without EMA. Against the same
   architecture (built with the same seed) under `model.fit`, with Keras' SGD (momentum 0.9,
   global_clipnorm 10), one step per call (fit's default steps_per_execution), and a
   `compute_loss` of the same loss plus the same L2 term, written two ways:
   - with Keras' own BinaryFocalCrossentropy (class-balanced, from logits) and Huber, as a
     model.fit user writes it: train_step_speedup = its seconds per step / ours (goal >= 1.2);
   - with our task's loss function: loop_only_speedup, what the loop alone gains.
   The two losses' values on the batch are printed: the same loss. All train on one batch the
   pipeline made, held in memory, alternating round by round (the median of the rounds).
2. The training input pipeline on 1 core (a private thread pool of 1, no intra-op
   parallelism): decode, flip, scale jitter 0.1-2.0, crop to 512, anchor labeling of all 49,104
   anchors, batch (goal >= 60 img/s); and on 2 cores.
The last line printed is one JSON object with the figures.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_input import images_per_second, with_threads  # noqa: E402
from benchtiming import medians_in_turn  # noqa: E402
from efficientnet_tf import tasks  # noqa: E402
from efficientnet_tf.data import labels  # noqa: E402
from efficientnet_tf.tasks.detection import digit_scenes, targets as targets_lib  # noqa: E402
from efficientnet_tf.train import optim, trainer  # noqa: E402
from experiments import coco_det  # noqa: E402  (the recipe file, from the repository root)

flags.DEFINE_string("model", "efficientdet-d0", "The detector (a smaller row for a smoke run).")
flags.DEFINE_integer("image_size", None, "Its input size (default: the row's, 512 for D0).")
flags.DEFINE_integer("batch", 4, "Global batch of the step comparison.")
flags.DEFINE_integer("rounds", 5, "Alternating rounds of the step comparison (median reported).")
flags.DEFINE_integer("steps_per_round", 3, "Steps per side per round.")
flags.DEFINE_integer("pipeline_batches", 15, "Batches of 8 timed per pipeline measurement.")
FLAGS = flags.FLAGS

SCENE_SIZE = 640
COCO_CLASS_SLOTS = 90


def write_scenes(root):
    """Digit scenes as COCO JSON with JPEG images (quality 90; COCO's images are JPEGs), their
    categories widened to 90 (ids 1..90; the digits keep 1..10), so the detector has COCO's
    class head."""
    written = digit_scenes.write_digit_scenes(root, image_size=SCENE_SIZE, train_images=64,
                                              eval_images=8)
    for split in ("train", "eval"):
        path = written[split]["annotations"]
        payload = json.loads(tf.io.gfile.GFile(path).read())
        for image in payload["images"]:
            png = f"{root}/{split}/images/{image['file_name']}"
            image["file_name"] = image["file_name"].rsplit(".", 1)[0] + ".jpg"
            pixels = tf.io.decode_png(tf.io.read_file(png), channels=3)
            tf.io.write_file(f"{root}/{split}/images/{image['file_name']}",
                             tf.io.encode_jpeg(pixels, quality=90))
            tf.io.gfile.remove(png)
        known = {c["id"] for c in payload["categories"]}
        payload["categories"] += [{"id": i, "name": labels.UNUSED.format(i)}
                                  for i in range(1, COCO_CLASS_SLOTS + 1) if i not in known]
        payload["categories"].sort(key=lambda c: c["id"])
        with tf.io.gfile.GFile(path, "w") as stream:
            stream.write(json.dumps(payload))
    return written


def config_for(root):
    config = coco_det.get_config(FLAGS.model)
    config.train.image_size = FLAGS.image_size
    config.model.bn_sync = "none"  # one device
    config.data.source = "coco_json"
    config.data.label_offset = 0
    config.data.num_classes = 0  # from the annotation file
    for split in ("train", "eval"):
        config.data[f"{split}_annotations"] = f"{root}/{split}/annotations.json"
        config.data[f"{split}_images"] = f"{root}/{split}/images"
    config.data.num_train_examples = 0
    config.data.num_eval_examples = 0
    config.data.shuffle_buffer = 64
    config.data.cache = True
    config.train.batch_size = FLAGS.batch
    config.train.steps = 1000
    config.train.ema_decay = 0.0
    config.train.seed = 0
    return config


class FitDetector(keras.Model):
    """The detector under model.fit. Its loss is the recipe's, normalized by the positive
    anchors + 1, plus the same L2 term: written with Keras' own loss classes, as a model.fit
    user writes it (the anchor), or the task's own loss function (the loop alone)."""

    def __init__(self, detector, task, loss_settings, keras_losses):
        super().__init__()
        self.detector = detector
        self.task = task
        self.loss_settings = loss_settings
        self.keras_losses = keras_losses
        settings = task.settings
        self.focal = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=settings.focal_alpha, gamma=settings.focal_gamma,
            from_logits=True, label_smoothing=settings.label_smoothing, reduction=None)
        self.huber = keras.losses.Huber(delta=settings.huber_delta, reduction=None)

    def call(self, images, training=False):
        return self.detector(images, training=training)

    def detection_loss(self, targets, outputs):
        """The global batch's loss with Keras' BinaryFocalCrossentropy and Huber: both average
        over their last axis (classes, box coordinates), so x classes and x 4 / 4."""
        settings, num_classes = self.task.settings, self.task.run.num_classes
        class_sum, box_sum = 0.0, 0.0
        for level in settings.anchors.levels:
            classes = targets[f"classes_{level}"]
            logits = tf.reshape(outputs[f"classes_{level}"],
                                tf.concat([tf.shape(classes), [num_classes]], 0))
            one_hot = tf.one_hot(tf.maximum(classes, -1), num_classes)
            kept = tf.cast(classes != targets_lib.IGNORED, tf.float32)
            class_sum += tf.reduce_sum(self.focal(one_hot, logits) * kept) * num_classes
            codes = tf.reshape(outputs[f"boxes_{level}"], tf.concat([tf.shape(classes), [4]], 0))
            box_targets = tf.reshape(targets[f"boxes_{level}"], tf.shape(codes))
            positive = tf.cast(classes >= 0, tf.float32)
            box_sum += tf.reduce_sum(self.huber(box_targets, codes) * positive)
        normalizer = tf.reduce_sum(tf.cast(targets["num_positives"], tf.float32)) + 1.0
        return (class_sum + settings.box_loss_weight * box_sum) / normalizer

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        del x, sample_weight, training
        settings = self.loss_settings
        if self.keras_losses:
            loss = self.detection_loss(y, y_pred)
        else:
            loss = tf.reduce_sum(self.task.loss(y, y_pred)) / settings.global_batch
        return loss + optim.l2_penalty(self.detector.trainable_variables,
                                       settings.l2_weight_decay, settings.weight_decay_exclude)


def step_comparison(config):
    """Seconds per step: ours, model.fit with Keras' losses, model.fit with the task's loss;
    and the two losses' values on the batch (the same loss, written twice)."""
    strategy = tf.distribute.get_strategy()
    run = trainer.resolve_run(config, strategy)
    state = trainer.build_state(run, strategy, tempfile.mkdtemp())
    stage = run.stages[0]
    images, targets = next(trainer.train_iterator(state, stage, 0))
    batch = tf.data.Dataset.from_tensors((images, targets)).repeat()
    ours_iterator = iter(batch)
    ours_loop = state.steps.make_train_loop()
    learning_rate = float(state.schedule(run.total_steps // 2))

    def fit_model(keras_losses):
        keras.utils.set_random_seed(run.seed)
        model = FitDetector(state.task.build_model(stage), state.task, state.steps.loss,
                            keras_losses)
        model.compile(optimizer=keras.optimizers.SGD(
            learning_rate, momentum=0.9, global_clipnorm=run.optimization.grad_clip_norm),
            jit_compile=False)
        return model

    fits = {"keras_losses": fit_model(True), "task_loss": fit_model(False)}
    outputs = state.model(images, training=False)
    losses = {"keras_losses": float(fits["keras_losses"].detection_loss(targets, outputs)),
              "task_loss": float(tf.reduce_sum(state.task.loss(targets, outputs))
                                 / run.global_batch)}
    if abs(losses["keras_losses"] / losses["task_loss"] - 1.0) > 1e-4:
        raise AssertionError(f"the two losses differ: {losses}; the comparison would be unfair")

    def ours(count):
        return ours_loop(ours_iterator, count)["loss"]

    def fit_with(model):
        def fit(count):
            model.fit(batch, steps_per_epoch=int(count), epochs=1, verbose=0)
        return fit

    sides = {"ours": ours, **{name: fit_with(model) for name, model in fits.items()}}
    medians = medians_in_turn(sides, tf.constant(FLAGS.steps_per_round), FLAGS.rounds)
    parameters = sum(int(tf.size(v)) for v in state.model.trainable_variables)
    seconds = {name: value / FLAGS.steps_per_round for name, value in medians.items()}
    return seconds, losses, parameters, run


def pipeline_rate(config, threads):
    """Images per second of the trainer's detection train pipeline with `threads` threads."""
    config = config.copy_and_resolve_references()
    config.train.batch_size = 8
    strategy = tf.distribute.get_strategy()
    run = trainer.resolve_run(config, strategy)
    task = tasks.create(run)
    dataset = task.train_dataset(run.stages[0], seed=0)
    # 10 batches fill the cache (every train image seen) and warm up
    return 8 * images_per_second(with_threads(dataset, threads), FLAGS.pipeline_batches, 10)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    with tempfile.TemporaryDirectory() as root:
        write_scenes(root)
        config = config_for(root)
        one_core = pipeline_rate(config, 1)
        two_cores = pipeline_rate(config, 2)
        seconds, losses, parameters, run = step_comparison(config)
    result = {
        "model": run.spec.name, "image_size": run.task_settings.image_size,
        "batch": FLAGS.batch, "num_classes": run.num_classes, "trainable_parameters": parameters,
        "train_step_speedup": round(seconds["keras_losses"] / seconds["ours"], 3),
        "loop_only_speedup": round(seconds["task_loss"] / seconds["ours"], 3),
        "ours_step_seconds": round(seconds["ours"], 3),
        "fit_keras_losses_step_seconds": round(seconds["keras_losses"], 3),
        "fit_task_loss_step_seconds": round(seconds["task_loss"], 3),
        "loss_keras_losses": round(losses["keras_losses"], 5),
        "loss_task": round(losses["task_loss"], 5),
        "pipeline_img_s_1core": round(one_core, 1), "pipeline_img_s_2cores": round(two_cores, 1),
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    print(f"{result['model']} train step at {result['image_size']} px, batch {FLAGS.batch}, "
          f"{run.num_classes} classes: ours {seconds['ours']:.2f} s; model.fit with Keras' "
          f"focal and Huber losses {seconds['keras_losses']:.2f} s "
          f"({result['train_step_speedup']:.2f}x, goal >= 1.2); model.fit with our loss "
          f"function {seconds['task_loss']:.2f} s ({result['loop_only_speedup']:.2f}x: the "
          f"loop alone). The loss on the batch: {losses['keras_losses']:.5f} (Keras' losses) vs "
          f"{losses['task_loss']:.5f} (ours). Detection train pipeline (scale jitter, crop, "
          f"anchor labeling): {one_core:.1f} img/s on 1 core (goal >= 60), {two_cores:.1f} on 2")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
