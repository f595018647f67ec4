"""tasks/classification/inputs.py: train and eval batches, seeds, dtypes, mixing, the cache."""


import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.data import augment, mixing, sources, stream, tfrecords
from efficientnet_tf.tasks.classification import inputs as inputs_lib
from imagedata import real_labels, train_settings

def test_training_batches_have_static_shapes_and_one_hot_labels(image_folder):
    source = sources.ImageFolderSource(str(image_folder), eval_percent=20)
    dataset = inputs_lib.train_dataset(source, train_settings(augmenter=augment.RandAugment(2, 15)))
    image_spec, label_spec = dataset.element_spec
    assert image_spec.shape == (4, 32, 32, 3) and image_spec.dtype == tf.float32
    assert label_spec.shape == (4, 3) and label_spec.dtype == tf.float32
    images, labels = next(iter(dataset))
    assert 0.0 <= images.numpy().min() and images.numpy().max() <= 255.0
    np.testing.assert_array_equal(labels.numpy().sum(axis=1), 1.0)


def test_bfloat16_and_uint8_outputs(image_folder):
    source = sources.ImageFolderSource(str(image_folder))
    for dtype in (tf.bfloat16, tf.uint8):
        images, _ = next(iter(inputs_lib.train_dataset(source, train_settings(dtype=dtype))))
        assert images.dtype == dtype
    with pytest.raises(ValueError, match="use a float dtype"):
        inputs_lib.train_dataset(source, train_settings(dtype=tf.uint8, mixing=mixing.Mixing(0.2)))


def test_seeded_pipelines_repeat_and_unseeded_differ(image_folder):
    source = sources.ImageFolderSource(str(image_folder))

    def first_batches(**overrides):
        dataset = inputs_lib.train_dataset(source, train_settings(**overrides))
        return [images.numpy() for images, _ in dataset.take(3)]

    kwargs = dict(augmenter=augment.RandAugment(2, 10), mixing=mixing.Mixing(0.4, 0.4))
    first, again = first_batches(**kwargs), first_batches(**kwargs)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = first_batches(seed=2)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_mixing_in_the_pipeline_gives_soft_labels(image_folder):
    source = sources.ImageFolderSource(str(image_folder))
    dataset = inputs_lib.train_dataset(source,
                                       train_settings(batch_size=8, mixing=mixing.Mixing(1.0)))
    labels = np.concatenate([labels.numpy() for _, labels in dataset.take(4)])
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert ((labels > 0.01) & (labels < 0.99)).any()


def test_eval_sees_every_example_once_in_padded_batches(image_folder):
    source = sources.ImageFolderSource(str(image_folder), eval_percent=30)
    dataset = inputs_lib.eval_dataset(source, 40, 4, 3)
    assert dataset.element_spec[0].shape == (4, 40, 40, 3)
    labels = real_labels(dataset)
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
        for _ in inputs_lib.eval_dataset(too_few, 32, 4, 2, split="train"):
            pass


def test_cached_images_are_decoded_once_for_every_epoch_and_stage(messy_folder):
    """cache=True: the files are decoded on the first pass only, bad ones skipped and counted
    once, and a later stage (another size) starts from the same decoded images."""
    source = sources.ImageFolderSource(str(messy_folder), eval_root=str(messy_folder))
    counter = stream.DecodeCounter()
    decoded = inputs_lib.decoded_images(source, counter=counter, deterministic=True)
    for size in (24, 40):  # two stages, three epochs each (9 good images, batches of 3)
        stage = train_settings(image_size=size, batch_size=3, num_classes=2, cache=True)
        dataset = inputs_lib.train_dataset(source, stage, counter=counter, decoded=decoded)
        images = [images.numpy() for images, _ in dataset.take(9)]
        assert images[0].shape == (3, size, size, 3)
        assert (counter.tried, counter.skipped) == (12, 3)
    uncached = inputs_lib.train_dataset(source, train_settings(image_size=24, batch_size=3,
                                                       num_classes=2, seed=5))
    cached = inputs_lib.train_dataset(source, train_settings(image_size=24, batch_size=3,
                                                             num_classes=2, seed=5, cache=True))
    labels = [np.concatenate([labels.numpy() for _, labels in dataset.take(3)]).sum(axis=0)
              for dataset in (uncached, cached)]
    np.testing.assert_array_equal(labels[0], labels[1])  # one epoch of the same 9 images
