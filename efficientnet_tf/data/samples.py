"""Small offline image datasets cut from photos that ship with scikit-image and scikit-learn.

What a user's own photo folder looks like, without a download: a few hundred to a thousand
images of one size per class folder, and a validation folder cut from regions of the photos that
no training image overlaps (each photo is split along its long side, 70% for training, 25% for
validation, a 5% gap between), so validation measures what the model learnt about the class,
not the memorised pixels of a training crop.

  photos    10 classes, one per colour photo (scikit-image's astronaut, chelsea, coffee, rocket,
            stereo motorcycle, Hubble deep field, immunohistochemistry, retina; scikit-learn's
            china and flower), random square patches resized to 96 px: objects, colours, scales.
  textures  6 grayscale textures (brick, grass, gravel, moon surface, cells, printed page),
            64-px patches: no object, all texture, no colour.
  digits    scikit-learn's 1,797 handwritten digit scans at 32 px, the first 1,500 for training
            and the last 297 (other writers' hands) for validation.

    python -m efficientnet_tf.data.samples OUTPUT_DIR [photos|textures|digits]

Each writer makes OUTPUT_DIR/train/CLASS/*.ext and OUTPUT_DIR/validation/CLASS/*.ext and returns
(train root, validation root); a second call with the same arguments reuses the files.
"""

import io
import sys

import numpy as np
import tensorflow as tf

TRAIN_SHARE, GAP_SHARE = 0.70, 0.05  # of each photo's long side; validation gets the last 25%


def _photos():
    import skimage.data
    from sklearn.datasets import load_sample_image

    return {
        "astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(), "rocket": skimage.data.rocket(),
        "motorcycle": skimage.data.stereo_motorcycle()[0],
        "hubble": skimage.data.hubble_deep_field(),
        "histology": skimage.data.immunohistochemistry(), "retina": skimage.data.retina(),
        "china": load_sample_image("china.jpg"), "flower": load_sample_image("flower.jpg"),
    }


def _textures():
    import skimage.data

    return {"brick": skimage.data.brick(), "grass": skimage.data.grass(),
            "gravel": skimage.data.gravel(), "moon": skimage.data.moon(),
            "cells": skimage.data.cell(), "page": skimage.data.page()}


def _regions(image):
    """(train region, validation region) of a photo, split along its long side."""
    long_axis = 0 if image.shape[0] > image.shape[1] else 1
    length = image.shape[long_axis]
    train_end = int(length * TRAIN_SHARE)
    eval_start = int(length * (TRAIN_SHARE + GAP_SHARE))
    if long_axis == 0:
        return image[:train_end], image[eval_start:]
    return image[:, :train_end], image[:, eval_start:]


def _patches(region, count, size, side_range, short_side, rng):
    """`count` square patches of a side drawn from side_range x the photo's short side (at most
    the region's), resized to size x size."""
    from PIL import Image

    height, width = region.shape[:2]
    patches = []
    for _ in range(count):
        side = int(rng.uniform(*side_range) * short_side)
        side = max(8, min(side, height, width))
        top, left = rng.randint(0, height - side + 1), rng.randint(0, width - side + 1)
        crop = Image.fromarray(region[top:top + side, left:left + side])
        patches.append(np.asarray(crop.resize((size, size), Image.BICUBIC)))
    return patches


def _encode(pixels, image_format):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **(
        {"quality": 90} if image_format == "JPEG" else {}))
    return buffer.getvalue()


def _complete(root, counts):
    """Whether ROOT holds every file a previous call wrote (then it is reused)."""
    for split, per_class in counts.items():
        for name, count in per_class.items():
            folder = f"{root}/{split}/{name}"
            if not tf.io.gfile.isdir(folder) or len(tf.io.gfile.listdir(folder)) != count:
                return False
    return True


def _write_split_patches(root, images, size, train_per_class, eval_per_class, side_range, seed,
                         image_format, extension):
    root = root.rstrip("/")
    counts = {"train": {name: train_per_class for name in images},
              "validation": {name: eval_per_class for name in images}}
    if _complete(root, counts):
        return f"{root}/train", f"{root}/validation"
    rng = np.random.RandomState(seed)
    for name, image in images.items():
        for split, region, count in zip(("train", "validation"), _regions(image),
                                        (train_per_class, eval_per_class)):
            tf.io.gfile.makedirs(f"{root}/{split}/{name}")
            for index, patch in enumerate(
                    _patches(region, count, size, side_range, min(image.shape[:2]), rng)):
                with tf.io.gfile.GFile(f"{root}/{split}/{name}/{index:04d}.{extension}",
                                       "wb") as stream:
                    stream.write(_encode(patch, image_format))
    return f"{root}/train", f"{root}/validation"


def write_photos(root, size=96, train_per_class=120, eval_per_class=40, seed=0):
    """10 classes of colour-photo patches (JPEG, `size` px): 1,200 train, 400 validation."""
    return _write_split_patches(root, _photos(), size, train_per_class, eval_per_class,
                                (0.15, 0.40), seed, "JPEG", "jpg")


def write_textures(root, size=64, train_per_class=80, eval_per_class=30, seed=1):
    """6 classes of grayscale texture patches (PNG, `size` px): 480 train, 180 validation."""
    return _write_split_patches(root, _textures(), size, train_per_class, eval_per_class,
                                (0.12, 0.30), seed, "PNG", "png")


def write_digits(root, size=32, train_count=1500):
    """scikit-learn's digits (PNG, `size` px): the first `train_count` scans for training, the
    rest for validation."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = root.rstrip("/")
    digits = load_digits()
    labels = [str(label) for label in digits.target]
    counts = {"train": {}, "validation": {}}
    for index, label in enumerate(labels):
        split = counts["train" if index < train_count else "validation"]
        split[label] = split.get(label, 0) + 1
    if _complete(root, counts):
        return f"{root}/train", f"{root}/validation"
    for index, (image, label) in enumerate(zip(digits.images, labels)):
        split = "train" if index < train_count else "validation"
        pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)  # values are 0..16
        pixels = np.asarray(Image.fromarray(pixels, mode="L").resize((size, size), Image.BICUBIC))
        tf.io.gfile.makedirs(f"{root}/{split}/{label}")
        with tf.io.gfile.GFile(f"{root}/{split}/{label}/{index:04d}.png", "wb") as stream:
            stream.write(_encode(pixels, "PNG"))
    return f"{root}/train", f"{root}/validation"


WRITERS = {"photos": write_photos, "textures": write_textures, "digits": write_digits}


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] not in WRITERS):
        sys.exit(f"usage: python -m efficientnet_tf.data.samples OUTPUT_DIR [{'|'.join(WRITERS)}]")
    for dataset in sys.argv[2:] or list(WRITERS):
        train, validation = WRITERS[dataset](f"{sys.argv[1].rstrip('/')}/{dataset}")
        print(f"{dataset}: {train} and {validation}")
