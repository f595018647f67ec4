"""data/stream.py: bad images skipped, counted once and named; whole batches for every replica."""

import os

import numpy as np
import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import preprocess, sources, stream
from efficientnet_tf.tasks.classification import inputs as inputs_lib
from imagedata import real_labels, train_settings

def test_messy_folder_goes_through_and_skips_are_counted(messy_folder):
    source = sources.ImageFolderSource(str(messy_folder), eval_percent=50)
    assert source.class_names == ["astronaut", "coffee"]
    total = source.num_examples("train") + source.num_examples("eval")
    assert total == 12  # notes.txt is not an image
    counter = stream.DecodeCounter()
    seen = np.concatenate([
        real_labels(inputs_lib.eval_dataset(source, 32, 4, 2, counter=counter, split=split))
        for split in ("train", "eval")])
    assert len(seen) == 9 and counter.skipped == 3  # corrupt, empty and truncated
    assert counter.tried == 12


def test_each_bad_file_is_counted_once_and_named_with_its_reason(messy_folder, caplog):
    """Three epochs over the uncached files fail on each bad file three times: one file each."""
    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(messy_folder / "coffee" / "big.png")
    source = sources.ImageFolderSource(str(messy_folder), eval_percent=1)
    counter = stream.DecodeCounter()
    train_examples = source.num_examples("train")
    batches = inputs_lib.train_dataset(source, train_settings(batch_size=1, max_pixels=50_000),
                                     counter=counter)
    for _ in batches.take(3 * (train_examples - 4)):
        pass
    names = {os.path.basename(key): reason for key, reason in counter.files.items()}
    assert sorted(names) == ["big.png", "corrupt.jpg", "empty.png", "truncated.jpg"]
    assert counter.skipped == 4 and int(counter.failed.numpy()) >= 8  # 4 files, 2+ passes
    assert names["empty.png"] == "empty file"
    assert names["big.png"] == "the image is 200 x 300 pixels, above the cap of 50000 " \
                               "(data.max_pixels)"
    assert "Unknown image file format" in names["corrupt.jpg"] or "JPEG" in names["corrupt.jpg"]
    assert caplog.text.count("skipped image ") == 4 and "truncated.jpg: " in caplog.text


def test_skip_counts_are_exact_while_the_pipeline_runs(messy_folder):
    """Read mid-stream (the trainer logs them every N steps), the counts are those of the images
    the pipeline has processed so far, which may run ahead of what came out (tf.data prefetches)
    but never count an image twice, a good one as skipped, or below zero."""
    source = sources.ImageFolderSource(str(messy_folder), eval_percent=50)
    counter = stream.DecodeCounter()
    dataset = stream.decode_skipping_bad(
        source.dataset("train").concatenate(source.dataset("eval")),
        lambda example: preprocess.preprocess_eval(example["image"], preprocess.EvalTransform(32)),
        counter,
        deterministic=False)
    emitted = 0
    for _ in dataset:
        emitted += 1
        # One read of each variable (tried - skipped would read `failed` twice, and a skip
        # counted between the two reads would make the decoded count look one short).
        decoded, skipped = int(counter.decoded.numpy()), int(counter.failed.numpy())
        assert emitted <= decoded <= 9 and 0 <= skipped <= 3
    assert (emitted, counter.skipped, counter.tried) == (9, 3, 12)


def test_eval_batches_are_whole_for_every_replica_so_no_example_is_dropped():
    """6 examples in batches of 2 over 2 replicas: 3 batches would leave the second replica
    without a third one, and the distributed dataset would drop examples 4 and 5; padded to 4
    batches, every example arrives (label -1 marks the padding)."""
    from efficientnet_tf.data.stream import whole_batches

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def dataset_fn(context):
        examples = tf.data.Dataset.range(6)
        return whole_batches(examples, tf.data.Dataset.from_tensors(tf.constant(-1, tf.int64)),
                             2, context)

    seen = []
    for batch in strategy.distribute_datasets_from_function(dataset_fn):
        for local in strategy.experimental_local_results(batch):
            seen += local.numpy().tolist()
    assert sorted(x for x in seen if x >= 0) == [0, 1, 2, 3, 4, 5]
    assert len(seen) == 8
