"""Detector inference speed: EfficientDet-D0 against its own backbone, in the same run.

    python scripts/bench_detect.py [--model=efficientdet-d0] [--rounds=5]

Builds the detector (90 classes, at its input size) and the same EfficientNet backbone alone
(features only, what the detector runs before its BiFPN and heads), each as one tf.function in
inference mode, and times batch-1 and batch-8 calls, alternating between the two models round by
round so that machine noise hits both alike; the figure per model is the median over rounds.
google/automl's multiply-adds put D0 at 2.55 G and its B0 backbone at 512 px at about 2.0 G
(ratio 1.27): the BiFPN and heads should cost about what their arithmetic says, so the goal is
a detector / backbone time ratio <= 1.5.
The last line printed is one JSON object: d0_img_s_b1, d0_img_s_b8, backbone_img_s_b1,
backbone_img_s_b8, head_overhead_ratio (detector time / backbone time at batch 8), macs_ratio.
"""

import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from efficientnet_tf.models import efficientdet, efficientnet, stats  # noqa: E402
from efficientnet_tf.specs import registry  # noqa: E402

flags.DEFINE_string("model", "efficientdet-d0", "The detection row.")
flags.DEFINE_integer("rounds", 5, "Timing rounds per model and batch size.")
flags.DEFINE_integer("calls", 4, "Calls per round (after warm-up).")
FLAGS = flags.FLAGS


def seconds_per_image(function, images, calls):
    start = time.perf_counter()
    for _ in range(calls):
        outputs = function(images)
    tf.nest.map_structure(np.asarray, outputs)  # wait for the last call
    return (time.perf_counter() - start) / (calls * images.shape[0])


def main(argv):
    del argv
    spec = registry.get(FLAGS.model)
    size = spec.image_size
    detector = efficientdet.build(spec, num_classes=90)
    backbone = efficientnet.build(registry.get(spec.backbone), features_only=True,
                                  input_shape=(size, size, 3))
    models = {"detector": detector, "backbone": backbone}
    functions = {name: tf.function(lambda images, m=model: m(images, training=False))
                 for name, model in models.items()}
    macs = {name: stats.count_macs(model, size) for name, model in models.items()}
    rng = np.random.RandomState(0)
    figures = {}
    for batch in (1, 8):
        images = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)), tf.float32)
        for function in functions.values():
            seconds_per_image(function, images, 1)  # trace and warm up
        timings = {name: [] for name in functions}
        for _ in range(FLAGS.rounds):
            for name, function in functions.items():
                timings[name].append(seconds_per_image(function, images, FLAGS.calls))
        for name, values in timings.items():
            figures[(name, batch)] = statistics.median(values)
            print(f"{name:<9} batch {batch}: {1000 * figures[(name, batch)]:.1f} ms per image "
                  f"({1 / figures[(name, batch)]:.2f} img/s), {macs[name] / 1e9:.2f} GMACs",
                  flush=True)
    ratio = figures[("detector", 8)] / figures[("backbone", 8)]
    print(f"{spec.name} / its backbone: {ratio:.2f}x the time for "
          f"{macs['detector'] / macs['backbone']:.2f}x the multiply-adds (goal <= 1.5x)")
    print(json.dumps({
        "model": spec.name, "image_size": size,
        "d0_img_s_b1": round(1 / figures[("detector", 1)], 3),
        "d0_img_s_b8": round(1 / figures[("detector", 8)], 3),
        "backbone_img_s_b1": round(1 / figures[("backbone", 1)], 3),
        "backbone_img_s_b8": round(1 / figures[("backbone", 8)], 3),
        "head_overhead_ratio": round(ratio, 3),
        "macs_ratio": round(macs["detector"] / macs["backbone"], 3)}))


if __name__ == "__main__":
    app.run(main)
