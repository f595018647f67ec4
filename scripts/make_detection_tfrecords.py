"""Turns COCO JSON annotations and their images into sharded detection TFRecords.

    python scripts/make_detection_tfrecords.py \
        --train_annotations=coco/annotations/instances_train2017.json \
        --train_images=coco/train2017 \
        --eval_annotations=coco/annotations/instances_val2017.json \
        --eval_images=coco/val2017 --output_dir=gs://bucket/coco-tfrecords --shards=256

Writes train-*.tfrecord, eval-*.tfrecord (the TF Object Detection API format that
google/automl efficientdet reads) and labels.txt. Labels are the COCO category ids, as in
automl's records (--class_ids=category_id: class = id - 1, so COCO's ids 1..90 are 90 classes,
10 of them unused, what experiments/coco_det.py and the official COCO checkpoints expect), or
the categories' 0-based position in id order + --label_offset (--class_ids=index: contiguous
1..K for your own K categories). Train with data.source=detection_tfrecord,
data.train_pattern=OUTPUT/train-*, data.eval_pattern=OUTPUT/eval-* and the data.num_classes and
data.label_offset that the last line printed gives, a JSON object with those and the counts.
Unreadable images are skipped and listed.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from efficientnet_tf.data import labels  # noqa: E402
from efficientnet_tf.tasks.detection import convert  # noqa: E402
from efficientnet_tf.tasks.detection.sources import CocoJsonSource  # noqa: E402

flags.DEFINE_string("train_annotations", None, "COCO JSON of the train split.")
flags.DEFINE_string("train_images", None, "Image folder of the train split.")
flags.DEFINE_string("eval_annotations", None, "COCO JSON of the eval split.")
flags.DEFINE_string("eval_images", None, "Image folder of the eval split.")
flags.DEFINE_string("output_dir", None, "Directory for the shards (local or gs://).",
                    required=True)
flags.DEFINE_integer("shards", 0, "Shards per split (0: about 1,000 images per shard).")
flags.DEFINE_enum("class_ids", "category_id", ["category_id", "index"],
                  "category_id: class = COCO category id - 1 (automl's records, 90 classes for "
                  "COCO); index: the categories' position in id order (contiguous).")
flags.DEFINE_integer("label_offset", 1, "Stored label = class + label_offset (1: a COCO id "
                     "with --class_ids=category_id).")
flags.DEFINE_enum("invalid_boxes", "error", ["error", "skip"],
                  "An invalid annotation: stop with an error, or leave it out and count it.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    annotations = {split: FLAGS[f"{split}_annotations"].value for split in ("train", "eval")}
    images = {split: FLAGS[f"{split}_images"].value for split in ("train", "eval")}
    splits = [split for split in annotations if annotations[split] or images[split]]
    if not splits:
        raise app.UsageError("give --train_annotations/--train_images and/or "
                             "--eval_annotations/--eval_images")
    for split in splits:
        if not (annotations[split] and images[split]):
            raise app.UsageError(f"give both --{split}_annotations and --{split}_images")
    # One source for both splits: it checks that their categories (so the labels) agree.
    source = CocoJsonSource({split: annotations[split] for split in splits},
                            {split: images[split] for split in splits},
                            invalid_boxes=FLAGS.invalid_boxes, class_ids=FLAGS.class_ids)
    counts = {"num_classes": source.num_classes, "label_offset": FLAGS.label_offset}
    for split in splits:
        summary = convert.write_split(
            source, split, FLAGS.output_dir, FLAGS.shards, FLAGS.label_offset,
            progress=lambda total, split=split: tqdm(total=total, unit="img", desc=split))
        print(summary)
        counts[split] = {"written": summary.written[split], "skipped_images": len(summary.skipped),
                         "skipped_annotations": source.skipped_annotations[split],
                         "shards": len(summary.files[split])}
    labels.write_labels(f"{FLAGS.output_dir}/{labels.LABELS_FILE}", source.class_names)
    print(json.dumps(counts))


if __name__ == "__main__":
    app.run(main)
