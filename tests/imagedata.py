"""Images for tests: real photos shipped with scikit-image, written as class folders; boxes."""

import io
import json

import numpy as np
import skimage.data
import tensorflow as tf
from PIL import Image

PHOTOS = {"astronaut": skimage.data.astronaut, "coffee": skimage.data.coffee,
          "chelsea": skimage.data.chelsea, "rocket": skimage.data.rocket}


def photo(name="astronaut", size=None):
    image = PHOTOS[name]()
    if size:
        image = np.asarray(Image.fromarray(image).resize(size))
    return image


def write_folder(root, per_class=6, classes=("astronaut", "coffee", "chelsea"), size=(96, 72)):
    """root/CLASS/i.jpg: crops of each class's photo, so classes are tellable apart."""
    rng = np.random.RandomState(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        base = photo(name)
        for i in range(per_class):
            top, left = rng.randint(0, base.shape[0] // 4), rng.randint(0, base.shape[1] // 4)
            crop = base[top: top + base.shape[0] * 3 // 4, left: left + base.shape[1] * 3 // 4]
            Image.fromarray(crop).resize(size).save(root / name / f"{i}.jpg", quality=90)
    return root


BOX_COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220)}


def write_coco_split(directory, pictures, categories):
    """DIRECTORY/images/I.png and DIRECTORY/annotations.json of `pictures`: (uint8 pixels,
    [(ymin, xmin, ymax, xmax, category_id), ...]) each; `categories`: {id: name}."""
    tf.io.gfile.makedirs(f"{directory}/images")
    images, annotations = [], []
    for index, (pixels, boxes) in enumerate(pictures):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        with tf.io.gfile.GFile(f"{directory}/images/{index}.png", "wb") as stream:
            stream.write(buffer.getvalue())
        images.append({"id": index + 1, "file_name": f"{index}.png",
                       "width": pixels.shape[1], "height": pixels.shape[0]})
        for ymin, xmin, ymax, xmax, category in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": category,
                                "bbox": [xmin, ymin, xmax - xmin, ymax - ymin],
                                "area": (xmax - xmin) * (ymax - ymin), "iscrowd": 0})
    payload = {"images": images, "annotations": annotations,
               "categories": [{"id": key, "name": name} for key, name in categories.items()]}
    with tf.io.gfile.GFile(f"{directory}/annotations.json", "w") as stream:
        stream.write(json.dumps(payload))


def write_coco_boxes(directory, count, seed):
    """`count` 64 x 48 noise images with 1-2 solid boxes each, and their COCO JSON."""
    rng = np.random.RandomState(seed)
    pictures = []
    for _ in range(count):
        pixels = rng.randint(0, 120, size=(48, 64, 3)).astype("uint8")
        boxes = []
        for _ in range(rng.randint(1, 3)):
            name = list(BOX_COLOURS)[rng.randint(2)]
            x, y = rng.randint(0, 40), rng.randint(0, 28)
            w, h = rng.randint(12, 24), rng.randint(12, 20)
            pixels[y:y + h, x:x + w] = BOX_COLOURS[name]
            boxes.append((y, x, y + h, x + w, 5 if name == "red" else 9))
        pictures.append((pixels, boxes))
    write_coco_split(directory, pictures, {5: "red", 9: "blue"})


def train_settings(**overrides):
    """A classifier's small, seeded, deterministic training pipeline (32 px, batch 4, 3 classes)."""
    from efficientnet_tf.data import MAX_PIXELS, preprocess
    from efficientnet_tf.tasks.classification import inputs
    values = dict(image_size=32, batch_size=4, num_classes=3, crop=preprocess.V1_CROP,
                  resize_method="bilinear", random_flip=True, shuffle_buffer=64, cache=False,
                  max_pixels=MAX_PIXELS, deterministic=True, seed=1)
    values.update(overrides)
    return inputs.TrainSettings(**values)


def real_labels(dataset):
    """The labels of an eval dataset's batches, its padding left out."""
    from efficientnet_tf.tasks.classification import inputs
    labels = np.concatenate([labels.numpy() for _, labels in dataset])
    return labels[labels != inputs.PADDING_LABEL]
