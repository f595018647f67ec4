"""Why does a detector learn badly on a user's few boxes? One setting changed at a time.

    python scripts/ablate_small_detection.py [--variants=A,B] [--out=JSONL]

Three small sets of real pixels, each with validation from regions training never sees
(tasks/detection/photo_sets.py, digit_scenes.py): `sky` (Hubble deep-field sources, 2 classes,
median 7 px), `coins` (coins pasted on real backgrounds, 16-48 px), `digits` (digit scenes,
10 classes, 24-128 px); 72 training and 24 validation pictures of 128 px each. Each variant is
the detect_folder recipe (experiments/detect_folder.py) as a user runs it -- the folders and
the epochs -- with a few keys changed; every (variant, set, seed) is one training run through
the trainer, whose COCO AP / AP50 and wall time are appended to --out as a JSON line (by
default docs/results/small_detection_ablation.jsonl, the runs the README reports, each with the
commit that measured it), so a killed ablation resumes where it stopped. The markdown table
(variant x set) comes last, then one JSON line of all the figures.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402

import smalldetection  # noqa: E402
from smalldetection import SETS  # noqa: E402

# name: overrides of the recipe. "automl" is the recipe before it adapted to the data (automl's
# COCO settings, shortened); the others change one thing the adaptive recipe decides.
AUTOML = ["detection.anchor_scale=4.0", "detection.scale_min=0.1", "detection.scale_max=2.0",
          "optimizer.name=sgd", "optimizer.lr_per_256=0.32", "train.batch_size=16",
          "model.bn_momentum=0.99", "train.ema_decay=0.999", "train.weight_decay=4e-5",
          "train.weight_decay_mode=l2", "optimizer.warmup_epochs=1.0", "train.image_size=256"]
VARIANTS = {
    "recipe": [],
    "automl_at_256px": AUTOML,
    "sgd_automl_rate": ["optimizer.name=sgd", "optimizer.lr_per_256=0.32",
                        "train.weight_decay=4e-5", "train.weight_decay_mode=l2"],
    "jitter_0.1_2.0": ["detection.scale_min=0.1", "detection.scale_max=2.0"],
    "no_jitter": ["detection.scale_min=1.0", "detection.scale_max=1.0"],
    "no_bn_recalibration": ["detection.bn_recalibration_images=0"],
    "no_unjittered_end": ["detection.final_unjittered_share=0.0"],
    "unjittered_last_40pct": ["detection.final_unjittered_share=0.4"],
    "size_256": ["train.image_size=256"],
    "size_160_jitter": ["train.image_size=160"],  # 1.25 x the pictures: rescaled in eval too
    "anchor_scale_4": ["detection.anchor_scale=4.0"],
    "bn_momentum_0.99": ["model.bn_momentum=0.99"],
    "no_ema": ["train.ema_decay=0.0"],
    "row_efficientdet_demo": ["model.name=efficientdet-demo"],
    # AdamW at 1e-3 and 1e-2 for 16 images, at batch 8 (the recipe's 3e-3: lr_per_256 0.067882)
    "adamw_1e-3": ["optimizer.lr_per_256=0.022627"],
    "adamw_1e-2": ["optimizer.lr_per_256=0.226274"],
    "batch_16": ["train.batch_size=16"],
}

flags.DEFINE_string("out", smalldetection.results("small_detection_ablation.jsonl"),
                    "JSON lines of finished runs (appended, resumed; the default is the "
                    "repository's record, which the README's table reads).")
flags.DEFINE_list("variants", list(VARIANTS), "Which variants to run.")
flags.DEFINE_list("sets", list(SETS), "Which sets to run.")
flags.DEFINE_list("seeds", ["0"], "Seeds: each pair runs once per seed.")
flags.DEFINE_integer("epochs", 50, "Epochs of every run (what the user sets).")
flags.DEFINE_integer("train_images", 72, "Training pictures per set.")
flags.DEFINE_integer("eval_images", 24, "Validation pictures per set.")
flags.DEFINE_multi_string("extra", [], "KEY=VALUE overrides added to every variant.")
FLAGS = flags.FLAGS


def markdown(done, variants, sets):
    lines = ["| variant | " + " | ".join(f"{name} AP (AP50)" for name in sets) + " |",
             "|---|" + "---|" * len(sets)]
    for variant in variants:
        cells = []
        for name in sets:
            rows = [row for key, row in done.items() if key[:2] == (variant, name)]
            cells.append(" / ".join(f"{100 * r['AP']:.1f} ({100 * r['AP50']:.1f})"
                                    for r in rows) or "-")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    unknown = sorted(set(FLAGS.variants) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    done = smalldetection.finished(FLAGS.out, lambda row: (row["variant"], row["set"],
                                                          row["seed"]))
    with tempfile.TemporaryDirectory() as data_root:
        for name in FLAGS.sets:
            paths = smalldetection.write_set(name, f"{data_root}/{name}",
                                             FLAGS.train_images, FLAGS.eval_images)
            for variant in FLAGS.variants:
                for seed in (int(s) for s in FLAGS.seeds):
                    if (variant, name, seed) in done:
                        continue
                    result = smalldetection.ours(paths, FLAGS.epochs, seed,
                                                 VARIANTS[variant] + FLAGS.extra,
                                                 random_flip=smalldetection.flips(name))
                    row = {"variant": variant, "set": name, "seed": seed, **result}
                    done[(variant, name, seed)] = row
                    smalldetection.append(FLAGS.out, row)
                    print(f"{variant} on {name} (seed {seed}): AP {100 * result['AP']:.1f} "
                          f"AP50 {100 * result['AP50']:.1f} in {result['seconds']:.0f} s",
                          flush=True)
    print(markdown(done, FLAGS.variants, FLAGS.sets))
    print(json.dumps({f"{v}/{s}/{seed}": {k: round(row[k], 4) for k in ("AP", "AP50", "seconds")}
                      for (v, s, seed), row in sorted(done.items())}))


if __name__ == "__main__":
    app.run(main)
