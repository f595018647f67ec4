"""Your own small photo folder: our folder recipe vs plain Keras, on offline real images.

    python scripts/bench_small_data.py [--datasets=photos,textures,digits] [--set=KEY=VALUE ...]

For each dataset of efficientnet_tf/data/samples.py (real photos cut into patches, grayscale
textures, handwritten digits; validation from regions or writers that training never sees):

  ours   `efficientnet-tf train --config=experiments/folder.py:efficientnetv2-b0` with the data's
         train and validation folders and the epochs: what a user types. The recipe decides the
         rest from the data (experiments/folder.py), as the CLI would, through the same trainer.
  keras  keras.applications EfficientNetV2B0(weights=None) trained with the recipe of Keras' own
         "Image classification from scratch" example (keras-io examples/vision): Adam(1e-3),
         RandomFlip("horizontal") + RandomRotation(0.1), model.fit; the same folders through
         keras.utils.image_dataset_from_directory, the same image size, batch and epochs.

Held-out top-1 is measured on the validation folder; wall time covers building, training and
evaluating each. `--set=train.epochs=20` (repeatable) overrides a key of our config (ablations);
`--seeds=0,1,2` runs each recipe once per seed and reports the means. Both recipes run with op
determinism (enable_op_determinism) and fixed seeds, so a second run gives the same accuracies
whatever else shares the machine; only the times vary.
The last line printed is one JSON object: per-dataset figures, `min_top1_gain` (ours - keras on
the worst dataset, as a fraction), `mean_top1_gain` and `time_ratio` (our total time / Keras').
"""

import importlib.util
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from efficientnet_tf.data import samples  # noqa: E402
from efficientnet_tf.train import config as config_lib  # noqa: E402
from efficientnet_tf.train import trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# dataset: (image size of its files, epochs); both recipes train at the files' size.
DATASETS = {"photos": (96, 15), "textures": (64, 15), "digits": (32, 10)}

flags.DEFINE_list("datasets", list(DATASETS), "Which datasets to run.")
flags.DEFINE_list("recipes", ["ours", "keras"], "Which recipes to run.")
flags.DEFINE_multi_string("set", [], "KEY=VALUE overrides of our config, e.g. train.epochs=20.")
flags.DEFINE_string("data_dir", os.path.join(tempfile.gettempdir(), "efficientnet_tf_samples"),
                    "Where the datasets are written (reused when present).")
flags.DEFINE_integer("epochs", None, "Epochs of both recipes on every dataset (default: each "
                   "dataset's, DATASETS; 1 for a smoke run).")
flags.DEFINE_integer("batch", 32, "Batch size of both recipes.")
flags.DEFINE_list("seeds", ["0"], "Seeds of both recipes: each recipe runs once per seed and its "
                  "figures are the means (one run per set moves by several points).")
FLAGS = flags.FLAGS


def folder_recipe():
    spec = importlib.util.spec_from_file_location("folder", os.path.join(ROOT, "experiments",
                                                                         "folder.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config


def ours(train_root, eval_root, epochs, seed, overrides=()):
    """Held-out top-1 and wall seconds of the folder recipe, configured as a user would."""
    config = folder_recipe()("efficientnetv2-b0")
    config.data.root, config.data.eval_root = train_root, eval_root
    config.train.epochs = epochs
    config.train.batch_size = FLAGS.batch
    config.train.seed = seed
    for item in overrides:
        config_lib.override(config, item)
    keras.utils.set_random_seed(seed)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        results = trainer.train_and_evaluate(config, workdir)
        return {"top1": results["eval_top1"], "seconds": time.perf_counter() - start,
                "train_top1": results["train_top1"]}


def keras_example(train_root, eval_root, epochs, image_size, seed):
    """Held-out top-1 and wall seconds of keras.applications + Keras' from-scratch example."""
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    load = dict(image_size=(image_size, image_size), batch_size=FLAGS.batch, seed=seed)
    train = keras.utils.image_dataset_from_directory(train_root, shuffle=True, **load)
    validation = keras.utils.image_dataset_from_directory(eval_root, shuffle=False, **load)
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                     keras.layers.RandomRotation(0.1)])
    train = train.map(lambda images, labels: (augmentation(images), labels),
                      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    model = keras.applications.EfficientNetV2B0(
        weights=None, input_shape=(image_size, image_size, 3), classes=len(train_root_classes(
            train_root)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(train, epochs=epochs, verbose=0)
    _, top1 = model.evaluate(validation, verbose=0)
    return {"top1": float(top1), "seconds": time.perf_counter() - start,
            "train_top1": float(history.history["accuracy"][-1])}


def mean_of(results):
    """Mean of each figure over seeds, and the top-1 of each seed."""
    mean = {key: sum(r[key] for r in results) / len(results) for key in results[0]}
    mean["top1_per_seed"] = [r["top1"] for r in results]
    return mean


def train_root_classes(root):
    return sorted(entry.rstrip("/") for entry in tf.io.gfile.listdir(root))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    tf.config.experimental.enable_op_determinism()
    unknown = sorted(set(FLAGS.datasets) - set(DATASETS))
    if unknown:
        sys.exit(f"unknown datasets {unknown}; use {sorted(DATASETS)}")
    figures = {}
    for name in FLAGS.datasets:
        image_size, epochs = DATASETS[name]
        epochs = FLAGS.epochs or epochs
        train_root, eval_root = samples.WRITERS[name](os.path.join(FLAGS.data_dir, name))
        runs = {recipe: [] for recipe in FLAGS.recipes}
        for seed in (int(s) for s in FLAGS.seeds):
            if "ours" in FLAGS.recipes:
                runs["ours"].append(ours(train_root, eval_root, epochs, seed, FLAGS.set))
            if "keras" in FLAGS.recipes:
                runs["keras"].append(keras_example(train_root, eval_root, epochs, image_size,
                                                   seed))
        row = {recipe: mean_of(results) for recipe, results in runs.items() if results}
        figures[name] = row
        print(f"{name}: " + "; ".join(
            f"{recipe} top-1 {100 * r['top1']:.1f}% (train {100 * r['train_top1']:.1f}%) in "
            f"{r['seconds']:.0f} s" for recipe, r in row.items()), flush=True)
    summary = {"datasets": {name: {recipe: {key: (round(value, 4) if isinstance(value, float)
                                                  else [round(v, 4) for v in value])
                                            for key, value in r.items()}
                                   for recipe, r in row.items()}
                            for name, row in figures.items()},
               "overrides": FLAGS.set}
    if set(FLAGS.recipes) >= {"ours", "keras"}:
        gains = [row["ours"]["top1"] - row["keras"]["top1"] for row in figures.values()]
        summary["min_top1_gain"] = round(min(gains), 4)
        summary["mean_top1_gain"] = round(sum(gains) / len(gains), 4)
        summary["time_ratio"] = round(
            sum(row["ours"]["seconds"] for row in figures.values())
            / sum(row["keras"]["seconds"] for row in figures.values()), 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
