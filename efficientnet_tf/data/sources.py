"""Where images come from: ImageNet-format TFRecords, TFDS datasets and image folders.

The ImageNet TFRecord format: docs/reference.md §5.

Every source gives the same elements, still encoded, so that decoding and cropping happen once in
the pipeline: {"image": encoded bytes, "label": int64 label in [0, num_classes) before the range
check, "key": a string naming the file or record, for error messages}. Every path goes through
tf.io.gfile, so `gs://` works.
"""

import dataclasses
import zlib
from typing import Dict, Optional, Sequence

import tensorflow as tf
from absl import logging

from efficientnet_tf.data import labels

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
TRAIN, EVAL = "train", "eval"
AUTOTUNE = tf.data.AUTOTUNE


def check_split(split, available):
    """A ValueError naming `split` and the splits a source has, unless it is one of them."""
    if split not in available:
        raise ValueError(f"unknown split {split!r}; this source has {sorted(available)}")


def shard(dataset, input_context):
    """This host pipeline's share of `dataset` (every num_input_pipelines-th element)."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


@dataclasses.dataclass
class TFRecordSource:
    """Sharded TFRecords in the ImageNet format of tensorflow/tpu's imagenet_to_gcs.py.

    `file_patterns` maps a split ('train', 'eval') to a glob. Labels in the records are
    `label_offset`-based (1 for ImageNet: 1..1000); the source subtracts the offset.
    """

    file_patterns: Dict[str, str]
    num_classes: int
    label_offset: int = 1
    image_feature: str = "image/encoded"
    label_feature: str = "image/class/label"
    class_names: Optional[Sequence[str]] = None
    examples: Optional[Dict[str, int]] = None  # examples per split, where known
    cycle_length: int = 16

    def num_examples(self, split):
        check_split(split, self.file_patterns)
        if not self.examples or not self.examples.get(split):
            raise ValueError(f"the number of {split} examples of {self.file_patterns[split]!r} "
                             "is not known; set data.num_train_examples / num_eval_examples")
        return self.examples[split]

    def files(self, split):
        check_split(split, self.file_patterns)
        return record_files(self.file_patterns[split], split)

    def _parse(self, file_name, index, record):
        features = tf.io.parse_single_example(record, {
            self.image_feature: tf.io.FixedLenFeature([], tf.string),
            self.label_feature: tf.io.FixedLenFeature([], tf.int64)})
        key = tf.strings.join([file_name, tf.strings.as_string(index)], separator=":")
        return {"image": features[self.image_feature],
                "label": features[self.label_feature] - self.label_offset, "key": key}

    def dataset(self, split, input_context=None, shuffle_files=False, seed=None,
                deterministic=True):
        dataset = sharded_records(self.files(split), input_context, shuffle_files, seed,
                                  deterministic, self.cycle_length)
        return dataset.map(self._parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def record_files(pattern, split):
    """The sorted TFRecord files matching `pattern` (an error naming it when none do)."""
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise ValueError(f"no TFRecord files match {pattern!r} (split {split!r})")
    return files


def sharded_records(files, input_context=None, shuffle_files=False, seed=None,
                    deterministic=True, cycle_length=16):
    """(file name, index in the file, serialized record) of TFRecord `files`, this input
    pipeline's share: whole files per host when there are enough of them, else every n-th
    record."""
    dataset = tf.data.Dataset.from_tensor_slices(files)
    pipelines = input_context.num_input_pipelines if input_context else 1
    if pipelines > 1 and len(files) >= pipelines:
        dataset = shard(dataset, input_context)  # whole files per host: no wasted reads
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        lambda name: tf.data.TFRecordDataset(name).enumerate().map(
            lambda index, record: (name, index, record)),
        cycle_length=min(cycle_length, len(files)), num_parallel_calls=AUTOTUNE,
        deterministic=deterministic)
    if pipelines > 1 and len(files) < pipelines:
        dataset = shard(dataset, input_context)
    return dataset


def import_tfds():
    """tensorflow_datasets, an optional dependency (the [tfds] extra)."""
    try:
        import tensorflow_datasets
    except ImportError:
        raise ValueError("data.source='tfds' needs tensorflow-datasets: pip install "
                         "'efficientnet_tf[tfds]'") from None
    return tensorflow_datasets


@dataclasses.dataclass
class TFDSSource:
    """Any TFDS image-classification dataset by name, read from `data_dir` (no download)."""

    name: str
    splits: Dict[str, str] = dataclasses.field(
        default_factory=lambda: {TRAIN: "train", EVAL: "validation"})
    data_dir: Optional[str] = None
    image_feature: str = "image"
    label_feature: str = "label"

    def __post_init__(self):
        tfds = import_tfds()
        self._builder = tfds.builder(self.name, data_dir=self.data_dir)
        label = self._builder.info.features[self.label_feature]
        self.num_classes = label.num_classes
        self.class_names = list(label.names)

    def files(self, split):
        return None

    def num_examples(self, split):
        check_split(split, self.splits)
        return self._builder.info.splits[self.splits[split]].num_examples

    def dataset(self, split, input_context=None, shuffle_files=False, seed=None,
                deterministic=True):
        tfds = import_tfds()
        check_split(split, self.splits)
        read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed,
                                      add_tfds_id=True)
        read_config.options.deterministic = deterministic
        dataset = self._builder.as_dataset(
            split=self.splits[split], shuffle_files=shuffle_files, read_config=read_config,
            decoders={self.image_feature: tfds.decode.SkipDecoding()})
        return dataset.map(lambda example: {
            "image": example[self.image_feature], "label": example[self.label_feature],
            "key": example["tfds_id"]}, num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def is_hidden(name):
    """Whether a folder entry is no class or image but something tools leave behind: hidden
    entries (".ipynb_checkpoints", ".DS_Store", macOS' "._PHOTO.jpg") and private ones
    ("__MACOSX", "_thumbs")."""
    return name.startswith((".", "_"))


EMPTY_CLASSES = ("error", "drop", "keep")


def list_image_folder(root, empty_classes="error"):
    """(class names, [(path, label)]) of a folder with one subfolder of images per class.

    Hidden entries (is_hidden) are neither classes nor images. A class folder without images is
    an error naming it (`empty_classes="error"`): as a class it would add an output that no
    image trains; "drop" leaves it out with a warning, "keep" keeps it (an eval folder may
    lack images of a class)."""
    if empty_classes not in EMPTY_CLASSES:
        raise ValueError(f"empty_classes is {empty_classes!r}; use one of {EMPTY_CLASSES}")
    if not tf.io.gfile.isdir(root):
        raise ValueError(f"image folder {root!r} does not exist or is not a directory")
    root = root.rstrip("/")
    entries = [entry.rstrip("/") for entry in tf.io.gfile.listdir(root)]
    class_names = sorted(entry for entry in entries
                         if not is_hidden(entry) and tf.io.gfile.isdir(f"{root}/{entry}"))
    if not class_names:
        raise ValueError(f"image folder {root!r} has no class subfolders (expected "
                         f"{root}/CLASS_NAME/IMAGE.jpg)")
    files = {name: _image_files(f"{root}/{name}") for name in class_names}
    if not any(files.values()):
        raise ValueError(f"image folder {root!r} has class folders but no images "
                         f"({', '.join(IMAGE_EXTENSIONS)})")
    empty = [name for name in class_names if not files[name]]
    if empty and empty_classes == "error":
        raise ValueError(f"image folder {root!r}: class folder(s) without images: "
                         f"{', '.join(empty)}; add images, remove the folder(s), or set "
                         "data.empty_classes=drop to leave them out")
    if empty and empty_classes == "drop":
        logging.warning("image folder %s: class folder(s) without images left out: %s", root,
                        ", ".join(empty))
        class_names = [name for name in class_names if files[name]]
    examples = [(path, label) for label, name in enumerate(class_names) for path in files[name]]
    return class_names, examples


def _image_files(directory):
    """The image files under `directory` (any depth, hidden entries left out), sorted."""
    found = []
    for parent, _, file_names in tf.io.gfile.walk(directory):
        parts = parent[len(directory):].strip("/").split("/")
        if any(is_hidden(part) for part in parts if part):
            continue
        found.extend(f"{parent.rstrip('/')}/{name}" for name in file_names
                     if not is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


def class_counts(class_names, examples):
    """{class name: number of examples} of (path, label) pairs."""
    counts = dict.fromkeys(class_names, 0)
    for _, label in examples:
        counts[class_names[label]] += 1
    return counts


def holdout(relative_path, eval_percent):
    """Whether an image belongs to the eval split: a stable hash of its path inside the folder
    (CLASS/FILE), the same on every host and run, wherever the folder is."""
    return zlib.crc32(relative_path.encode("utf-8")) % 100 < eval_percent


@dataclasses.dataclass
class ImageFolderSource:
    """A folder with one subfolder per class; `eval_percent` of the files (by a stable hash of the
    path) form the eval split, unless `eval_root` names a folder of its own for it."""

    root: str
    eval_root: Optional[str] = None
    eval_percent: int = 10
    empty_classes: str = "error"  # a class folder without images: list_image_folder

    def __post_init__(self):
        self.class_names, examples = list_image_folder(self.root, self.empty_classes)
        self.num_classes = len(self.class_names)
        if self.num_classes < 2:
            raise ValueError(
                f"image folder {self.root!r} has one class, {self.class_names[0]!r}: a "
                "classifier needs at least two (one subfolder of images per class, e.g. "
                f"{self.root.rstrip('/')}/cats/*.jpg and {self.root.rstrip('/')}/dogs/*.jpg)")
        if self.eval_root:
            # An eval folder may miss images of a class; a class that training left out (no
            # images) may be missing from it, or be there without images.
            eval_names, eval_examples = list_image_folder(self.eval_root, "keep")
            counts = class_counts(eval_names, eval_examples)
            kept = [name for name in eval_names if name in self.class_names or counts[name]]
            if kept != self.class_names:
                raise ValueError(f"eval folder {self.eval_root!r} has classes {kept}, the "
                                 f"train folder {self.root!r} has {self.class_names}")
            eval_examples = [(path, self.class_names.index(eval_names[label]))
                             for path, label in eval_examples]
            self._examples = {TRAIN: examples, EVAL: eval_examples}
        else:
            if not 0 < self.eval_percent < 100:
                raise ValueError(f"eval_percent must be in (0, 100), got {self.eval_percent!r}")
            prefix = len(self.root.rstrip("/")) + 1
            held_out = [holdout(path[prefix:], self.eval_percent) for path, _ in examples]
            self._examples = {
                TRAIN: [e for e, held in zip(examples, held_out) if not held],
                EVAL: [e for e, held in zip(examples, held_out) if held]}

    def empty_split_hint(self):
        """What to do about an empty split, for its error message."""
        if self.eval_root:
            return ""
        total = sum(len(examples) for examples in self._examples.values())
        return (f" (a hash of each path holds out data.eval_percent={self.eval_percent}% of the "
                f"{total} images for eval); set data.eval_root to a folder of its own, or "
                "another data.eval_percent")

    def class_counts(self):
        """{split: {class name: images}}: what the run trains and evaluates on, per class."""
        return {split: class_counts(self.class_names, examples)
                for split, examples in self._examples.items()}

    def examples(self, split):
        """[(path, label)] of the split."""
        check_split(split, self._examples)
        return list(self._examples[split])

    def num_examples(self, split):
        return len(self.examples(split))

    def files(self, split):
        return None

    def dataset(self, split, input_context=None, shuffle_files=False, seed=None,
                deterministic=True):
        check_split(split, self._examples)
        examples = self._examples[split]
        if not examples:
            raise ValueError(f"image folder {self.root!r}: the {split} split is empty"
                             + self.empty_split_hint())
        paths, labels = zip(*examples)
        dataset = shard(tf.data.Dataset.from_tensor_slices((list(paths), list(labels))),
                         input_context)
        if shuffle_files:
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        return dataset.map(
            lambda path, label: {"image": tf.io.read_file(path),
                                 "label": tf.cast(label, tf.int64), "key": path},
            num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def from_config(data):
    """The source a `data` config section describes (see efficientnet_tf/train/config.py)."""
    if data.source not in ("folder", "tfrecord", "tfds"):
        raise ValueError(f"unknown data source {data.source!r}; use folder, tfrecord or tfds")
    needed = {"folder": ["root"], "tfrecord": ["train_pattern", "eval_pattern"],
              "tfds": ["tfds_name"]}[data.source]
    missing = [f"data.{key}" for key in needed if not data[key]]
    if missing:
        raise ValueError(f"data.source={data.source!r} needs {', '.join(missing)}")
    if data.source == "folder":
        return ImageFolderSource(data.root, eval_root=data.eval_root or None,
                                 eval_percent=data.eval_percent,
                                 empty_classes=data.empty_classes)
    if data.source == "tfrecord":
        class_names = labels.read_labels(
            data.labels_file or data.train_pattern.rsplit("/", 1)[0])
        if class_names is not None and len(class_names) != data.num_classes:
            raise ValueError(f"data.num_classes is {data.num_classes} but the labels file lists "
                             f"{len(class_names)} classes")
        return TFRecordSource({TRAIN: data.train_pattern, EVAL: data.eval_pattern},
                              num_classes=data.num_classes, label_offset=data.label_offset,
                              class_names=class_names,
                              examples={TRAIN: data.num_train_examples,
                                        EVAL: data.num_eval_examples})
    if data.source == "tfds":
        return TFDSSource(data.tfds_name, splits={TRAIN: data.tfds_train_split,
                                                  EVAL: data.tfds_eval_split},
                          data_dir=data.tfds_data_dir)
    raise ValueError(f"unknown data source {data.source!r}; use folder, tfrecord or tfds")
