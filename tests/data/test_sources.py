"""data/sources.py: folders, TFRecords and TFDS read per host, holdouts, bad folders, ram://."""

import os

import pytest
import tensorflow as tf

from efficientnet_tf.data import sources, tfrecords
from efficientnet_tf.tasks.classification import inputs as inputs_lib
from efficientnet_tf.data import labels as labels_lib
from imagedata import real_labels, train_settings, write_folder

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


def test_a_folder_of_one_class_is_an_error_naming_it(tmp_path):
    """A classifier of one class reports 100% and learns nothing (issue: first day)."""
    one = write_folder(tmp_path / "one", per_class=3, classes=("coffee",))
    with pytest.raises(ValueError, match=r"has one class, 'coffee': a classifier needs at "
                                         r"least two .*/cats/\*.jpg"):
        sources.ImageFolderSource(str(one))
    # Two classes, one of them dropped for having no images, leave one: the same error.
    (one / "tea").mkdir()
    with pytest.raises(ValueError, match="has one class, 'coffee'"):
        sources.ImageFolderSource(str(one), empty_classes="drop")


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
        images, labels = next(iter(inputs_lib.train_dataset(source, train_settings())))
        assert images.shape == (4, 32, 32, 3)
        assert len(real_labels(inputs_lib.eval_dataset(source, 32, 4, 3))) == folder.num_examples(
            "eval")


def test_tfds_source_reads_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        source = sources.TFDSSource("cifar10", splits={"train": "train", "eval": "test"})
        assert source.num_classes == 10 and len(source.class_names) == 10
        images, labels = next(iter(inputs_lib.train_dataset(
            source, train_settings(num_classes=10, image_size=24))))
        assert images.shape == (4, 24, 24, 3) and labels.shape == (4, 10)
        assert len(real_labels(inputs_lib.eval_dataset(source, 24, 5, 10))) == 12
