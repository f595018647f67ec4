"""Block specs, the block-string grammar and width/depth rounding (V1 paper §3.3, V2 §3.3).

A block string describes one stage of the network as the official google/automl and tensorflow/tpu
code writes it: underscore-separated tokens, each a key followed by its value.

    r<int>      repeats of the block in the stage (before depth scaling)
    k<int>      kernel size (square)
    s<int>      stride of the first block of the stage; the official V1 strings write it twice
                (``s22``), which decodes to the same spec as ``s2``
    e<int>      expansion ratio of the inverted bottleneck
    i<int>      input filters of the first block (before width scaling)
    o<int>      output filters (before width scaling)
    se<float>   squeeze-excite ratio, relative to the block's INPUT filters; absent means no SE
    c<0|1>      conv type: 0 MBConv (default), 1 Fused-MBConv
    noskip      no identity shortcut even where the shapes would allow one

``encode_block(decode_block(s)) == s`` for every string written in the canonical order above.
"""

import dataclasses
import math
import re

_TOKEN = re.compile(r"^(se|noskip|[rksioec])(.*)$")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One stage of MBConv or Fused-MBConv blocks, as a block string describes it."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: float = 0.0
    fused: bool = False
    id_skip: bool = True

    def __post_init__(self):
        for field in ("repeats", "kernel_size", "stride", "expand_ratio", "input_filters",
                      "output_filters"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BlockSpec.{field} must be a positive integer, got {value!r}")
        if not 0.0 <= self.se_ratio <= 1.0:
            raise ValueError(f"BlockSpec.se_ratio must be in [0, 1], got {self.se_ratio!r}")

    @property
    def has_se(self):
        return self.se_ratio > 0


def _parse_int(key, text, block_string):
    if not text.isdigit():
        raise ValueError(f"block string {block_string!r}: '{key}' needs an integer, got {text!r}")
    return int(text)


def decode_block(block_string):
    """Decodes one block string (e.g. 'r2_k3_s2_e6_i16_o24_se0.25') into a BlockSpec."""
    if not isinstance(block_string, str) or not block_string:
        raise ValueError(f"a block string must be a non-empty string, got {block_string!r}")
    values = {}
    for token in block_string.split("_"):
        match = _TOKEN.match(token)
        if not match:
            raise ValueError(f"block string {block_string!r}: unknown token {token!r}; "
                             "expected one of r, k, s, e, i, o, se, c, noskip")
        key, text = match.groups()
        if key in values:
            raise ValueError(f"block string {block_string!r}: '{key}' appears twice")
        values[key] = text
    missing = [key for key in "rksieo" if key not in values]
    if missing:
        raise ValueError(f"block string {block_string!r} lacks {', '.join(missing)}")

    stride_text = values["s"]
    if len(stride_text) == 2 and stride_text[0] == stride_text[1]:
        stride_text = stride_text[0]  # official V1 spelling 's22'
    if len(stride_text) != 1:
        raise ValueError(f"block string {block_string!r}: stride {values['s']!r} must be one digit "
                         "or the same digit twice (non-square strides are not supported)")
    conv_type = values.get("c", "0")
    if conv_type not in ("0", "1"):
        raise ValueError(f"block string {block_string!r}: conv type c{conv_type} must be c0 "
                         "(MBConv) or c1 (Fused-MBConv)")
    if values.get("noskip", "") != "":
        raise ValueError(f"block string {block_string!r}: 'noskip' takes no value")
    se_ratio = 0.0
    if "se" in values:
        try:
            se_ratio = float(values["se"])
        except ValueError:
            raise ValueError(f"block string {block_string!r}: 'se' needs a number, "
                             f"got {values['se']!r}") from None
    return BlockSpec(
        repeats=_parse_int("r", values["r"], block_string),
        kernel_size=_parse_int("k", values["k"], block_string),
        stride=_parse_int("s", stride_text, block_string),
        expand_ratio=_parse_int("e", values["e"], block_string),
        input_filters=_parse_int("i", values["i"], block_string),
        output_filters=_parse_int("o", values["o"], block_string),
        se_ratio=se_ratio,
        fused=conv_type == "1",
        id_skip="noskip" not in values,
    )


def encode_block(block):
    """Encodes a BlockSpec back into its canonical block string."""
    tokens = [f"r{block.repeats}", f"k{block.kernel_size}", f"s{block.stride}",
              f"e{block.expand_ratio}", f"i{block.input_filters}", f"o{block.output_filters}"]
    if block.has_se:
        tokens.append(f"se{block.se_ratio:g}")
    if block.fused:
        tokens.append("c1")
    if not block.id_skip:
        tokens.append("noskip")
    return "_".join(tokens)


def round_filters(filters, width, divisor=8, min_depth=None, guard=True):
    """Scales a filter count by `width` and rounds it to a multiple of `divisor`.

    `guard` is V1's rule that rounding down may not lose more than 10%; V2 drops it.
    """
    minimum = min_depth or divisor
    scaled = filters * width
    rounded = max(minimum, int(scaled + divisor / 2) // divisor * divisor)
    if guard and rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_to_multiple(value, multiple, minimum=None):
    """`value` to the nearest multiple of `multiple` (Python's round: a half to the even one), and
    at least `minimum` (default: one multiple). Image sizes and BiFPN widths are rounded so."""
    return max(multiple if minimum is None else minimum, int(round(value / multiple)) * multiple)


def round_repeats(repeats, depth):
    """Scales the repeats of a stage by `depth`, rounding up."""
    return int(math.ceil(depth * repeats))
