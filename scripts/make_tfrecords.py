"""Turns an image folder (one subfolder per class) into sharded ImageNet-format TFRecords.

    python scripts/make_tfrecords.py --input=photos/ --output=gs://bucket/photos-tfrecords \
        --eval_percent=10 --train_shards=16 --eval_shards=2

Writes train-*.tfrecord, eval-*.tfrecord and labels.txt; images TensorFlow cannot decode are
skipped and listed in the summary. Train on the result with the TFRecord source:
data.source=tfrecord, data.train_pattern=OUTPUT/train-*, data.eval_pattern=OUTPUT/eval-*.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from efficientnet_tf.data import tfrecords  # noqa: E402

flags.DEFINE_string("input", None, "Image folder: INPUT/CLASS_NAME/IMAGE.", required=True)
flags.DEFINE_string("output", None, "Directory for the shards (local or gs://).", required=True)
flags.DEFINE_integer("eval_percent", 10, "Share of the images (by a stable hash) for eval.")
flags.DEFINE_integer("train_shards", 0, "Train shards (0: about 1,000 images per shard).")
flags.DEFINE_integer("eval_shards", 0, "Eval shards (0: about 1,000 images per shard).")
flags.DEFINE_integer("label_offset", 1, "Added to the 0-based class index (1 as ImageNet).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    summary = tfrecords.folder_to_tfrecords(
        FLAGS.input, FLAGS.output, eval_percent=FLAGS.eval_percent,
        shards={"train": FLAGS.train_shards, "eval": FLAGS.eval_shards},
        label_offset=FLAGS.label_offset,
        progress=lambda total: tqdm(total=total, unit="img", desc="writing"))
    print(summary)


if __name__ == "__main__":
    app.run(main)
