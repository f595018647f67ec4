"""The experiment settings: every key the trainer reads, with its default.

The defaults are the papers' ImageNet recipe (docs/reference.md §5). A key left None is decided
by the run (the row's value, the task's, the hardware's, or with adapt_to_data the data's); on the
command line "auto" says the same (decided_later).

Experiment files (experiments/*.py) start from `base_config()` and change what their recipe needs;
`--config.section.key=value` overrides any key, and a mistyped key is an error (the ConfigDict is
locked). `placeholder` fields default to None, meaning "the variant's value" (its registry row).
"""

import fnmatch
import math

import ml_collections
from ml_collections.config_dict import placeholder

from efficientnet_tf.data import MAX_PIXELS
from efficientnet_tf.specs import blocks as blocks_lib
from efficientnet_tf.specs import registry

AUGMENTS = ("none", "randaugment", "autoaugment")
PROGRESSIVE = ("none", "paper", "official", "custom")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
CLIP_MODES = ("global", "automl")  # what they mean: train/loop.py, Steps._clip
# What a user may type for "decide it for me" where a key's value is otherwise a word.
AUTO = "auto"


def base_config():
    """The ImageNet recipe of the papers for EfficientNetV2-S; experiments change what differs."""
    config = ml_collections.ConfigDict()
    config.task = "classification"  # what the run learns (efficientnet_tf/tasks)
    config.model = ml_collections.ConfigDict(dict(
        name="efficientnetv2-s",
        dropout_rate=placeholder(float),  # None: the row's; progressive learning ramps it
        survival_prob=placeholder(float),  # None: the row's (0.8)
        bn_momentum=placeholder(float),  # None: the family's (V1 0.99, V2 0.9, TF convention)
        # batch-norm statistics over: none (each replica's batch), all (all replicas), N
        # (groups of N replicas), v1 / v2 (the official codes' TPU rules, distribute.py)
        bn_sync="none",
        # how the [0, 255] images are mapped before the stem: mean_std (ImageNet mean/std),
        # sym128 ((x - 128) / 128), sym255 (x * 2 / 255 - 1); None: what init_from's weights
        # were trained with (an official checkpoint's, a run's), else the row's
        input_scaling=placeholder(str),
    ))
    config.data = ml_collections.ConfigDict(dict(
        source="tfrecord",
        # folder: ROOT/CLASS/IMAGE; eval split = eval_root, or eval_percent of root by a hash
        root="", eval_root="", eval_percent=10,
        # a class folder without images: error, or drop it (with a warning)
        empty_classes="error",
        # tfrecord: ImageNet format (tensorflow/tpu imagenet_to_gcs); 1-based labels
        train_pattern="", eval_pattern="", label_offset=1, num_classes=1000,
        num_train_examples=1_281_167, num_eval_examples=50_000, labels_file="",
        # detection: coco_json (an annotation file and an image folder per split),
        # detection_tfrecord (automl / TF Object Detection API records: train_pattern,
        # eval_pattern, label_offset, num_classes) or tfds (coco/2017, voc/2007, ...)
        train_annotations="", train_images="", eval_annotations="", eval_images="",
        # coco_json classes: the categories in id order, 0-based ("index"), or category id - 1
        # ("category_id": COCO's ids 1..90 as automl's 90 classes, unused ids included)
        class_ids="index",
        # a box with zero area, outside its image or of an unknown class: error, or skip it
        # (counted and logged)
        invalid_boxes="error",
        # tfds: any image-classification (or, for detection, detection) dataset in data_dir
        tfds_name="", tfds_data_dir=placeholder(str), tfds_train_split="train",
        tfds_eval_split="validation",
        # train transform: v1 (inception crop, area 0.08), v2 (area 0.05), whole (no crop:
        # fine-tuning); None: the row's official path (v1 for V1 and V2-B0..B3, v2 for
        # V2-S/M/L/XL). It also decides the eval transform (preprocess.eval_transform).
        crop=placeholder(str),
        crop_area_min=placeholder(float),  # overrides the crop's smallest area (small images)
        random_flip=True,  # off for data where left and right differ (digits, text)
        resize_method=placeholder(str),  # None: bicubic on the v1 path (official), bilinear on v2
        # True: the training images decoded once and kept in memory for every epoch and stage
        # (small data: images x height x width x 3 bytes); a path: their file bytes cached there
        cache=False, shuffle_buffer=10_000,
        max_pixels=MAX_PIXELS,  # larger images are skipped (and named) before they are decoded
        image_dtype=placeholder(str),  # None: bfloat16 on TPU, float32 elsewhere
        deterministic=False,
    ))
    # Under a progressive schedule the stages set the RandAugment magnitude and mixup alpha
    # (progressive section, else the variant's targets); these values hold for schedule "none".
    config.augment = ml_collections.ConfigDict(dict(
        kind="randaugment", randaug_layers=2, randaug_magnitude=15.0,
        randaug_ops="",  # comma-separated subset of the 16 ops; empty: all of them
        # False: translate/cutout in the official pixels (of 224-px images) at any size; True:
        # in proportion to the image size (small images)
        relative_to_size=False,
        # False: Solarize and Contrast as the official code computes them (published results);
        # True: as defined (data/augment.py)
        corrected_ops=False,
        mixup_alpha=0.0, cutmix_alpha=0.0,
    ))
    config.train = ml_collections.ConfigDict(dict(
        batch_size=4096, epochs=350.0,
        image_size=placeholder(int),  # schedule "none": train at this size (None: the row's)
        steps=0,  # > 0: train this many steps instead of `epochs`
        steps_per_loop=0,  # train steps per host loop; 0: 100 on TPU, 1 elsewhere
        # make the next stage's dataset and step function in a background thread while the
        # current stage trains (with one replica: a CPU or one GPU; trainer.NextStage)
        prepare_next_stage=True,
        log_every_steps=100, checkpoint_every_steps=1000, keep_checkpoints=3,
        eval_every_steps=0,  # 0: evaluate once, at the end
        # of the loss's targets; None: the task's (classification 0.1, as the papers;
        # detection 0.0, as automl's focal loss)
        label_smoothing=placeholder(float),
        weight_decay=1e-5, weight_decay_mode="l2",  # l2: as a loss term (papers); or decoupled
        # variables whose names hold one of these are not decayed (automl V2: biases and BN;
        # the V1 recipe: BN only, as tensorflow/tpu)
        weight_decay_exclude="bias,gamma,beta",
        grad_clip_norm=0.0,  # 0: off; the norm compared and how often it clipped are logged
        # on several replicas: global (the whole batch's gradient, as one device) or automl
        # (each replica's share, as google/automl's TF1 TPU path: train/loop.py, Steps._clip)
        grad_clip_mode="global",
        # None: bfloat16 on TPU, float16 with loss scaling on GPU, else float32
        precision=placeholder(str),
        jit_compile=placeholder(str),  # true, false; None: XLA on TPU and GPU, never on CPU
        ema_decay=0.9999,  # 0: no EMA
        # the data order, augmentation and initial weights; None: a random seed per run, logged
        # and recorded in config.json, and reused when the run resumes
        seed=placeholder(int),
    ))
    config.optimizer = ml_collections.ConfigDict(dict(
        name="rmsprop", lr_per_256=0.016, warmup_epochs=5.0, schedule="exponential",
        decay_rate=0.97, decay_epochs=2.4, min_lr=0.0, momentum=0.9, rmsprop_decay=0.9,
        epsilon=1e-3, nesterov=False,
    ))
    config.progressive = ml_collections.ConfigDict(dict(
        schedule="none",  # official (google/automl), paper (V2 Table 6), custom, none
        num_stages=4, size_multiple=8,
        # custom (min, max) per quantity; None: the variant's targets (registry)
        image_size_min=placeholder(int), image_size_max=placeholder(int),
        randaug_min=placeholder(float), randaug_max=placeholder(float),
        mixup_min=placeholder(float), mixup_max=placeholder(float),
        cutmix_min=placeholder(float), cutmix_max=placeholder(float),
        dropout_min=placeholder(float), dropout_max=placeholder(float),
    ))
    config.eval = ml_collections.ConfigDict(dict(
        batch_size=256, image_size=placeholder(int), use_ema=True,
        # None: the official transform of data.crop (preprocess.eval_transform); a number: a
        # center crop of that share of the short side (1.0: the largest square)
        crop_fraction=placeholder(float),
    ))
    # Detection (task "detection"): google/automl efficientdet hparams_config.py's defaults.
    config.detection = ml_collections.ConfigDict(dict(
        max_instances=100,  # boxes per image kept (the rest dropped, counted and logged)
        # scale jitter of the training images, then a crop (None: automl's, 0.1 and 2.0)
        scale_min=0.1, scale_max=2.0,
        anchor_scale=placeholder(float),  # the smallest anchor's side / stride; None: the row's
        # training images (as evaluated: unjittered) whose batch statistics replace the batch
        # norms' moving ones at the end of training (PreciseBN); None: 0, none (as automl)
        bn_recalibration_images=placeholder(int),
        # the share of the steps, at the end, trained without scale jitter (flips only), as
        # YOLOX ends without its strong augmentation; None: 0 (as automl)
        final_unjittered_share=placeholder(float),
        focal_alpha=0.25, focal_gamma=1.5,  # label smoothing: train.label_smoothing
        box_loss_weight=50.0, huber_delta=0.1,
        # evaluation: per-class Gaussian soft-NMS over the top 5000 candidates, 100 detections
        eval_nms="gaussian",
        # the original COCO annotation file of the eval split (e.g. instances_val2017.json):
        # scored against it as it is, as automl scores, instead of the ground truth rebuilt
        # from the source; "" rebuilds it
        eval_annotations="",
    ))
    # Fine-tune from: a workdir/checkpoint of ours, an official checkpoint by name
    # ('efficientnetv2-b0/imagenet21k-ft1k', 'efficientdet-d0/coco'; `efficientnet-tf info
    # --weights`), 'imagenet' (keras.applications'), a URL, or the path of a checkpoint, its
    # folder or .tar.gz, or an .h5 / .weights.h5 file (models/weights)
    config.init_from = ""
    # True: keys left None in the task's ADAPTED_KEYS are decided from the data
    # (the folder recipes: tasks/<task>/adapt.py)
    config.adapt_to_data = False
    config.lock()
    return config


def runlocal(config):
    """Shrinks a recipe to a few-step smoke run on a CPU (every recipe's ",runlocal" argument):
    a classifier 20 steps of 16 images growing from 32 to 64 px, a detector 10 steps of 4 at
    128 px on one device."""
    if config.task == "detection":
        config.model.bn_sync = "none"
        config.train.batch_size = config.eval.batch_size = 4
        config.train.steps = 10
        config.train.checkpoint_every_steps = 5
        config.train.image_size = 128
        config.data.num_train_examples, config.data.num_eval_examples = 64, 16
    else:
        config.train.batch_size = config.eval.batch_size = 16
        config.train.steps = 20
        config.train.checkpoint_every_steps = 10
        config.eval.image_size = 64
        config.data.num_train_examples, config.data.num_eval_examples = 256, 64
        config.progressive.schedule = "custom"
        config.progressive.image_size_min, config.progressive.image_size_max = 32, 64
    config.train.log_every_steps = 5
    return config


def override(config, assignment):
    """Sets "SECTION.KEY=VALUE" in `config` (scripts' --set flags): VALUE read as the key's type
    (true/false for booleans, None for an unset value, else int, float or the text)."""
    key, _, text = assignment.partition("=")
    section, _, name = key.partition(".")
    if section not in config or name not in config[section]:
        raise ValueError(f"unknown config key {key!r} in {assignment!r}; use SECTION.KEY=VALUE, "
                         "e.g. train.epochs=20")
    old = config[section][name]
    if text == "None":
        value = None
    elif isinstance(old, bool):
        value = text.lower() in ("1", "true", "yes")
    else:
        value = text
        for kind in (int, float):
            try:
                value = kind(text)
                break
            except ValueError:
                pass
    config[section][name] = value
    return config


def parse_argument(arg, defaults, flags=()):
    """Splits an experiment file's argument: ([values], {flags}). Comma-separated parts that are
    in `flags` are options; the others are values in order, missing ones taken from `defaults`.
    "efficientnetv2-s,runlocal" with defaults ("efficientnetv2-s",) and flags ("runlocal",)
    gives (["efficientnetv2-s"], {"runlocal"})."""
    parts = [part.strip() for part in (arg or "").split(",") if part.strip()]
    options = {part for part in parts if part in flags}
    values = [part for part in parts if part not in flags]
    if len(values) > len(defaults):
        raise ValueError(f"experiment argument {arg!r}: expected at most {len(defaults)} "
                         f"value(s) like {','.join(defaults)}, and the options "
                         f"{', '.join(flags) or '(none)'}")
    return values + list(defaults[len(values):]), options


def decided_later(value):
    """Whether a key's value leaves it to the run: None, or "auto" as typed on a command line."""
    return value is None or (isinstance(value, str) and value.lower() == AUTO)


# The keys whose values are otherwise words, where a user may type "auto".
AUTO_KEYS = ("data.crop", "data.resize_method", "data.image_dtype", "train.precision",
             "train.jit_compile")


def with_auto_as_none(config):
    """A copy of `config` where every AUTO_KEYS value that is decided_later is None: the one
    spelling the run reads."""
    config = config.copy_and_resolve_references()
    for key in AUTO_KEYS:
        section, name = key.split(".")
        if decided_later(config[section][name]):
            config[section][name] = None
    return config


def _one_of(value, allowed, key, later=False):
    """A ValueError unless `value` is one of `allowed` (or, `later`: decided_later)."""
    if later and decided_later(value):
        return
    if value not in allowed:
        raise ValueError(f"config.{key} is {value!r}; use one of {', '.join(map(repr, allowed))}"
                         + (" or None (auto: the run decides)" if later else ""))


def validate(config):
    """Checks the settings that do not fail on their own; returns `config`. (config.task is
    checked by tasks.get when the run is planned, the data section by the task's source.)"""
    _one_of(config.augment.kind, AUGMENTS, "augment.kind")
    _one_of(config.progressive.schedule, PROGRESSIVE, "progressive.schedule")
    _one_of(config.train.precision, PRECISIONS, "train.precision", later=True)
    _one_of(config.data.image_dtype, ("float32", "bfloat16", "float16"), "data.image_dtype",
            later=True)
    _one_of(config.data.empty_classes, ("error", "drop"), "data.empty_classes")
    _one_of(config.train.weight_decay_mode, ("l2", "decoupled"), "train.weight_decay_mode")
    _one_of(config.train.grad_clip_mode, CLIP_MODES, "train.grad_clip_mode")
    _one_of(config.train.jit_compile if decided_later(config.train.jit_compile)
            else str(config.train.jit_compile).lower(), ("true", "false"), "train.jit_compile",
            later=True)
    for key in ("train.batch_size", "eval.batch_size", "train.log_every_steps",
                "train.checkpoint_every_steps", "train.keep_checkpoints"):
        section, name = key.split(".")
        if config[section][name] <= 0:
            raise ValueError(f"config.{key} must be > 0, got {config[section][name]!r}")
    if config.train.steps <= 0 and config.train.epochs <= 0:
        raise ValueError("set config.train.epochs or config.train.steps to a positive number")
    return config


def total_steps(config, steps_per_epoch):
    """The run's number of train steps: config.train.steps, else its epochs (at least 1)."""
    return config.train.steps or max(1, math.ceil(config.train.epochs * steps_per_epoch))


def unread_settings(config, unread):
    """[(key, why)] of the keys `config` sets to other than base_config's value that the run
    does not read: those matching a pattern of `unread` ({fnmatch pattern: why}: the task's
    UNREAD_KEYS), and train.image_size under a progressive schedule (the stages set the size)."""
    rules = dict(unread)
    if config.progressive.schedule != "none":
        rules["train.image_size"] = (f"progressive.schedule={config.progressive.schedule!r} sets "
                                     "each stage's size (progressive.image_size_min/max)")
    defaults, values = _flatten(base_config().to_dict()), _flatten(config.to_dict())
    found = []
    for key in sorted(values):
        why = next((why for pattern, why in rules.items()
                    if fnmatch.fnmatchcase(key, pattern)), None)
        if why is not None and values[key] != defaults.get(key):
            found.append((key, why))
    return found


def check_read(config, unread, task):
    """A ValueError naming the first key `config` sets that a `task` run would not read
    (unread_settings): a setting that silently does nothing is a mistake to point out."""
    found = unread_settings(config, unread)
    if found:
        (key, why), others = found[0], [key for key, _ in found[1:]]
        section, name = key.split(".", 1)
        raise ValueError(
            f"config.{key}={config[section][name]!r} is not read by a {task} run: {why}; "
            "remove it" + (f" (nor are {', '.join(others)})" if others else ""))


# Keys older versions recorded that this one reads elsewhere: (task, old key) -> new key, or
# None where the value moved nowhere (another task's default).
LEGACY_KEYS = {("detection", "detection.label_smoothing"): "train.label_smoothing",
               ("classification", "detection.label_smoothing"): None}


def from_dict(values):
    """A config of `values` (a config as a dict: a run's config.json, a search's recipe) over
    base_config, whose keys it must have (older versions' keys mapped: LEGACY_KEYS)."""
    config = base_config()
    flat = _flatten(values)
    for (task, old), new in LEGACY_KEYS.items():
        if old in flat and flat.get("task", "classification") == task:
            value = flat.pop(old)
            if new is not None:
                flat[new] = value
    with config.unlocked():
        config.update_from_flattened_dict(flat)
    return config


def _flatten(nested, prefix=""):
    flat = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


SIZE_MULTIPLE = 8  # as registry.compound_scale rounds a scaled resolution


def for_model(config, name, base):
    """A copy of `config` (a recipe for the row `base`) training the row `name` instead: every
    image size the recipe sets (train, eval, the progressive range) scaled by the new row's
    resolution over the base's, to a multiple of 8; sizes it leaves to the row follow the row."""
    config = config.copy_and_resolve_references()
    ratio = registry.get(name).eval_size / registry.get(base).eval_size
    config.model.name = name
    for section, key in (("train", "image_size"), ("eval", "image_size"),
                         ("progressive", "image_size_min"), ("progressive", "image_size_max")):
        if config[section][key] is not None:
            config[section][key] = blocks_lib.round_to_multiple(config[section][key] * ratio,
                                                                SIZE_MULTIPLE)
    return config
