"""A user's own few boxes: our detect_folder recipe vs keras-hub's RetinaNet, on real pixels.

    python scripts/bench_small_detection.py [--sets=sky,coins,digits] [--seeds=0,1,2]

For each small set of scripts/smalldetection.py (72 training and 24 validation pictures of
128 px, validation from regions training never sees):

  ours   `efficientnet-tf train --config=experiments/detect_folder.py:efficientdet-d0` with the
         set's COCO-JSON folders and the epochs, what a user types; the recipe decides the rest
         from the boxes (tasks/detection/adapt.py), through the same trainer as the CLI.
  peer   keras-hub's RetinaNetObjectDetector as keras.io's "Object Detection with KerasHub"
         guide trains one in its custom-training section: a ResNet-50 image encoder (here
         built from its config with random weights: nothing is downloaded), RetinaNetBackbone
         (P3-P5), pixels scaled to [0, 1], boxes padded to 100 per image, Adam(1e-3) with a
         summed MAE box loss and the detector's focal loss, model.fit. Added to the guide:
         horizontal flips where the set allows them and a shuffle each epoch, as a user on a
         small folder would; keras-hub's NMS keeps detections above 0.05 (not 0.5), up to 100
         per image, since COCO AP ranks them all.

Both train at our recipe's input size (128 px, the pictures' own; 256 for sky's tiny objects)
for the same epochs and batch (8), and are scored by the same pycocotools evaluation
(tasks/detection/metric.py) of the detections in the pictures' own pixels. Wall time covers
building, training and predicting. Each (set, seed, side) is one JSON line in --out, so a killed
run resumes; by default --out is docs/results/small_detection_bench.jsonl, the runs the README's
table reports (delete a line to run it again). The last line printed is one JSON object:
per-set means, `min_ap_gain` (ours - peer on the worst set, a fraction), `mean_ap_gain` and
`time_ratio` (our total time / the peer's).
"""

import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import smalldetection  # noqa: E402
from efficientnet_tf.tasks.detection.metric import CocoEvaluator  # noqa: E402

flags.DEFINE_list("sets", list(smalldetection.SETS), "Which sets.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: each set runs once per seed and side.")
flags.DEFINE_integer("epochs", 50, "Epochs of both sides.")
flags.DEFINE_integer("train_images", 72, "Training pictures per set.")
flags.DEFINE_integer("eval_images", 24, "Validation pictures per set.")
flags.DEFINE_integer("batch", 8, "The peer's batch (our recipe decides 8 for 72 pictures).")
flags.DEFINE_enum("peer_depth", "50", ["18", "50"], "The peer's ResNet (the guide's is 50; 18 "
                  "for smoke runs).")
flags.DEFINE_string("out", smalldetection.results("small_detection_bench.jsonl"),
                    "JSON lines of finished runs (appended, resumed; the default is the "
                    "repository's record, which the README's table reads).")
flags.DEFINE_multi_string("extra", [], "KEY=VALUE overrides of our recipe (smoke runs).")
FLAGS = flags.FLAGS

MAX_BOXES = 100
RESNETS = {  # keras-hub ResNetBackbone arguments of the ResNet v1 rows
    "50": dict(stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
               block_type="bottleneck_block"),
    "18": dict(stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[2, 2, 2, 2],
               block_type="basic_block"),
}


def read_split(annotations, images_dir):
    """(image entries, {image id: [(y0, x0, y1, x1, class index)]}, COCO ground truth with
    0-based class indices as category ids, as metric.CocoEvaluator takes it)."""
    with open(annotations) as stream:
        content = json.load(stream)
    index = {category: i for i, category in enumerate(sorted(c["id"] for c in
                                                              content["categories"]))}
    boxes = {image["id"]: [] for image in content["images"]}
    for a in content["annotations"]:
        x, y, w, h = a["bbox"]
        boxes[a["image_id"]].append((y, x, y + h, x + w, index[a["category_id"]]))
    truth = {"images": content["images"],
             "annotations": [dict(a, category_id=index[a["category_id"]])
                             for a in content["annotations"]],
             "categories": [dict(c, id=index[c["id"]]) for c in content["categories"]]}
    for image in content["images"]:
        image["path"] = os.path.join(images_dir, image["file_name"])
    return content["images"], boxes, truth


def load(path):
    return tf.cast(tf.io.decode_image(tf.io.read_file(path), channels=3,
                                      expand_animations=False), tf.float32)


def peer_train_data(images, boxes, size, batch, flip, seed):
    """The guide's input pipeline: letterboxed to size (Resizing with pad_to_aspect_ratio,
    boxes moved with the pixels), flipped where allowed, boxes padded to MAX_BOXES."""
    rows = [boxes[image["id"]] or [(0, 0, 0, 0, -1)] for image in images]
    data = {"path": [image["path"] for image in images],
            "boxes": tf.ragged.constant([[r[:4] for r in row] for row in rows], tf.float32,
                                        inner_shape=(4,)),
            "labels": tf.ragged.constant([[r[4] for r in row] for row in rows], tf.float32)}
    resize = keras.layers.Resizing(size, size, pad_to_aspect_ratio=True,
                                   bounding_box_format="yxyx")
    mirror = keras.layers.RandomFlip("horizontal", bounding_box_format="yxyx", seed=seed)
    pad = keras.layers.MaxNumBoundingBoxes(MAX_BOXES, bounding_box_format="yxyx")

    def decode(row):
        return {"images": load(row["path"]),
                "bounding_boxes": {"boxes": row["boxes"], "labels": row["labels"]}}

    dataset = tf.data.Dataset.from_tensor_slices(data).shuffle(len(images), seed=seed)
    dataset = dataset.map(decode).map(resize)
    if flip:
        dataset = dataset.map(lambda row: mirror(row, training=True))
    dataset = dataset.map(pad).batch(batch, drop_remainder=True)
    return dataset.map(lambda row: (row["images"], row["bounding_boxes"])).prefetch(2)


def peer_model(num_classes, depth):
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_strides=[1, 2, 2, 2],
        use_pre_activation=False, **RESNETS[depth])
    model = keras_hub.models.RetinaNetObjectDetector(
        backbone=keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3,
                                                    max_level=5, use_p5=True),
        num_classes=num_classes, bounding_box_format="yxyx", use_prediction_head_norm=True,
        preprocessor=keras_hub.models.RetinaNetObjectDetectorPreprocessor(
            image_converter=keras_hub.layers.RetinaNetImageConverter(scale=1 / 255)),
        prediction_decoder=keras_hub.layers.NonMaxSuppression(
            bounding_box_format="yxyx", from_logits=True, iou_threshold=0.5,
            confidence_threshold=0.05, max_detections=MAX_BOXES))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  box_loss=keras.losses.MeanAbsoluteError(reduction="sum"))
    return model


def peer(paths, size, epochs, seed, flip):
    """COCO AP, AP50 and wall seconds of keras-hub's RetinaNet trained as the guide does."""
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    images, boxes, truth = read_split(*paths["train"])
    model = peer_model(len(truth["categories"]), FLAGS.peer_depth)
    model.fit(peer_train_data(images, boxes, size, FLAGS.batch, flip, seed), epochs=epochs,
              verbose=0)
    images, _, truth = read_split(*paths["eval"])
    resize = keras.layers.Resizing(size, size, pad_to_aspect_ratio=True)
    pixels = tf.stack([resize(load(image["path"])) for image in images])
    found = model.predict(pixels, batch_size=FLAGS.batch, verbose=0)
    evaluator = CocoEvaluator(truth)
    for i, image in enumerate(images):
        count = int(found["num_detections"][i])
        height, width = image["height"], image["width"]
        ratio = min(size / height, size / width)  # Resizing's letterbox, undone
        top, left = (size - height * ratio) // 2, (size - width * ratio) // 2
        y0, x0, y1, x1 = np.asarray(found["boxes"][i, :count], np.float64).T
        y0, y1 = (np.clip((v - top) / ratio, 0, height) for v in (y0, y1))
        x0, x1 = (np.clip((v - left) / ratio, 0, width) for v in (x0, x1))
        rows = np.stack([np.full(count, image["id"]), x0, y0, x1 - x0, y1 - y0,
                         found["confidence"][i, :count], found["labels"][i, :count]], axis=1)
        evaluator.update(rows[(rows[:, 3] > 0) & (rows[:, 4] > 0)])
    metrics = evaluator.finish()
    return {"AP": metrics["AP"], "AP50": metrics["AP50"],
            "seconds": time.perf_counter() - start}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    done = smalldetection.finished(FLAGS.out, lambda row: (row["set"], row["seed"], row["side"]))
    seeds = [int(seed) for seed in FLAGS.seeds]
    with tempfile.TemporaryDirectory() as data_root:
        for name in FLAGS.sets:
            paths = smalldetection.write_set(name, f"{data_root}/{name}", FLAGS.train_images,
                                             FLAGS.eval_images)
            flip = smalldetection.flips(name)
            for seed in seeds:
                if (name, seed, "ours") not in done:
                    result = smalldetection.ours(paths, FLAGS.epochs, seed, FLAGS.extra, flip)
                    done[(name, seed, "ours")] = row = {"set": name, "seed": seed,
                                                        "side": "ours", **result}
                    smalldetection.append(FLAGS.out, row)
                if (name, seed, "peer") not in done:
                    size = done[(name, seed, "ours")]["image_size"]
                    result = peer(paths, size, FLAGS.epochs, seed, flip)
                    done[(name, seed, "peer")] = row = {"set": name, "seed": seed,
                                                        "side": "peer", "image_size": size,
                                                        **result}
                    smalldetection.append(FLAGS.out, row)
                print(f"{name} seed {seed}: " + "; ".join(
                    f"{side} AP {100 * done[(name, seed, side)]['AP']:.1f} AP50 "
                    f"{100 * done[(name, seed, side)]['AP50']:.1f} in "
                    f"{done[(name, seed, side)]['seconds']:.0f} s" for side in ("ours", "peer")),
                      flush=True)
    mean = {(name, side, key): statistics.mean(done[(name, seed, side)][key] for seed in seeds)
            for name in FLAGS.sets for side in ("ours", "peer")
            for key in ("AP", "AP50", "seconds")}
    print("| set | ours AP (AP50) | keras-hub RetinaNet AP (AP50) | ours s | peer s |\n"
          "|---|---|---|---|---|")
    for name in FLAGS.sets:
        print(f"| {name} | {100 * mean[(name, 'ours', 'AP')]:.1f} "
              f"({100 * mean[(name, 'ours', 'AP50')]:.1f}) | "
              f"{100 * mean[(name, 'peer', 'AP')]:.1f} ({100 * mean[(name, 'peer', 'AP50')]:.1f}) "
              f"| {mean[(name, 'ours', 'seconds')]:.0f} | {mean[(name, 'peer', 'seconds')]:.0f} |")
    gains = [mean[(name, "ours", "AP")] - mean[(name, "peer", "AP")] for name in FLAGS.sets]
    summary = {name: {f"{side}_{key}": round(mean[(name, side, key)], 4)
                      for side in ("ours", "peer") for key in ("AP", "AP50", "seconds")}
               for name in FLAGS.sets}
    summary.update(
        seeds=seeds, epochs=FLAGS.epochs, min_ap_gain=round(min(gains), 4),
        mean_ap_gain=round(statistics.mean(gains), 4),
        time_ratio=round(sum(mean[(n, "ours", "seconds")] for n in FLAGS.sets)
                         / sum(mean[(n, "peer", "seconds")] for n in FLAGS.sets), 3))
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
