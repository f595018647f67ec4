"""Does progressive learning pay off? The same model, data and number of steps, trained (a) at a
fixed size at the maximum and (b) with the progressive schedule (V2 paper §4, Table 7 and Figure 6).

    python scripts/bench_progressive.py [--epochs=20 --min_size=32 --max_size=64]

Both runs are the embedded default run (efficientnet_tf/demo.py: efficientnetv2-test on
scikit-learn's digits written as image files) at larger sizes, so that the model's compute, not
the input pipeline, sets the pace: 4 stages ramping dropout, RandAugment and mixup in step.
(a) trains every stage at max_size; (b) grows the image from min_size to max_size. Only the image
size differs. Accuracy is the held-out 10% at max_size with the EMA weights. The last line
printed is one JSON object with the figures.
"""

import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from efficientnet_tf import demo  # noqa: E402
from efficientnet_tf.data import digits  # noqa: E402
from efficientnet_tf.train import trainer  # noqa: E402

flags.DEFINE_integer("epochs", 20, "Epochs of each run.")
flags.DEFINE_integer("min_size", 32, "First stage's image size of the progressive run.")
flags.DEFINE_integer("max_size", 64, "Last stage's size, the fixed run's size and the eval size.")
FLAGS = flags.FLAGS


def run(root, fixed):
    config = demo.digits_config(root)
    config.train.epochs = FLAGS.epochs
    config.progressive.image_size_max = config.eval.image_size = FLAGS.max_size
    config.progressive.image_size_min = FLAGS.max_size if fixed else FLAGS.min_size
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        results = trainer.train_and_evaluate(config, workdir)
        return time.perf_counter() - start, results


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    with tempfile.TemporaryDirectory() as root:
        digits.write_digits(root)
        fixed_wall, fixed = run(root, fixed=True)
        progressive_wall, progressive = run(root, fixed=False)
    result = {
        "fixed_wall_s": round(fixed_wall, 1), "progressive_wall_s": round(progressive_wall, 1),
        "fixed_accuracy": round(fixed["eval_top1"], 4),
        "progressive_accuracy": round(progressive["eval_top1"], 4),
        "time_ratio": round(progressive_wall / fixed_wall, 3),
        "steps": fixed["steps"], "eval_examples": fixed["eval_examples"],
        "sizes": {"fixed": fixed["stage_sizes"], "progressive": progressive["stage_sizes"]},
    }
    print(f"fixed {FLAGS.max_size} px: {result['fixed_wall_s']} s, top-1 "
          f"{100 * result['fixed_accuracy']:.1f}%; progressive "
          f"{FLAGS.min_size}->{FLAGS.max_size} px: "
          f"{result['progressive_wall_s']} s, top-1 "
          f"{100 * result['progressive_accuracy']:.1f}% (time ratio {result['time_ratio']})")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
