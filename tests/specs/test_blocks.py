"""Block-string grammar and rounding rules (docs/reference.md §1-3)."""

import dataclasses

import pytest

from efficientnet_tf.specs import blocks, registry


def _all_registry_strings():
    return sorted({s for name in registry.names(include_test=True)
                   for s in registry.get(name).base_blocks})


@pytest.mark.parametrize("block_string", _all_registry_strings())
def test_every_table_string_round_trips(block_string):
    spec = blocks.decode_block(block_string)
    assert blocks.encode_block(spec) == block_string
    assert blocks.decode_block(blocks.encode_block(spec)) == spec


def test_decode_fields():
    spec = blocks.decode_block("r2_k5_s2_e6_i24_o40_se0.25")
    assert spec == blocks.BlockSpec(repeats=2, kernel_size=5, stride=2, expand_ratio=6,
                                    input_filters=24, output_filters=40, se_ratio=0.25)
    fused = blocks.decode_block("r4_k3_s2_e4_i24_o48_c1")
    assert fused.fused and not fused.has_se and fused.id_skip
    assert not blocks.decode_block("r1_k3_s1_e1_i32_o16_noskip").id_skip


def test_official_v1_double_stride_spelling():
    # tensorflow/tpu writes 's22'; it is the same block as 's2' and encodes canonically.
    official = blocks.decode_block("r2_k3_s22_e6_i16_o24_se0.25")
    assert official == blocks.decode_block("r2_k3_s2_e6_i16_o24_se0.25")
    assert blocks.encode_block(official) == "r2_k3_s2_e6_i16_o24_se0.25"


def test_specs_are_frozen():
    spec = blocks.decode_block("r1_k3_s1_e1_i32_o16_se0.25")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.repeats = 3


@pytest.mark.parametrize("bad, message", [
    ("r1_k3_s1_e1_i32", "lacks o"),
    ("r1_k3_s1_e1_i32_o16_x7", "unknown token 'x7'"),
    ("r1_k3_s12_e1_i32_o16", "non-square"),
    ("r1_k3_s1_e1_i32_o16_c2", "c2"),
    ("r1_k3_s1_e1_i32_o16_seX", "'se' needs a number"),
    ("r1_k3_s1_e1_i32_o16_r2", "twice"),
    ("rA_k3_s1_e1_i32_o16", "'r' needs an integer"),
    ("r0_k3_s1_e1_i32_o16", "repeats must be a positive integer"),
    ("", "non-empty"),
])
def test_bad_strings_name_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        blocks.decode_block(bad)


def test_round_filters_v1_guard_and_v2_without_it():
    # V1: never round down by more than 10% (docs/reference.md §1).
    assert blocks.round_filters(32, 1.1) == 32  # 35.2 -> 32, within 10%
    assert blocks.round_filters(1280, 2.0) == 2560
    assert blocks.round_filters(16, 0.25) == 8  # minimum depth
    assert blocks.round_filters(40, 1.1) == 48  # 44 -> int(48) // 8 * 8
    assert blocks.round_filters(24, 1.1) == 24  # 26.4 -> 24; 24 >= 0.9 * 26.4
    # A case where the guard bites: 11 * 1.0 rounds to 8 < 9.9, so V1 adds 8 and V2 does not.
    assert blocks.round_filters(11, 1.0, guard=True) == 16
    assert blocks.round_filters(11, 1.0, guard=False) == 8


def test_round_repeats_is_ceil():
    assert [blocks.round_repeats(r, 3.1) for r in (1, 2, 3, 4)] == [4, 7, 10, 13]
    assert blocks.round_repeats(2, 1.1) == 3
