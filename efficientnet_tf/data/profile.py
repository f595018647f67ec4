"""What a dataset looks like before training on it: images, classes, typical image size.

A run whose recipe adapts to its data (experiments/folder.py) reads these figures once, at
planning time: counts from the source, image sizes from the headers of up to `sample` training
images spread over the split (PIL reads a header without decoding the pixels; every read goes
through tf.io.gfile, so gs:// works).
"""

import dataclasses
import io
import statistics
from typing import Optional, Tuple

import tensorflow as tf
from PIL import Image

from efficientnet_tf.data.sources import EVAL, TRAIN


@dataclasses.dataclass(frozen=True)
class DataProfile:
    train_images: int
    eval_images: int
    num_classes: int
    smallest_class: Optional[int]  # training images of the rarest class, where known
    image_size: Tuple[int, int]  # median (height, width) of the sampled training images
    sampled: int

    @property
    def short_side(self):
        return min(self.image_size)

    def describe(self):
        per_class = (f", {self.smallest_class} in the smallest class"
                     if self.smallest_class is not None else "")
        return (f"{self.train_images} training images{per_class}, {self.num_classes} classes, "
                f"{self.eval_images} eval images, median size {self.image_size[1]} x "
                f"{self.image_size[0]} px ({self.sampled} sampled)")


def _header_size(data):
    """(height, width) from an encoded image's header, or None when PIL cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # local: bytes already in memory
            width, height = image.size
    except Exception:  # a bad file is the pipeline's to skip and count
        return None
    return height, width


def _sample_sizes(source, sample):
    """Image sizes of up to `sample` training images, spread over the split."""
    examples = getattr(source, "examples", None)
    sizes = []
    if callable(examples):  # an image folder: read the headers of evenly spaced files
        paths = [path for path, _ in examples(TRAIN)]
        step = max(1, len(paths) // sample)
        for path in paths[::step][:sample]:
            with tf.io.gfile.GFile(path, "rb") as stream:
                size = _header_size(stream.read(1 << 16))
            if size:
                sizes.append(size)
        return sizes
    for element in source.dataset(TRAIN).take(sample):
        size = _header_size(element["image"].numpy())
        if size:
            sizes.append(size)
    return sizes


def profile(source, sample=200):
    """The DataProfile of a source (ImageFolderSource, TFRecordSource, TFDSSource)."""
    sizes = _sample_sizes(source, sample)
    if not sizes:
        raise ValueError("could not read the size of any sampled training image")
    smallest = None
    examples = getattr(source, "examples", None)
    if callable(examples):
        counts = [0] * source.num_classes
        for _, label in examples(TRAIN):
            counts[label] += 1
        smallest = min(counts)
    return DataProfile(
        train_images=source.num_examples(TRAIN), eval_images=source.num_examples(EVAL),
        num_classes=source.num_classes, smallest_class=smallest,
        image_size=(int(statistics.median(h for h, _ in sizes)),
                    int(statistics.median(w for _, w in sizes))),
        sampled=len(sizes))
