"""Why does a small photo folder learn badly? One setting changed at a time, on three datasets.

    python scripts/ablate_small_data.py --out=ablation.jsonl [--variants=NAME,...]

Each variant is the folder recipe (experiments/folder.py, as scripts/bench_small_data.py runs
it) with a few keys changed; every (variant, dataset) pair is one training run whose held-out
top-1 and wall time are appended to --out as a JSON line, so a killed ablation resumes where it
stopped. `--seeds=0,1,2` (bench_small_data's flag) runs each pair once per seed. At the end the
table (variant x dataset, one top-1 per seed) is printed in markdown.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import bench_small_data as bench  # noqa: E402
from efficientnet_tf.data import samples  # noqa: E402

# name: overrides of the folder recipe (experiments/folder.py, with what it decides from the
# data); each variant puts back one setting of the ImageNet recipe, or varies one of ours.
VARIANTS = {
    "recipe": [],
    "whole_images": ["data.crop=whole"],
    "crops_area_0.5": ["data.crop=v1"],
    "crops_area_0.35": ["data.crop=v1", "data.crop_area_min=0.35"],
    "crops_area_0.05_v2": ["data.crop=v1", "data.crop_area_min=0.05"],
    "pad_crop": ["data.crop=pad"],
    "randaugment_2x6_relative": ["augment.kind=randaugment"],
    "randaugment_2x6_official_pixels": ["augment.kind=randaugment",
                                        "augment.relative_to_size=false"],
    "randaugment_2x10_relative": ["augment.kind=randaugment", "progressive.randaug_min=10",
                                  "progressive.randaug_max=10"],
    "eval_center_crop_padding_32": ["eval.crop_fraction=None"],
    "cosine_schedule": ["optimizer.schedule=cosine"],
    "rmsprop_official": ["optimizer.name=rmsprop", "optimizer.lr_per_256=0.016",
                         "optimizer.epsilon=0.001", "train.weight_decay=1e-5",
                         "train.weight_decay_mode=l2"],
    "adamw_lr_x3": ["optimizer.lr_per_256=0.024"],
    "adamw_lr_x0.3": ["optimizer.lr_per_256=0.0024"],
    "no_label_smoothing": ["train.label_smoothing=0.0"],
    "no_dropout_no_stochastic_depth": ["progressive.dropout_min=0.0",
                                       "progressive.dropout_max=0.0", "model.survival_prob=1.0"],
    "no_ema": ["train.ema_decay=0.0"],
    "ema_0.9999": ["train.ema_decay=0.9999"],
    "bn_momentum_0.9": ["model.bn_momentum=0.9"],
    "weight_decay_1e-5": ["train.weight_decay=1e-5"],
    "fixed_size": ["progressive.num_stages=1"],
}

flags.DEFINE_string("out", "ablation.jsonl", "JSON lines of finished runs (appended, resumed).")
flags.DEFINE_list("variants", list(VARIANTS), "Which variants to run.")
flags.DEFINE_multi_string("extra", [], "KEY=VALUE overrides added to every variant.")
FLAGS = flags.FLAGS


def finished(path):
    done = {}
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as stream:
            for line in stream:
                if line.strip():
                    record = json.loads(line)
                    done[(record["variant"], record["dataset"], record.get("seed", 0))] = record
    return done


def markdown(done, variants, datasets):
    lines = ["| variant | " + " | ".join(datasets) + " | mean |",
             "|---|" + "---|" * (len(datasets) + 1)]
    for variant in variants:
        cells = [[r["top1"] for key, r in done.items() if key[:2] == (variant, dataset)]
                 for dataset in datasets]  # one top-1 per seed
        means = [sum(c) / len(c) for c in cells if c]
        mean = f"{100 * sum(means) / len(means):.1f}" if len(means) == len(datasets) else ""
        lines.append(f"| {variant} | " + " | ".join(
            ", ".join(f"{100 * v:.1f}" for v in c) for c in cells) + f" | {mean} |")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    unknown = sorted(set(FLAGS.variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    done = finished(FLAGS.out)
    runs = [(variant, dataset, int(seed)) for variant in FLAGS.variants
            for dataset in FLAGS.datasets for seed in FLAGS.seeds]
    for variant, dataset, seed in runs:
        if (variant, dataset, seed) in done:
            continue
        epochs = FLAGS.epochs or bench.DATASETS[dataset][1]
        roots = samples.WRITERS[dataset](os.path.join(FLAGS.data_dir, dataset))
        result = bench.ours(*roots, epochs, seed, FLAGS.extra + VARIANTS[variant])
        record = {"variant": variant, "dataset": dataset, "seed": seed, **result}
        print(json.dumps(record), flush=True)
        with tf.io.gfile.GFile(FLAGS.out, "a") as stream:
            stream.write(json.dumps(record) + "\n")
        done[(variant, dataset, seed)] = record
    print(markdown(done, FLAGS.variants, FLAGS.datasets))


if __name__ == "__main__":
    app.run(main)
