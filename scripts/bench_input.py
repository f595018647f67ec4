"""Input-pipeline throughput: our RandAugment vs keras.layers.RandAugment, and the train pipeline.

    python scripts/bench_input.py

1. RandAugment (2 ops, magnitude 15) on 224x224 uint8 images in tf.data, one core (a private
   tf.data thread pool of one thread), ours vs keras.layers.RandAugment(num_ops=2) per image.
2. The full training pipeline on ImageNet-like JPEG TFRecords (about 500x375, written here from
   scikit-image's photos): read, decode the crop window, random crop, resize to 224, flip,
   RandAugment, cast, batch 32; on 1 and on 2 cores. (Normalization runs inside the model.)
The last line printed is one JSON object with the figures.
"""

import io
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from efficientnet_tf.data import MAX_PIXELS, augment, preprocess, sources  # noqa: E402
from efficientnet_tf.tasks.classification import inputs as inputs_lib  # noqa: E402

flags.DEFINE_integer("images", 600, "Images timed per RandAugment measurement.")
flags.DEFINE_integer("keras_images", 60, "Images timed for the (slow) Keras layer.")
flags.DEFINE_integer("batches", 30, "Batches of 32 timed per pipeline measurement.")
FLAGS = flags.FLAGS


def with_threads(dataset, threads):
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


def images_per_second(dataset, count, warmup):
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    return count / (time.perf_counter() - start)


def randaugment_rates():
    rng = np.random.RandomState(0)
    images = tf.constant(rng.randint(0, 256, (32, 224, 224, 3)).astype("uint8"))
    base = tf.data.Dataset.from_tensor_slices(images).repeat().enumerate()
    ours = augment.RandAugment(num_layers=2, magnitude=15)
    ours_dataset = base.map(
        lambda index, image: ours(image, tf.stack([index, tf.constant(1, tf.int64)])),
                            num_parallel_calls=1)
    layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5)
    keras_dataset = base.map(lambda index, image: layer(image), num_parallel_calls=1)
    ours_rate = images_per_second(with_threads(ours_dataset, 1), FLAGS.images, 50)
    keras_rate = images_per_second(with_threads(keras_dataset, 1), FLAGS.keras_images, 5)
    return ours_rate, keras_rate


def write_imagenet_like_records(directory, count=256):
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(),
              skimage.data.rocket()]
    rng = np.random.RandomState(0)
    path = os.path.join(directory, "train-00000-of-00001")
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(count):
            photo = photos[index % len(photos)]
            top, left = rng.randint(0, 40), rng.randint(0, 40)
            crop = Image.fromarray(photo[top:top + 260, left:left + 350]).resize((500, 375))
            buffer = io.BytesIO()
            crop.save(buffer, format="JPEG", quality=90)
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[buffer.getvalue()])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                    value=[index % 4 + 1]))})).SerializeToString())
    return path


def pipeline_rate(source, threads):
    settings = inputs_lib.TrainSettings(
        image_size=224, batch_size=32, num_classes=4, crop=preprocess.V1_CROP,
        resize_method="bilinear", random_flip=True, shuffle_buffer=256, cache=True,
        max_pixels=MAX_PIXELS, deterministic=False, seed=0,
        augmenter=augment.RandAugment(2, 15))
    dataset = with_threads(inputs_lib.train_dataset(source, settings), threads)
    return 32 * images_per_second(dataset, FLAGS.batches, 3)


def main(argv):
    del argv
    ours, theirs = randaugment_rates()
    with tempfile.TemporaryDirectory() as directory:
        source = sources.TFRecordSource({"train": write_imagenet_like_records(directory)},
                                        num_classes=4)
        one_core = pipeline_rate(source, 1)
        two_cores = pipeline_rate(source, 2)
    result = {
        "randaugment_img_s_per_core": round(ours, 1),
        "keras_randaugment_img_s_per_core": round(theirs, 1),
        "randaugment_speedup": round(ours / theirs, 1),
        "pipeline_img_s_1core": round(one_core, 1),
        "pipeline_img_s_2cores": round(two_cores, 1),
        "image_size": 224, "randaugment": {"num_layers": 2, "magnitude": 15},
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    print(f"RandAugment(2, 15) at 224: ours {result['randaugment_img_s_per_core']} img/s per core, "
          f"keras.layers.RandAugment {result['keras_randaugment_img_s_per_core']} "
          f"({result['randaugment_speedup']}x). Train pipeline at 224: "
          f"{result['pipeline_img_s_1core']} img/s on 1 core, "
          f"{result['pipeline_img_s_2cores']} on 2 cores.")
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
