"""Every official EfficientNet V1/V2 and EfficientDet checkpoint, as one literal table.

A release is one table row of the official READMEs: tensorflow/tpu
models/official/efficientnet/README.md (V1), google/automl efficientnetv2/README.md and
effnetv2_model.py `pretrained_ckpts` (V2), google/automl efficientdet/README.md and
Det-AdvProp.md (EfficientDet). Its URL is the README's, with the variant's name in place of
{variant}. A checkpoint is named VARIANT/TAG, e.g. 'efficientnetv2-s/imagenet21k-ft1k',
'efficientnet-b4/noisy-student', 'efficientdet-d0/coco' (or TAG alone beside a model name).

What the READMEs leave out comes from the code that trained and evaluated the checkpoints:
- input scaling: mean_std (ImageNet mean/std) for V1 and V2-B0..B3 ImageNet-1k, S/M/L sym128
  ((x - 128) / 128, automl preprocessing.py), the V2 21k checkpoints sym128 (datasets.py
  ImageNet21k: no augmentation, the same normalization), 21k-ft1k sym255 ((x / 255 - 0.5) / 0.5,
  preprocess_for_finetune), AdvProp and Det-AdvProp sym255 (x * 2 / 255 - 1,
  --advprop_preprocessing, dataloader.py scale_range), EfficientDet mean_std (hparams_config.py);
- EMA: V1 files hold `.../ExponentialMovingAverage` shadows beside the plain values, L2 only
  the shadows (tensorflow/tpu#818); for V2 and EfficientDet it is not recorded. The loader
  prefers a shadow wherever there is one, as the official evaluation does;
- evaluation sizes: the rows' (registry), L2-475 at 475 (README), the 21k-pretrained V2 at 224
  (automl datasets.py ImageNet21k isize), the COCO-640 detectors at 640.
- accuracy: ImageNet top-1 as each README reports it; COCO AP on test-dev2017 (EfficientDet
  README; COCO-640: the README does not say which split). None: not reported.
"""

import dataclasses
from typing import Optional, Tuple

from efficientnet_tf.specs import registry

V1_BASE = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/"
V2_BASE = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/v2/"
DET_BASE = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/"
IMAGENET_TOP1 = "ImageNet top-1"
COCO_AP = "COCO AP (test-dev)"


@dataclasses.dataclass(frozen=True)
class Release:
    """One README row: a tag of several variants."""

    family: str  # registry.V1, registry.V2 or "efficientdet"
    tag: str
    variants: Tuple[str, ...]
    url: str  # with {variant}
    classes: int
    input_scaling: str
    ema: str  # "shadows" (beside the plain values), "shadows only", "not recorded"
    accuracy: Tuple[Optional[float], ...]  # per variant, as the README reports it
    eval_size: Optional[int] = None  # None: the variant's row
    metric: str = IMAGENET_TOP1
    notes: str = ""
    probabilities: str = "softmax"  # "sigmoid": a multi-label head (ImageNet-21k)


def _v1(count):
    return tuple(f"efficientnet-b{i}" for i in range(count))


_V2_B = ("efficientnetv2-b0", "efficientnetv2-b1", "efficientnetv2-b2", "efficientnetv2-b3")
_V2_SML = ("efficientnetv2-s", "efficientnetv2-m", "efficientnetv2-l")
_D = tuple(f"efficientdet-d{i}" for i in range(8)) + ("efficientdet-d7x",)
_MEAN_STD, _SYM128, _SYM255 = registry.MEAN_STD, registry.SYM128, registry.SYM255
_BOTH, _ONLY, _UNKNOWN = "shadows", "shadows only", "not recorded"

RELEASES = (
    Release(registry.V1, "baseline", _v1(6), V1_BASE + "ckpts/{variant}.tar.gz", 1000,
            _MEAN_STD, _BOTH, (76.7, 78.7, 79.8, 81.1, 82.5, 83.1)),
    Release(registry.V1, "autoaugment", _v1(8), V1_BASE + "ckptsaug/{variant}.tar.gz", 1000,
            _MEAN_STD, _BOTH, (77.1, 79.1, 80.1, 81.6, 82.9, 83.6, 84.0, 84.3)),
    Release(registry.V1, "randaugment", ("efficientnet-b5", "efficientnet-b7"),
            V1_BASE + "randaug/{variant}-randaug.tar.gz", 1000, _MEAN_STD, _BOTH, (83.7, 84.7)),
    Release(registry.V1, "advprop", _v1(9), V1_BASE + "advprop/{variant}.tar.gz", 1000,
            _SYM255, _BOTH, (77.6, 79.6, 80.5, 81.9, 83.3, 84.3, 84.8, 85.2, 85.5),
            notes="AdvProp + AutoAugment"),
    Release(registry.V1, "noisy-student", _v1(8),
            V1_BASE + "noisystudent/noisy_student_{variant}.tar.gz", 1000, _MEAN_STD, _BOTH,
            (78.8, 81.5, 82.4, 84.1, 85.3, 86.1, 86.4, 86.9), notes="NoisyStudent + RandAugment"),
    Release(registry.V1, "noisy-student", ("efficientnet-l2",),
            V1_BASE + "noisystudent/noisy_student_{variant}.tar.gz", 1000, _MEAN_STD, _ONLY,
            (88.4,)),
    Release(registry.V1, "noisy-student-475", ("efficientnet-l2",),
            V1_BASE + "noisystudent/noisy_student_efficientnet-l2_475.tar.gz", 1000, _MEAN_STD,
            _ONLY, (88.2,), eval_size=475, notes="L2 evaluated at 475 px"),
    Release(registry.V2, "imagenet", _V2_B, V2_BASE + "{variant}.tgz", 1000, _MEAN_STD,
            _UNKNOWN, (78.7, 79.8, 80.5, 82.1)),
    Release(registry.V2, "imagenet", _V2_SML, V2_BASE + "{variant}.tgz", 1000, _SYM128,
            _UNKNOWN, (83.9, 85.2, 85.7)),
    Release(registry.V2, "imagenet21k", _V2_B + _V2_SML + ("efficientnetv2-xl",),
            V2_BASE + "{variant}-21k.tgz", 21843, _SYM128, _UNKNOWN, (None,) * 8, eval_size=224,
            notes="ImageNet-21k, sigmoid outputs (multi-label)", probabilities="sigmoid"),
    Release(registry.V2, "imagenet21k-ft1k", _V2_B + _V2_SML + ("efficientnetv2-xl",),
            V2_BASE + "{variant}-21k-ft1k.tgz", 1000, _SYM255, _UNKNOWN,
            (None,) * 4 + (84.9, 86.2, 86.9, 87.2), notes="ImageNet-21k, fine-tuned on 1k"),
    Release("efficientdet", "coco", _D, DET_BASE + "coco2/{variant}.tar.gz", 90, _MEAN_STD,
            _UNKNOWN, (34.6, 40.5, 43.9, 47.2, 49.7, 51.5, 52.6, 53.7, 55.1), metric=COCO_AP,
            notes="also as {variant}.h5 beside the archive"),
    Release("efficientdet", "coco-640", tuple(f"efficientdet-d{i}" for i in range(2, 7)),
            DET_BASE + "coco640/{variant}-640.tar.gz", 90, _MEAN_STD, _UNKNOWN,
            (41.7, 44.0, 45.7, 46.6, 47.9), eval_size=640, metric="COCO AP",
            notes="trained at 640 px"),
    Release("efficientdet", "det-advprop", _D[:6], DET_BASE + "advprop/{variant}.tar.gz", 90,
            _SYM255, _UNKNOWN, (35.3, 40.9, 44.3, 48.0, 50.4, 52.5), metric=COCO_AP,
            notes="Det-AdvProp + AutoAugment"),
)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One downloadable checkpoint: a variant of a release."""

    variant: str
    release: Release
    accuracy: Optional[float]

    @property
    def name(self):
        return f"{self.variant}/{self.release.tag}"

    @property
    def url(self):
        return self.release.url.format(variant=self.variant)

    @property
    def eval_size(self):
        if self.release.eval_size:
            return self.release.eval_size
        spec = registry.get(self.variant)
        return getattr(spec, "eval_size", None) or spec.image_size

    @property
    def detector(self):
        return self.release.family == "efficientdet"


def checkpoints():
    """Every checkpoint, in table order."""
    return [Checkpoint(variant, release, accuracy) for release in RELEASES
            for variant, accuracy in zip(release.variants, release.accuracy)]


_BY_NAME = {checkpoint.name: checkpoint for checkpoint in checkpoints()}


def _canonical_variant(name):
    try:
        return registry.get(name).name
    except ValueError:
        return None


def find(text, model_name=None):
    """The Checkpoint named `text` ('VARIANT/TAG', or 'TAG' with `model_name` given), or None
    when `text` names none (it may be a path)."""
    if not isinstance(text, str) or not text:
        return None
    variant, slash, tag = text.partition("/")
    if not slash and model_name is not None:
        variant, tag = model_name, text
    elif not slash or "/" in tag:
        return None
    canonical = _canonical_variant(variant) if ":" not in variant else None
    return _BY_NAME.get(f"{canonical}/{tag}") if canonical else None


def find_url(url):
    """The Checkpoint downloaded from `url`, or None."""
    return _BY_URL.get(url) if isinstance(url, str) else None


_BY_URL = {checkpoint.url: checkpoint for checkpoint in checkpoints()}


def tags_of(variant):
    """The tags published for a variant (a classifier's, or a detector's)."""
    canonical = _canonical_variant(variant)
    return [c.release.tag for c in checkpoints() if c.variant == canonical]


def looks_like_a_tag(text):
    """'VARIANT/WORD' with a registered variant and no such file: a mistyped tag."""
    variant, slash, tag = text.partition("/")
    return bool(slash and "/" not in tag and "." not in tag and _canonical_variant(variant))


def table_lines(variant=None):
    """`efficientnet-tf info --weights`: one line per checkpoint (of `variant`, if given)."""
    lines = [f"{'checkpoint':<36} {'classes':>7} {'input':>8} {'eval':>5} {'EMA':>12} "
             f"{'reported':>9}  url", "-" * 150]
    for checkpoint in checkpoints():
        if variant is not None and checkpoint.variant != variant:
            continue
        release = checkpoint.release
        accuracy = "-" if checkpoint.accuracy is None else f"{checkpoint.accuracy:.1f}"
        lines.append(f"{checkpoint.name:<36} {release.classes:>7} {release.input_scaling:>8} "
                     f"{checkpoint.eval_size:>5} {release.ema:>12} {accuracy:>9}  "
                     f"{checkpoint.url}")
    lines.append(f"{len(lines) - 2} checkpoints. 'reported': ImageNet top-1 (%) of the "
                 "classifiers, COCO AP of the detectors (test-dev; COCO-640: the README's mAP), "
                 "as the official READMEs report them.")
    return lines
