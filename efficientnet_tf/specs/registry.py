"""Every EfficientNet variant as one row of data, and compound scaling (V1 paper §3.3, V2 §3.3, §4).

Numbers come from the papers and the official code, as collected in docs/reference.md §1-4:
V1 block table and (width, depth, resolution, dropout) per variant from tensorflow/tpu
`efficientnet_builder.py`; V2 tables, train/eval sizes and dropout from google/automl
`efficientnetv2/effnetv2_configs.py`; progressive-learning targets from the V2 paper's Table 6.
"""

import dataclasses
import difflib
import math
from typing import Optional, Tuple

from efficientnet_tf.specs import blocks as blocks_lib

V1 = "efficientnet"
V2 = "efficientnetv2"

# Input scalings: how a model maps its [0, 255] images before the stem. A row's
# `normalization` is its family's; a checkpoint may expect another (models/weights/catalog.py).
MEAN_STD = "mean_std"  # (x - 255 * mean) / (255 * std), ImageNet's (V1, V2-B*, EfficientDet)
SYM128 = "sym128"  # (x - 128) / 128 (V2-S/M/L/XL, V2 ImageNet-21k)
SYM255 = "sym255"  # x * 2 / 255 - 1 (AdvProp, Det-AdvProp, V2 21k-ft1k)
INPUT_SCALINGS = (MEAN_STD, SYM128, SYM255)
# The names config.json files of earlier versions recorded.
LEGACY_SCALINGS = {"imagenet": MEAN_STD, "symmetric": SYM128}
# ImageNet statistics of images in [0, 1] (docs/reference.md §2).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STDDEV = (0.229, 0.224, 0.225)


def zero_colour(input_scaling):
    """The [0, 255] colour that `input_scaling` maps to 0: what a detector pads its images
    with, as the official code pads after normalizing (ImageNet's mean colour for mean_std)."""
    if input_scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling {input_scaling!r}; use one of "
                         f"{', '.join(INPUT_SCALINGS)}")
    if input_scaling == MEAN_STD:
        return tuple(255.0 * m for m in IMAGENET_MEAN)
    return (128.0,) * 3 if input_scaling == SYM128 else (127.5,) * 3


@dataclasses.dataclass(frozen=True)
class ProgressiveTargets:
    """(min, max) of each quantity progressive learning schedules (V2 §4, Algorithm 1)."""

    image_size: Tuple[int, int]
    randaug_magnitude: Tuple[float, float]
    mixup_alpha: Tuple[float, float]
    cutmix_alpha: Tuple[float, float]
    dropout_rate: Tuple[float, float]

    def with_train_size(self, train_size):
        """The same targets growing the image up to `train_size` (from at most it)."""
        return dataclasses.replace(
            self, image_size=(min(self.image_size[0], train_size), train_size))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One row of the scaling tables: everything needed to build and train a variant."""

    name: str
    family: str
    base_blocks: Tuple[str, ...]
    width: float
    depth: float
    train_size: int
    eval_size: int
    dropout_rate: float
    normalization: str
    survival_prob: float = 0.8
    paper_targets: Optional[ProgressiveTargets] = None  # V2 paper Table 6 (schedule "paper")
    # google/automl main.py (schedule "official")
    official_targets: Optional[ProgressiveTargets] = None
    # The official code's preprocessing path for this row: "v1" (tensorflow/tpu's: area 0.08,
    # bicubic, AutoAugment, eval center crop; automl's 'effnetv1_autoaug' for V2-B0..B3) or
    # "v2" (automl's 'randaug': area 0.05, bilinear, RandAugment, whole image at eval >= 320).
    preprocessing: str = "v1"
    stem_filters: int = 32
    head_filters: int = 1280
    depth_divisor: int = 8

    def __post_init__(self):
        if self.family not in (V1, V2):
            raise ValueError(f"family must be {V1!r} or {V2!r}, got {self.family!r}")
        if self.preprocessing not in ("v1", "v2"):
            raise ValueError(f"preprocessing must be 'v1' or 'v2', got {self.preprocessing!r}")
        if self.normalization not in INPUT_SCALINGS:
            raise ValueError(f"normalization must be one of {', '.join(INPUT_SCALINGS)}, "
                             f"got {self.normalization!r}")
        for field in ("width", "depth"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(self, field)!r}")
        for field in ("train_size", "eval_size"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 32:
                raise ValueError(f"{field} must be an integer >= 32, got {getattr(self, field)!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if not 0.0 < self.survival_prob <= 1.0:
            raise ValueError(f"survival_prob must be in (0, 1], got {self.survival_prob!r}")
        for block_string in self.base_blocks:
            blocks_lib.decode_block(block_string)  # fails early on a bad table

    # Family conventions (docs/reference.md §2-3): TF-style BN momentum, V1's 10% rounding guard.
    @property
    def bn_momentum(self):
        return 0.99 if self.family == V1 else 0.9

    @property
    def bn_epsilon(self):
        return 1e-3

    def round_filters(self, filters):
        return blocks_lib.round_filters(filters, self.width, self.depth_divisor,
                                        guard=self.family == V1)

    @property
    def blocks(self):
        """The stages after width and depth scaling, as BlockSpecs."""
        scaled = []
        for block_string in self.base_blocks:
            block = blocks_lib.decode_block(block_string)
            scaled.append(dataclasses.replace(
                block,
                repeats=blocks_lib.round_repeats(block.repeats, self.depth),
                input_filters=self.round_filters(block.input_filters),
                output_filters=self.round_filters(block.output_filters)))
        return tuple(scaled)

    @property
    def num_blocks(self):
        return sum(block.repeats for block in self.blocks)

    @property
    def scaled_stem_filters(self):
        return self.round_filters(self.stem_filters)

    @property
    def scaled_head_filters(self):
        return self.round_filters(self.head_filters)


_V1_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_se0.25", "r2_k3_s2_e6_i16_o24_se0.25", "r2_k5_s2_e6_i24_o40_se0.25",
    "r3_k3_s2_e6_i40_o80_se0.25", "r3_k5_s1_e6_i80_o112_se0.25", "r4_k5_s2_e6_i112_o192_se0.25",
    "r1_k3_s1_e6_i192_o320_se0.25",
)
_V2_BASE_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_c1", "r2_k3_s2_e4_i16_o32_c1", "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25", "r5_k3_s1_e6_i96_o112_se0.25", "r8_k3_s2_e6_i112_o192_se0.25",
)
_V2_S_BLOCKS = (
    "r2_k3_s1_e1_i24_o24_c1", "r4_k3_s2_e4_i24_o48_c1", "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25", "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
)
_V2_M_BLOCKS = (
    "r3_k3_s1_e1_i24_o24_c1", "r5_k3_s2_e4_i24_o48_c1", "r5_k3_s2_e4_i48_o80_c1",
    "r7_k3_s2_e4_i80_o160_se0.25", "r14_k3_s1_e6_i160_o176_se0.25",
    "r18_k3_s2_e6_i176_o304_se0.25", "r5_k3_s1_e6_i304_o512_se0.25",
)
_V2_L_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1", "r7_k3_s2_e4_i32_o64_c1", "r7_k3_s2_e4_i64_o96_c1",
    "r10_k3_s2_e4_i96_o192_se0.25", "r19_k3_s1_e6_i192_o224_se0.25",
    "r25_k3_s2_e6_i224_o384_se0.25", "r7_k3_s1_e6_i384_o640_se0.25",
)
_V2_XL_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1", "r8_k3_s2_e4_i32_o64_c1", "r8_k3_s2_e4_i64_o96_c1",
    "r16_k3_s2_e4_i96_o192_se0.25", "r24_k3_s1_e6_i192_o256_se0.25",
    "r32_k3_s2_e6_i256_o512_se0.25", "r8_k3_s1_e6_i512_o640_se0.25",
)

# V2 paper Table 6 (schedule "paper"). XL is not in the table; the official code gives it L's
# regularization, and so do we, with its own train size. B0-B3 are not in the table either: they
# take S's regularization (the smallest net in the table) up to their own train size.
TABLE6_S = ProgressiveTargets((128, 300), (5, 15), (0.0, 0.0), (0.0, 0.0), (0.1, 0.3))
TABLE6_M = ProgressiveTargets((128, 380), (5, 20), (0.0, 0.2), (0.0, 0.0), (0.1, 0.4))
TABLE6_L = ProgressiveTargets((128, 380), (5, 25), (0.0, 0.4), (0.0, 0.0), (0.1, 0.5))


def automl_targets(train_size, randaug, mix, dropout):
    """google/automl efficientnetv2 (schedule "official"): from image size 128 (ibase) to the
    train size, RandAugment linspace(5, ram), mixup and cutmix linspace(0, alpha) with
    cutmix alpha = mixup alpha, and dropout fixed at the row's rate (main.py computes a dropout
    schedule, then deletes it). ram and alpha per variant: effnetv2_configs.py."""
    return ProgressiveTargets((128, train_size), (5.0, float(randaug)), (0.0, float(mix)),
                              (0.0, float(mix)), (float(dropout), float(dropout)))


def scale(base, width, depth, resolution, dropout_rate=None, name=None, train_size=None,
          paper_targets=None, official_targets=None):
    """A new row: `base`'s stages scaled by (width, depth), at `resolution` (its eval size).

    The V1 and V2-B rows are made by this function from their family's base row. A base with
    progressive-learning targets passes them on, its image-size range ending at the new train
    size (and the official targets' fixed dropout at the new rate).
    """
    base = get(base) if isinstance(base, str) else base
    if not (isinstance(resolution, int) and resolution >= 32):
        raise ValueError(f"resolution must be an integer >= 32, got {resolution!r}")
    name = name or f"{base.name}-w{width:g}-d{depth:g}-r{resolution}"
    train_size = train_size or resolution
    dropout_rate = base.dropout_rate if dropout_rate is None else dropout_rate
    if paper_targets is None and base.paper_targets is not None:
        paper_targets = base.paper_targets.with_train_size(train_size)
    if official_targets is None and base.official_targets is not None:
        official_targets = dataclasses.replace(
            base.official_targets.with_train_size(train_size),
            dropout_rate=(dropout_rate, dropout_rate))
    return dataclasses.replace(
        base, name=name, width=width, depth=depth, train_size=train_size, eval_size=resolution,
        dropout_rate=dropout_rate, paper_targets=paper_targets,
        official_targets=official_targets)


def compound_scale(phi, base="efficientnet-b0", alpha=1.2, beta=1.1, gamma=1.15,
                   resolution_multiple=8, dropout_rate=None, name=None):
    """The row of compound coefficient `phi` (V1 paper eq. 3): depth α^φ, width β^φ, size γ^φ.

    The eval and train sizes are both scaled by γ^φ and rounded to `resolution_multiple` (a V2
    base keeps training smaller than it evaluates). Without `dropout_rate`, dropout follows the
    V1 table's rule (0.2 at φ 0-1, +0.1 every two steps of φ, at most 0.5).
    """
    if phi < 0:
        raise ValueError(f"phi must be >= 0, got {phi!r}")
    for label, coefficient in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if coefficient < 1:
            raise ValueError(f"{label} must be >= 1 (a scaling factor), got {coefficient!r}")
    base = get(base) if isinstance(base, str) else base
    resolution, train_size = (
        blocks_lib.round_to_multiple(size * gamma ** phi, resolution_multiple)
        for size in (base.eval_size, base.train_size))
    if dropout_rate is None:
        dropout_rate = round(min(0.5, base.dropout_rate + 0.1 * math.floor(phi / 2)), 4)
    return scale(base, width=base.width * beta ** phi, depth=base.depth * alpha ** phi,
                 resolution=resolution, train_size=train_size, dropout_rate=dropout_rate,
                 name=name or f"{base.name}-phi{phi:g}")


def _v2(blocks, train_size, eval_size, dropout_rate, paper_targets, official_targets):
    """A V2 row with its own stage table (S/M/L/XL: no width/depth scaling, (x - 128) / 128)."""
    return ModelSpec(name="efficientnetv2", family=V2, base_blocks=blocks, width=1.0, depth=1.0,
                     train_size=train_size, eval_size=eval_size, dropout_rate=dropout_rate,
                     normalization=SYM128, paper_targets=paper_targets,
                     official_targets=official_targets, preprocessing="v2",
                     stem_filters=blocks_lib.decode_block(blocks[0]).input_filters)


V1_BASE = ModelSpec(name="efficientnet-b0", family=V1, base_blocks=_V1_BLOCKS, width=1.0,
                    depth=1.0, train_size=224, eval_size=224, dropout_rate=0.2,
                    normalization=MEAN_STD)
# automl trains V2-B0..B3 with AutoAugment (RandAugment's ram is 0 there) and no mixing.
V2_BASE = ModelSpec(name="efficientnetv2-b0", family=V2, base_blocks=_V2_BASE_BLOCKS, width=1.0,
                    depth=1.0, train_size=192, eval_size=224, dropout_rate=0.2,
                    normalization=MEAN_STD, paper_targets=TABLE6_S.with_train_size(192),
                    official_targets=automl_targets(192, randaug=0, mix=0.0, dropout=0.2))

# One row per variant. V1: (width, depth, resolution, dropout) of tensorflow/tpu
# efficientnet_builder.efficientnet_params; b8 and l2 from the same table (AdvProp, NoisyStudent).
# V2: google/automl effnetv2_configs.efficientnetv2_params (width, depth, train size, eval size,
# dropout, RandAugment ram, mixup = cutmix alpha).
_ROWS = {name: dataclasses.replace(row, name=name) for name, row in {
    "efficientnet-b0": V1_BASE,
    "efficientnet-b1": scale(V1_BASE, width=1.0, depth=1.1, resolution=240, dropout_rate=0.2),
    "efficientnet-b2": scale(V1_BASE, width=1.1, depth=1.2, resolution=260, dropout_rate=0.3),
    "efficientnet-b3": scale(V1_BASE, width=1.2, depth=1.4, resolution=300, dropout_rate=0.3),
    "efficientnet-b4": scale(V1_BASE, width=1.4, depth=1.8, resolution=380, dropout_rate=0.4),
    "efficientnet-b5": scale(V1_BASE, width=1.6, depth=2.2, resolution=456, dropout_rate=0.4),
    "efficientnet-b6": scale(V1_BASE, width=1.8, depth=2.6, resolution=528, dropout_rate=0.5),
    "efficientnet-b7": scale(V1_BASE, width=2.0, depth=3.1, resolution=600, dropout_rate=0.5),
    "efficientnet-b8": scale(V1_BASE, width=2.2, depth=3.6, resolution=672, dropout_rate=0.5),
    "efficientnet-l2": scale(V1_BASE, width=4.3, depth=5.3, resolution=800, dropout_rate=0.5),
    "efficientnetv2-b0": V2_BASE,
    "efficientnetv2-b1": scale(V2_BASE, width=1.0, depth=1.1, resolution=240, train_size=192,
                               dropout_rate=0.2),
    "efficientnetv2-b2": scale(V2_BASE, width=1.1, depth=1.2, resolution=260, train_size=208,
                               dropout_rate=0.3),
    "efficientnetv2-b3": scale(V2_BASE, width=1.2, depth=1.4, resolution=300, train_size=240,
                               dropout_rate=0.3),
    "efficientnetv2-s": _v2(_V2_S_BLOCKS, train_size=300, eval_size=384, dropout_rate=0.2,
                            paper_targets=TABLE6_S,
                            official_targets=automl_targets(300, randaug=10, mix=0.0, dropout=0.2)),
    "efficientnetv2-m": _v2(_V2_M_BLOCKS, train_size=384, eval_size=480, dropout_rate=0.3,
                            paper_targets=TABLE6_M,
                            official_targets=automl_targets(384, randaug=15, mix=0.2, dropout=0.3)),
    "efficientnetv2-l": _v2(_V2_L_BLOCKS, train_size=384, eval_size=480, dropout_rate=0.4,
                            paper_targets=TABLE6_L,
                            official_targets=automl_targets(384, randaug=20, mix=0.5, dropout=0.4)),
    "efficientnetv2-xl": _v2(_V2_XL_BLOCKS, train_size=384, eval_size=512, dropout_rate=0.4,
                             paper_targets=TABLE6_L.with_train_size(384),
                             official_targets=automl_targets(384, randaug=20, mix=0.5,
                                                             dropout=0.4)),
    # Tiny variants for tests and laptops (the idea of timm's test variants): every code path of
    # their family in a few thousand parameters.
    "efficientnet-test": scale(V1_BASE, width=0.25, depth=0.25, resolution=64, dropout_rate=0.2),
    "efficientnetv2-test": scale(
        V2_BASE, width=0.25, depth=0.25, resolution=64, train_size=64, dropout_rate=0.2,
        paper_targets=dataclasses.replace(TABLE6_S, image_size=(32, 64)),
        official_targets=dataclasses.replace(automl_targets(64, 10, 0.0, 0.2),
                                             image_size=(32, 64))),
}.items()}
_TEST_VARIANTS = ("efficientnet-test", "efficientnetv2-test")


def _key(name):
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(name): name for name in _ROWS}


def names(family=None, include_test=False):
    """Canonical names of the registered variants, in table order."""
    return [name for name, row in _ROWS.items()
            if (family is None or row.family == family)
            and (include_test or name not in _TEST_VARIANTS)]


# A scaled row by name: "BASE:KEY=VALUE,..." with w, d, r (and train, dropout) for `scale`, or
# phi (and alpha, beta, gamma, dropout) for `compound_scale`.
SCALE_KEYS = {"w": "width", "d": "depth", "r": "resolution", "train": "train_size",
              "dropout": "dropout_rate"}
COMPOUND_KEYS = {"phi": "phi", "alpha": "alpha", "beta": "beta", "gamma": "gamma",
                 "dropout": "dropout_rate"}


def _scaled(name):
    """The row of a scaled name such as 'efficientnet-b0:w=1.1,d=1.2,r=240' or
    'efficientnet-b0:phi=1.5'; the row's name is the canonical form of that string."""
    base_name, _, arguments = name.partition(":")
    base = get(base_name)
    values = {}
    for item in filter(None, (part.strip() for part in arguments.split(","))):
        key, _, value = item.partition("=")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"model {name!r}: {item!r} is not KEY=NUMBER") from None
    compound = "phi" in values
    allowed = COMPOUND_KEYS if compound else SCALE_KEYS
    unknown = sorted(set(values) - set(allowed))
    if unknown or not values:
        raise ValueError(
            f"model {name!r}: {'unknown keys ' + ', '.join(unknown) if unknown else 'no keys'}; "
            "write BASE:w=WIDTH,d=DEPTH,r=RESOLUTION[,train=SIZE][,dropout=RATE] or "
            "BASE:phi=PHI[,alpha=A,beta=B,gamma=G][,dropout=RATE]")
    canonical = f"{base.name}:" + ",".join(f"{key}={values[key]:g}" for key in allowed
                                          if key in values)
    if compound:
        return compound_scale(base=base, name=canonical,
                              **{COMPOUND_KEYS[k]: v for k, v in values.items()})
    missing = [key for key in ("w", "d", "r") if key not in values]
    if missing:
        raise ValueError(f"model {name!r} lacks {', '.join(missing)}: a scaled row needs w, d "
                         "and r (or phi)")
    arguments = {SCALE_KEYS[k]: v for k, v in values.items()}
    for key in ("resolution", "train_size"):
        if key in arguments:
            arguments[key] = int(arguments[key])
    return scale(base, name=canonical, **arguments)


def compound_name(base_name, alpha, beta, gamma, phi=1):
    """The name of `base_name` compound-scaled by (α, β, γ) at `phi`: 'BASE:phi=..,alpha=..' on
    a registered base; on a base that is itself a scaled row, the same row as w, d, r and
    dropout (a name holds one scaling)."""
    if ":" not in base_name:
        return f"{base_name}:phi={phi:g},alpha={alpha:g},beta={beta:g},gamma={gamma:g}"
    row = compound_scale(phi, get(base_name), alpha, beta, gamma)
    return (f"{base_name.partition(':')[0]}:w={row.width:.10g},d={row.depth:.10g},"
            f"r={row.eval_size},train={row.train_size},dropout={row.dropout_rate:g}")


@dataclasses.dataclass(frozen=True)
class DetectionSpec:
    """One EfficientDet row (EfficientDet paper Table 1; google/automl hparams_config.py):
    backbone row, input size, BiFPN width and cells, head depth, levels, anchor scale, fusion,
    and the backbone's stochastic-depth survival probability (1.0: none, as automl's D0)."""

    name: str
    backbone: str
    image_size: int
    fpn_width: int
    fpn_repeats: int
    head_repeats: int
    anchor_scale: float = 4.0
    min_level: int = 3
    max_level: int = 7
    fusion: str = "fast"  # fast normalized fusion; "sum" for D6 and up (automl: for stability)
    backbone_survival_prob: float = 0.8
    family: str = "efficientdet"
    # Anchors at each location of a level: these scales (octave steps 2^(i / num_scales)) times
    # these aspect ratios (width / height); automl's 3 and (1, 2, 0.5).
    num_scales: int = 3
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5)

    # What the trainer reads of any row: a detector trains and evaluates at its input size
    # (no progressive learning) and has no classifier dropout; automl's BN momentum (TF
    # convention: the moving statistics keep 0.99 of themselves per step).
    dropout_rate = 0.0
    bn_momentum = 0.99
    bn_epsilon = 1e-3

    @property
    def anchors_per_location(self):
        return self.num_scales * len(self.aspect_ratios)

    @property
    def train_size(self):
        return self.image_size

    @property
    def eval_size(self):
        return self.image_size

    def __post_init__(self):
        if self.fusion not in ("fast", "softmax", "sum"):
            raise ValueError(f"fusion must be fast, softmax or sum, got {self.fusion!r}")
        if not 3 <= self.min_level <= 5 <= self.max_level:
            raise ValueError(f"levels {self.min_level}-{self.max_level}: the backbone gives "
                             "levels 3-5, so min_level <= 5 <= max_level")


def detection_compound(phi, name=None):
    """The EfficientDet row of compound coefficient `phi` (paper eq. 1-3): BiFPN width
    64 * 1.35^phi (to a multiple of 8), 3 + phi cells, 3 + floor(phi / 3) head layers, input
    512 + 128 phi, backbone efficientnet-b0 scaled by phi (V1's coefficients). The named rows
    below are the published, partly hand-set table (D2's width 112, D5 at 1280 px, D7 = D6)."""
    if phi < 0:
        raise ValueError(f"phi must be >= 0, got {phi!r}")
    backbone = compound_scale(phi).name if phi else "efficientnet-b0"
    return DetectionSpec(
        name=name or f"efficientdet:phi={phi:g}", backbone=backbone,
        image_size=blocks_lib.round_to_multiple(512 + 128 * phi, 8),
        fpn_width=blocks_lib.round_to_multiple(64 * 1.35 ** phi, 8), fpn_repeats=3 + int(phi),
        head_repeats=3 + int(phi // 3), backbone_survival_prob=1.0 if phi == 0 else 0.8)


_D = DetectionSpec
_DETECTION_ROWS = {row.name: row for row in (
    _D("efficientdet-d0", "efficientnet-b0", 512, 64, 3, 3, backbone_survival_prob=1.0),
    _D("efficientdet-d1", "efficientnet-b1", 640, 88, 4, 3),
    _D("efficientdet-d2", "efficientnet-b2", 768, 112, 5, 3),
    _D("efficientdet-d3", "efficientnet-b3", 896, 160, 6, 4),
    _D("efficientdet-d4", "efficientnet-b4", 1024, 224, 7, 4),
    _D("efficientdet-d5", "efficientnet-b5", 1280, 288, 7, 4),
    _D("efficientdet-d6", "efficientnet-b6", 1280, 384, 8, 5, fusion="sum"),
    _D("efficientdet-d7", "efficientnet-b6", 1536, 384, 8, 5, anchor_scale=5.0, fusion="sum"),
    _D("efficientdet-d7x", "efficientnet-b7", 1536, 384, 8, 5, max_level=8, fusion="sum"),
    # Tests: every code path of the detector in about 110 K parameters.
    _D("efficientdet-test", "efficientnet-test", 128, 16, 1, 1, backbone_survival_prob=1.0),
    # The offline demo (`demo detection`): the same backbone, a BiFPN of 48 channels and 2 cells,
    # heads of 3 layers. On the demo's digit scenes, 750 steps from scratch: COCO AP 9.2 where
    # efficientdet-test's 16 channels, 1 cell and 1 layer reached 1.75 (one run each).
    _D("efficientdet-demo", "efficientnet-test", 256, 48, 2, 3, backbone_survival_prob=1.0),
)}
_SMALL_DETECTION_ROWS = ("efficientdet-test", "efficientdet-demo")


def detection_names(include_test=False):
    """The published rows (D0-D7x), and with include_test the tests' and the demo's too."""
    return [name for name in _DETECTION_ROWS
            if include_test or name not in _SMALL_DETECTION_ROWS]


def _detection(name):
    """A detection row by name, or 'efficientdet:phi=PHI' (any phi >= 0)."""
    base, _, arguments = name.partition(":")
    if not arguments:
        return _DETECTION_ROWS[_BY_DETECTION_KEY[_key(base)]]
    key, _, value = arguments.partition("=")
    try:
        phi = float(value)
    except ValueError:
        phi = None
    if key.strip() != "phi" or phi is None:
        raise ValueError(f"model {name!r}: a scaled EfficientDet is efficientdet:phi=NUMBER")
    return detection_compound(phi, name=f"efficientdet:phi={phi:g}")


_BY_DETECTION_KEY = {_key(name): name for name in _DETECTION_ROWS}


def get(name):
    """A variant's row, by official ('efficientnetv2-s') or snake-case ('efficientnet_b0') name,
    or a scaled row by name ('efficientnet-b0:w=1.1,d=1.2,r=240', 'efficientnet-b0:phi=1.5');
    EfficientDet rows by name ('efficientdet-d0') or coefficient ('efficientdet:phi=2.5')."""
    if isinstance(name, (ModelSpec, DetectionSpec)):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a string or ModelSpec, got {type(name).__name__}")
    if _key(name.partition(":")[0]) in _BY_DETECTION_KEY or name.startswith("efficientdet:"):
        return _detection(name)
    if ":" in name:
        return _scaled(name)
    canonical = _BY_KEY.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(name.lower().replace("_", "-"),
                                          list(_ROWS) + list(_DETECTION_ROWS), n=3, cutoff=0.6)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else f"known models: {', '.join(names())}")
        raise ValueError(f"unknown model {name!r}; {hint}")
    return _ROWS[canonical]
