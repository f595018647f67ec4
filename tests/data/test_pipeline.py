"""Sources and pipelines end to end: folders, TFRecords (via make_tfrecords.py), TFDS, ram://."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from efficientnet_tf.data import augment, mixing, pipeline, preprocess, sources, tfrecords
from efficientnet_tf.data import labels as labels_lib
from imagedata import write_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def settings(**overrides):
    values = dict(image_size=32, batch_size=4, num_classes=3, seed=1, deterministic=True,
                  shuffle_buffer=64)
    values.update(overrides)
    return pipeline.TrainSettings(**values)


def count_eval(dataset):
    labels = np.concatenate([labels.numpy() for _, labels in dataset])
    return labels[labels != pipeline.PADDING_LABEL]


def test_messy_folder_goes_through_and_skips_are_counted(messy_folder):
    source = sources.ImageFolderSource(str(messy_folder), eval_percent=50)
    assert source.class_names == ["astronaut", "coffee"]
    total = source.num_examples("train") + source.num_examples("eval")
    assert total == 12  # notes.txt is not an image
    counter = pipeline.DecodeCounter()
    seen = np.concatenate([
        count_eval(pipeline.eval_dataset(source, 32, 4, 2, counter=counter, split=split))
        for split in ("train", "eval")])
    assert len(seen) == 9 and counter.skipped == 3  # corrupt, empty and truncated
    assert counter.tried == 12


def test_each_bad_file_is_counted_once_and_named_with_its_reason(messy_folder, caplog):
    """Three epochs over the uncached files fail on each bad file three times: one file each."""
    Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(messy_folder / "coffee" / "big.png")
    source = sources.ImageFolderSource(str(messy_folder), eval_percent=1)
    counter = pipeline.DecodeCounter()
    train_examples = source.num_examples("train")
    batches = pipeline.train_dataset(source, settings(batch_size=1, max_pixels=50_000),
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
    counter = pipeline.DecodeCounter()
    dataset = pipeline.decode_skipping_bad(
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


def test_training_batches_have_static_shapes_and_one_hot_labels(image_folder):
    source = sources.ImageFolderSource(str(image_folder), eval_percent=20)
    dataset = pipeline.train_dataset(source, settings(augmenter=augment.RandAugment(2, 15)))
    image_spec, label_spec = dataset.element_spec
    assert image_spec.shape == (4, 32, 32, 3) and image_spec.dtype == tf.float32
    assert label_spec.shape == (4, 3) and label_spec.dtype == tf.float32
    images, labels = next(iter(dataset))
    assert 0.0 <= images.numpy().min() and images.numpy().max() <= 255.0
    np.testing.assert_array_equal(labels.numpy().sum(axis=1), 1.0)


def test_bfloat16_and_uint8_outputs(image_folder):
    source = sources.ImageFolderSource(str(image_folder))
    for dtype in (tf.bfloat16, tf.uint8):
        images, _ = next(iter(pipeline.train_dataset(source, settings(dtype=dtype))))
        assert images.dtype == dtype
    with pytest.raises(ValueError, match="use a float dtype"):
        pipeline.train_dataset(source, settings(dtype=tf.uint8, mixing=mixing.Mixing(0.2)))


def test_seeded_pipelines_repeat_and_unseeded_differ(image_folder):
    source = sources.ImageFolderSource(str(image_folder))

    def first_batches(**overrides):
        dataset = pipeline.train_dataset(source, settings(**overrides))
        return [images.numpy() for images, _ in dataset.take(3)]

    kwargs = dict(augmenter=augment.RandAugment(2, 10), mixing=mixing.Mixing(0.4, 0.4))
    first, again = first_batches(**kwargs), first_batches(**kwargs)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = first_batches(seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_mixing_in_the_pipeline_gives_soft_labels(image_folder):
    source = sources.ImageFolderSource(str(image_folder))
    dataset = pipeline.train_dataset(source, settings(batch_size=8, mixing=mixing.Mixing(1.0)))
    labels = np.concatenate([labels.numpy() for _, labels in dataset.take(4)])
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert ((labels > 0.01) & (labels < 0.99)).any()


def test_eval_sees_every_example_once_in_padded_batches(image_folder):
    source = sources.ImageFolderSource(str(image_folder), eval_percent=30)
    dataset = pipeline.eval_dataset(source, 40, 4, 3)
    assert dataset.element_spec[0].shape == (4, 40, 40, 3)
    labels = count_eval(dataset)
    expected = sorted(label for _, label in source.examples("eval"))
    assert sorted(labels.tolist()) == expected


def test_label_outside_the_classes_names_the_record(tmp_path, image_folder):
    summary = tfrecords.folder_to_tfrecords(str(image_folder), str(tmp_path / "records"),
                                            label_offset=1)
    assert summary.written["train"] > 0
    too_few = sources.TFRecordSource({"train": str(tmp_path / "records" / "train-*")},
                                     num_classes=2)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"label outside \[0, 2\) in.*train-00000-of-00001.tfrecord:\d+"):
        for _ in pipeline.eval_dataset(too_few, 32, 4, 2, split="train"):
            pass


def test_make_tfrecords_script_round_trip(tmp_path, messy_folder):
    output = tmp_path / "records"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "make_tfrecords.py"),
         f"--input={messy_folder}", f"--output={output}", "--eval_percent=50",
         "--train_shards=2", "--eval_shards=1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "skipped 3 images" in result.stdout
    assert "1 empty file" in result.stdout and "2 not a decodable image" in result.stdout
    assert labels_lib.read_labels(str(output)) == ["astronaut", "coffee"]
    folder = sources.ImageFolderSource(str(messy_folder), eval_percent=50)
    records = sources.TFRecordSource({"train": str(output / "train-*"),
                                      "eval": str(output / "eval-*")}, num_classes=2)
    assert len(records.files("train")) == 2
    for split in ("train", "eval"):
        from_records = sorted(count_eval(pipeline.eval_dataset(records, 32, 4, 2, split=split)))
        from_folder = count_eval(pipeline.eval_dataset(folder, 32, 4, 2, split=split))
        assert from_records == sorted(from_folder)
    # The images themselves survive the round trip byte for byte.
    example = next(iter(records.dataset("train")))
    key = example["key"].numpy().decode()
    assert key.startswith(str(output / "train-0000")) and example["label"].numpy() in (0, 1)


def test_tfrecord_shards_are_disjoint_per_host(tmp_path, image_folder):
    tfrecords.folder_to_tfrecords(str(image_folder), str(tmp_path / "r"), eval_percent=40,
                                  shards={"train": 4, "eval": 1})
    source = sources.TFRecordSource({"train": str(tmp_path / "r" / "train-*"),
                                     "eval": str(tmp_path / "r" / "eval-*")}, num_classes=3)
    for split in ("train", "eval"):  # 4 files: whole files per host; 1 file: every other record
        keys = []
        for host in range(2):
            context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=host)
            keys.append({e["key"].numpy() for e in source.dataset(split, input_context=context)})
        everything = {e["key"].numpy() for e in source.dataset(split)}
        assert keys[0] and keys[1] and not keys[0] & keys[1]
        assert keys[0] | keys[1] == everything


def test_folder_shards_are_disjoint_per_host(image_folder):
    source = sources.ImageFolderSource(str(image_folder))
    keys = [{e["key"].numpy() for e in source.dataset(
        "train", input_context=tf.distribute.InputContext(2, host))} for host in range(2)]
    assert not keys[0] & keys[1] and len(keys[0] | keys[1]) == source.num_examples("train")


def test_holdout_is_stable_and_folder_errors_are_clear(tmp_path, image_folder):
    split = sources.ImageFolderSource(str(image_folder), eval_percent=30).examples("eval")
    moved = tmp_path / "moved"
    os.rename(image_folder, moved)
    assert [os.path.relpath(p, moved) for p, _ in sources.ImageFolderSource(
        str(moved), eval_percent=30).examples("eval")] == [
        os.path.relpath(p, image_folder) for p, _ in split]
    with pytest.raises(ValueError, match="does not exist"):
        sources.ImageFolderSource(str(tmp_path / "nowhere"))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="has no class subfolders"):
        sources.ImageFolderSource(str(tmp_path / "flat"))
    with pytest.raises(ValueError, match="no TFRecord files match"):
        sources.TFRecordSource({"train": str(tmp_path / "none-*")}, 3).files("train")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        sources.ImageFolderSource(str(moved)).dataset("test")


def test_hidden_entries_are_neither_classes_nor_images(image_folder):
    """A Jupyter checkpoint folder sorted first would have become class 0 and shifted every
    label by one; macOS leaves ._NAME companions and __MACOSX folders."""
    before = sources.ImageFolderSource(str(image_folder))
    good = (image_folder / "coffee" / "0.jpg").read_bytes()
    for hidden in (".ipynb_checkpoints", "__MACOSX", "_thumbs", "coffee/.cache"):
        (image_folder / hidden).mkdir()
        (image_folder / hidden / "0.jpg").write_bytes(good)
    (image_folder / "coffee" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    after = sources.ImageFolderSource(str(image_folder))
    assert after.class_names == before.class_names == ["astronaut", "chelsea", "coffee"]
    assert after.examples("train") == before.examples("train")
    assert after.examples("eval") == before.examples("eval")


def test_an_empty_class_folder_is_an_error_or_dropped(tmp_path, image_folder, caplog):
    (image_folder / "bear").mkdir()
    (image_folder / "bear" / "notes.txt").write_text("no images yet")
    with pytest.raises(ValueError, match=r"class folder\(s\) without images: bear; .*"
                                         "data.empty_classes=drop"):
        sources.ImageFolderSource(str(image_folder))
    dropped = sources.ImageFolderSource(str(image_folder), empty_classes="drop")
    assert dropped.class_names == ["astronaut", "chelsea", "coffee"]
    assert "left out: bear" in caplog.text
    counts = dropped.class_counts()
    assert sum(counts["train"].values()) + sum(counts["eval"].values()) == 18
    assert set(counts["train"]) == set(counts["eval"]) == set(dropped.class_names)
    # An eval folder may lack images of a class, and omit a class training dropped.
    validation = write_folder(tmp_path / "validation", per_class=2,
                              classes=("astronaut", "coffee"))
    (validation / "chelsea").mkdir()
    source = sources.ImageFolderSource(str(image_folder), eval_root=str(validation),
                                       empty_classes="drop")
    assert source.class_counts()["eval"] == {"astronaut": 2, "chelsea": 0, "coffee": 2}
    assert [source.class_names[label] for _, label in source.examples("eval")] == [
        "astronaut", "astronaut", "coffee", "coffee"]


def test_a_ram_filesystem_dataset_works(image_folder):
    """ram:// is a TensorFlow filesystem that open() and os.path cannot see: gs:// stands in."""
    root = "ram://datasets/photos"
    tfrecords.folder_to_tfrecords(str(image_folder), root + "-records", eval_percent=20)
    for directory, _, files in os.walk(image_folder):
        for name in files:
            relative = os.path.relpath(os.path.join(directory, name), image_folder)
            tf.io.gfile.makedirs(f"{root}/{os.path.dirname(relative)}")
            tf.io.gfile.copy(os.path.join(directory, name), f"{root}/{relative}", overwrite=True)
    folder = sources.ImageFolderSource(root, eval_percent=20)
    records = sources.TFRecordSource({"train": root + "-records/train-*",
                                      "eval": root + "-records/eval-*"}, num_classes=3)
    assert labels_lib.read_labels(root + "-records") == folder.class_names
    for source in (folder, records):
        images, labels = next(iter(pipeline.train_dataset(source, settings())))
        assert images.shape == (4, 32, 32, 3)
        assert len(count_eval(pipeline.eval_dataset(source, 32, 4, 3))) == folder.num_examples(
            "eval")


def test_tfds_source_reads_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        source = sources.TFDSSource("cifar10", splits={"train": "train", "eval": "test"})
        assert source.num_classes == 10 and len(source.class_names) == 10
        images, labels = next(iter(pipeline.train_dataset(
            source, settings(num_classes=10, image_size=24))))
        assert images.shape == (4, 24, 24, 3) and labels.shape == (4, 10)
        assert len(count_eval(pipeline.eval_dataset(source, 24, 5, 10))) == 12


def test_cached_images_are_decoded_once_for_every_epoch_and_stage(messy_folder):
    """cache=True: the files are decoded on the first pass only, bad ones skipped and counted
    once, and a later stage (another size) starts from the same decoded images."""
    source = sources.ImageFolderSource(str(messy_folder), eval_root=str(messy_folder))
    counter = pipeline.DecodeCounter()
    decoded = pipeline.decoded_images(source, counter=counter, deterministic=True)
    for size in (24, 40):  # two stages, three epochs each (9 good images, batches of 3)
        stage = settings(image_size=size, batch_size=3, num_classes=2, cache=True)
        dataset = pipeline.train_dataset(source, stage, counter=counter, decoded=decoded)
        images = [images.numpy() for images, _ in dataset.take(9)]
        assert images[0].shape == (3, size, size, 3)
        assert (counter.tried, counter.skipped) == (12, 3)
    uncached = pipeline.train_dataset(source, settings(image_size=24, batch_size=3,
                                                       num_classes=2, seed=5))
    cached = pipeline.train_dataset(source, settings(image_size=24, batch_size=3, num_classes=2,
                                                     seed=5, cache=True))
    labels = [np.concatenate([labels.numpy() for _, labels in dataset.take(3)]).sum(axis=0)
              for dataset in (uncached, cached)]
    np.testing.assert_array_equal(labels[0], labels[1])  # one epoch of the same 9 images


def test_eval_batches_are_whole_for_every_replica_so_no_example_is_dropped():
    """6 examples in batches of 2 over 2 replicas: 3 batches would leave the second replica
    without a third one, and the distributed dataset would drop examples 4 and 5; padded to 4
    batches, every example arrives (label -1 marks the padding)."""
    from efficientnet_tf.data.pipeline import whole_batches

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
