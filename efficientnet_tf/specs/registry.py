"""Every EfficientNet variant as one row of data, and compound scaling (V1 paper §3.3, V2 §3.3, §4).

Numbers come from the papers and the official code, as collected in shared/REFERENCE.md §1-4:
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

# Input normalization applied inside the model to images in [0, 255].
IMAGENET = "imagenet"  # (x - 255 * mean) / (255 * std), mean/std of ImageNet (V1, V2-B*)
SYMMETRIC = "symmetric"  # (x - 128) / 128 (V2-S/M/L/XL)


@dataclasses.dataclass(frozen=True)
class Progressive:
    """(min, max) targets of progressive learning: stage i interpolates between them (V2 §4)."""

    image_size: Tuple[int, int]
    randaug_magnitude: Tuple[float, float]
    mixup_alpha: Tuple[float, float]
    dropout_rate: Tuple[float, float]


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
    progressive: Optional[Progressive] = None
    stem_filters: int = 32
    head_filters: int = 1280
    depth_divisor: int = 8

    def __post_init__(self):
        if self.family not in (V1, V2):
            raise ValueError(f"family must be {V1!r} or {V2!r}, got {self.family!r}")
        if self.normalization not in (IMAGENET, SYMMETRIC):
            raise ValueError(f"normalization must be {IMAGENET!r} or {SYMMETRIC!r}, "
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

    # Family conventions (REFERENCE.md §2-3): TF-style BN momentum, and V1's 10% rounding guard.
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

# V2 paper Table 6. XL is not in the table; the official code gives it L's regularization, and so
# do we, with its own train size. The B0-B3 rows are not in the table either: they take S's
# regularization targets (the smallest net in the table) and grow up to their own train size.
_TABLE6_S = Progressive((128, 300), (5, 15), (0.0, 0.0), (0.1, 0.3))
_TABLE6_M = Progressive((128, 380), (5, 20), (0.0, 0.2), (0.1, 0.4))
_TABLE6_L = Progressive((128, 380), (5, 25), (0.0, 0.4), (0.1, 0.5))


def scale(base, width, depth, resolution, dropout_rate=None, name=None, train_size=None,
          progressive=None):
    """A new row: `base`'s stages scaled by (width, depth), at `resolution` (its eval size).

    Every named V1 and V2-B row is made by this function from its family's base row. A base with
    progressive-learning targets passes them on, its image-size range ending at the new train size.
    """
    base = get(base) if isinstance(base, str) else base
    if not (isinstance(resolution, int) and resolution >= 32):
        raise ValueError(f"resolution must be an integer >= 32, got {resolution!r}")
    name = name or f"{base.name}-w{width:g}-d{depth:g}-r{resolution}"
    train_size = train_size or resolution
    if progressive is None and base.progressive is not None:
        low = min(base.progressive.image_size[0], train_size)
        progressive = dataclasses.replace(base.progressive, image_size=(low, train_size))
    return dataclasses.replace(
        base, name=name, width=width, depth=depth,
        train_size=train_size, eval_size=resolution,
        dropout_rate=base.dropout_rate if dropout_rate is None else dropout_rate,
        progressive=progressive)


def compound_scale(phi, base="efficientnet-b0", alpha=1.2, beta=1.1, gamma=1.15,
                   resolution_multiple=8, dropout_rate=None, name=None):
    """The row of compound coefficient `phi` (V1 paper eq. 3): depth α^φ, width β^φ, size γ^φ.

    The size is rounded to `resolution_multiple`. Without `dropout_rate`, dropout follows the V1
    table's rule (0.2 at φ 0-1, +0.1 every two steps of φ, at most 0.5).
    """
    if phi < 0:
        raise ValueError(f"phi must be >= 0, got {phi!r}")
    for label, coefficient in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if coefficient < 1:
            raise ValueError(f"{label} must be >= 1 (a scaling factor), got {coefficient!r}")
    base = get(base) if isinstance(base, str) else base
    resolution = int(round(base.eval_size * gamma ** phi / resolution_multiple)) * resolution_multiple
    if dropout_rate is None:
        dropout_rate = round(min(0.5, base.dropout_rate + 0.1 * math.floor(phi / 2)), 4)
    return scale(base, width=base.width * beta ** phi, depth=base.depth * alpha ** phi,
                 resolution=resolution, dropout_rate=dropout_rate,
                 name=name or f"{base.name}-phi{phi:g}")


def _build_rows():
    v1_base = ModelSpec(name="efficientnet-b0", family=V1, base_blocks=_V1_BLOCKS, width=1.0,
                        depth=1.0, train_size=224, eval_size=224, dropout_rate=0.2,
                        normalization=IMAGENET)
    rows = [v1_base]
    # name, width, depth, resolution, dropout (tensorflow/tpu efficientnet_builder.py).
    for suffix, width, depth, resolution, dropout in (
            ("b1", 1.0, 1.1, 240, 0.2), ("b2", 1.1, 1.2, 260, 0.3), ("b3", 1.2, 1.4, 300, 0.3),
            ("b4", 1.4, 1.8, 380, 0.4), ("b5", 1.6, 2.2, 456, 0.4), ("b6", 1.8, 2.6, 528, 0.5),
            ("b7", 2.0, 3.1, 600, 0.5), ("b8", 2.2, 3.6, 672, 0.5), ("l2", 4.3, 5.3, 800, 0.5)):
        rows.append(scale(v1_base, width, depth, resolution, dropout, name=f"efficientnet-{suffix}"))

    v2_base = ModelSpec(name="efficientnetv2-b0", family=V2, base_blocks=_V2_BASE_BLOCKS,
                        width=1.0, depth=1.0, train_size=192, eval_size=224, dropout_rate=0.2,
                        normalization=IMAGENET, progressive=dataclasses.replace(
                            _TABLE6_S, image_size=(128, 192)))
    rows.append(v2_base)
    # name, width, depth, train size, eval size, dropout (google/automl effnetv2_configs.py).
    for suffix, width, depth, train_size, eval_size, dropout in (
            ("b1", 1.0, 1.1, 192, 240, 0.2), ("b2", 1.1, 1.2, 208, 260, 0.3),
            ("b3", 1.2, 1.4, 240, 300, 0.3)):
        rows.append(scale(v2_base, width, depth, eval_size, dropout,
                          name=f"efficientnetv2-{suffix}", train_size=train_size))
    for suffix, stages, train_size, eval_size, dropout, progressive in (
            ("s", _V2_S_BLOCKS, 300, 384, 0.2, _TABLE6_S),
            ("m", _V2_M_BLOCKS, 384, 480, 0.3, _TABLE6_M),
            ("l", _V2_L_BLOCKS, 384, 480, 0.4, _TABLE6_L),
            ("xl", _V2_XL_BLOCKS, 384, 512, 0.4,
             dataclasses.replace(_TABLE6_L, image_size=(128, 384)))):
        rows.append(ModelSpec(
            name=f"efficientnetv2-{suffix}", family=V2, base_blocks=stages, width=1.0, depth=1.0,
            train_size=train_size, eval_size=eval_size, dropout_rate=dropout,
            normalization=SYMMETRIC, progressive=progressive,
            stem_filters=blocks_lib.decode_block(stages[0]).input_filters))

    # Tiny variants for tests and laptops (the idea of timm's test variants): every code path of
    # their family in a few thousand parameters.
    rows.append(scale(v1_base, 0.25, 0.25, 64, 0.2, name="efficientnet-test"))
    rows.append(scale(v2_base, 0.25, 0.25, 64, 0.2, name="efficientnetv2-test", train_size=64,
                      progressive=dataclasses.replace(_TABLE6_S, image_size=(32, 64))))
    return {row.name: row for row in rows}


_ROWS = _build_rows()
_TEST_VARIANTS = ("efficientnet-test", "efficientnetv2-test")


def _key(name):
    return name.lower().replace("-", "").replace("_", "")


_BY_KEY = {_key(name): name for name in _ROWS}


def names(family=None, include_test=False):
    """Canonical names of the registered variants, in table order."""
    return [name for name, row in _ROWS.items()
            if (family is None or row.family == family)
            and (include_test or name not in _TEST_VARIANTS)]


def get(name):
    """The row of a variant, by official ('efficientnetv2-s') or snake_case ('efficientnet_b0') name."""
    if isinstance(name, ModelSpec):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a model name must be a string or ModelSpec, got {type(name).__name__}")
    canonical = _BY_KEY.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(name.lower().replace("_", "-"), list(_ROWS), n=3,
                                          cutoff=0.6)
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else f"known models: {', '.join(names())}")
        raise ValueError(f"unknown model {name!r}; {hint}")
    return _ROWS[canonical]
