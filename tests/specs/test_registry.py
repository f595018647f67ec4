"""The registry rows against docs/reference.md §1-4, name resolution and compound scaling."""

import dataclasses

import pytest

from efficientnet_tf.specs import registry

V1_TABLE = {  # width, depth, resolution, dropout (docs/reference.md §2)
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5), "b8": (2.2, 3.6, 672, 0.5),
    "l2": (4.3, 5.3, 800, 0.5),
}
V2_TABLE = {  # width, depth, train size, eval size, dropout (docs/reference.md §3)
    "b0": (1.0, 1.0, 192, 224, 0.2), "b1": (1.0, 1.1, 192, 240, 0.2),
    "b2": (1.1, 1.2, 208, 260, 0.3), "b3": (1.2, 1.4, 240, 300, 0.3),
    "s": (1.0, 1.0, 300, 384, 0.2), "m": (1.0, 1.0, 384, 480, 0.3),
    "l": (1.0, 1.0, 384, 480, 0.4), "xl": (1.0, 1.0, 384, 512, 0.4),
}
# (in, out, repeats) per stage, docs/reference.md §3 table.
V2_STAGES = {
    "s": [(24, 24, 2), (24, 48, 4), (48, 64, 4), (64, 128, 6), (128, 160, 9), (160, 256, 15)],
    "m": [(24, 24, 3), (24, 48, 5), (48, 80, 5), (80, 160, 7), (160, 176, 14), (176, 304, 18),
          (304, 512, 5)],
    "l": [(32, 32, 4), (32, 64, 7), (64, 96, 7), (96, 192, 10), (192, 224, 19), (224, 384, 25),
          (384, 640, 7)],
    "xl": [(32, 32, 4), (32, 64, 8), (64, 96, 8), (96, 192, 16), (192, 256, 24), (256, 512, 32),
           (512, 640, 8)],
}


def test_names_cover_every_variant_in_table_order():
    assert registry.names() == (
        [f"efficientnet-{s}" for s in V1_TABLE] + [f"efficientnetv2-{s}" for s in V2_TABLE])
    assert "efficientnetv2-test" in registry.names(include_test=True)
    assert "efficientnetv2-test" not in registry.names()


@pytest.mark.parametrize("suffix", list(V1_TABLE))
def test_v1_rows(suffix):
    row = registry.get(f"efficientnet-{suffix}")
    width, depth, resolution, dropout = V1_TABLE[suffix]
    assert (row.width, row.depth, row.eval_size, row.train_size, row.dropout_rate) == (
        width, depth, resolution, resolution, dropout)
    assert row.family == registry.V1 and row.normalization == registry.MEAN_STD
    assert (row.bn_momentum, row.bn_epsilon, row.survival_prob) == (0.99, 1e-3, 0.8)
    assert row.paper_targets is None and row.official_targets is None


@pytest.mark.parametrize("suffix", list(V2_TABLE))
def test_v2_rows(suffix):
    row = registry.get(f"efficientnetv2-{suffix}")
    assert (row.width, row.depth, row.train_size, row.eval_size,
            row.dropout_rate) == V2_TABLE[suffix]
    assert (row.bn_momentum, row.bn_epsilon) == (0.9, 1e-3)
    # S/M/L/XL: (x-128)/128; B0-B3: V1's ImageNet mean/std (official README).
    expected = registry.MEAN_STD if suffix.startswith("b") else registry.SYM128
    assert row.normalization == expected
    assert all(block.kernel_size == 3 for block in row.blocks)


@pytest.mark.parametrize("suffix", list(V2_STAGES))
def test_v2_stage_tables(suffix):
    row = registry.get(f"efficientnetv2-{suffix}")
    assert [(b.input_filters, b.output_filters, b.repeats) for b in row.blocks] == V2_STAGES[suffix]
    fused = [b.fused for b in row.blocks]
    assert fused[:3] == [True] * 3 and not any(fused[3:])
    assert [b.se_ratio for b in row.blocks] == [0, 0, 0] + [0.25] * (len(row.blocks) - 3)
    assert [b.expand_ratio for b in row.blocks][:4] == [1, 4, 4, 4]
    assert row.scaled_stem_filters == V2_STAGES[suffix][0][0]
    assert row.scaled_head_filters == 1280


def test_v1_scaling_b7():
    b7 = registry.get("efficientnet-b7")
    assert b7.scaled_stem_filters == 64 and b7.scaled_head_filters == 2560
    assert [b.repeats for b in b7.blocks] == [4, 7, 7, 10, 10, 13, 4]  # ceil(3.1 * r)
    assert [b.output_filters for b in b7.blocks] == [32, 48, 80, 160, 224, 384, 640]
    assert b7.num_blocks == 55


def test_v2_b3_has_no_rounding_guard():
    b3 = registry.get("efficientnetv2-b3")
    assert [b.output_filters for b in b3.blocks] == [16, 40, 56, 112, 136, 232]
    assert b3.scaled_head_filters == 1536


def test_progressive_targets_table6():
    s, m, large = (registry.get(f"efficientnetv2-{x}").paper_targets for x in "sml")
    assert s == registry.ProgressiveTargets((128, 300), (5, 15), (0, 0), (0, 0), (0.1, 0.3))
    assert m == registry.ProgressiveTargets((128, 380), (5, 20), (0, 0.2), (0, 0), (0.1, 0.4))
    assert large == registry.ProgressiveTargets((128, 380), (5, 25), (0, 0.4), (0, 0), (0.1, 0.5))
    assert registry.get("efficientnetv2-xl").paper_targets.image_size == (128, 384)
    assert registry.get("efficientnetv2-b2").paper_targets.image_size == (128, 208)


@pytest.mark.parametrize("suffix, ram, alpha, dropout", [
    ("s", 10, 0.0, 0.2), ("m", 15, 0.2, 0.3), ("l", 20, 0.5, 0.4), ("xl", 20, 0.5, 0.4),
    ("b0", 0, 0.0, 0.2), ("b1", 0, 0.0, 0.2), ("b2", 0, 0.0, 0.3), ("b3", 0, 0.0, 0.3)])
def test_official_targets_are_automls_configs(suffix, ram, alpha, dropout):
    """effnetv2_configs.efficientnetv2_params: RandAugment magnitude (ram), mixup = cutmix alpha,
    dropout; main.py: from 128 (ibase) to the train size, RandAugment from 5, mixing from 0."""
    row = registry.get(f"efficientnetv2-{suffix}")
    assert row.official_targets == registry.ProgressiveTargets(
        (128, row.train_size), (5, ram), (0, alpha), (0, alpha), (dropout, dropout))


@pytest.mark.parametrize("alias, canonical", [
    ("efficientnet-b0", "efficientnet-b0"), ("efficientnet_b0", "efficientnet-b0"),
    ("EfficientNetB0", "efficientnet-b0"), ("efficientnetv2-s", "efficientnetv2-s"),
    ("efficientnetv2_s", "efficientnetv2-s"), ("EfficientNetV2-XL", "efficientnetv2-xl"),
])
def test_official_and_snake_case_names_resolve(alias, canonical):
    assert registry.get(alias).name == canonical


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown model 'efficientnetv2-ss'; did you mean "
                                         r"'efficientnetv2-s'"):
        registry.get("efficientnetv2-ss")
    with pytest.raises(ValueError, match="known models: efficientnet-b0"):
        registry.get("resnet50")


def test_scale_gives_the_hand_computed_b2_and_v2_b3_tables():
    """round_filters(f * 1.1) with V1's 10% guard and ceil(1.2 * repeats), worked out by hand:
    32->32, 16->16, 24->24, 40->48 (44 + 4 floored to 8), 80->88, 112->120, 192->208,
    320->352, head 1280->1408; repeats 1,2,2,3,3,4,1 -> 2,3,3,4,4,5,2."""
    row = registry.scale("efficientnet-b0", 1.1, 1.2, 260)
    assert row.name == "efficientnet-b0-w1.1-d1.2-r260" and row.eval_size == 260
    assert [(b.repeats, b.input_filters, b.output_filters) for b in row.blocks] == [
        (2, 32, 16), (3, 16, 24), (3, 24, 48), (4, 48, 88), (4, 88, 120), (5, 120, 208),
        (2, 208, 352)]
    assert (row.scaled_stem_filters, row.scaled_head_filters) == (32, 1408)
    # V2 (no guard), width 1.2, depth 1.4: 16->16 (19.2 + 4 floored), 32->40, 48->56, 96->112,
    # 112->136, 192->232; head 1536; repeats 1,2,2,3,5,8 -> 2,3,3,5,7,12 (keras V2-B3).
    v2 = registry.scale("efficientnetv2-b0", 1.2, 1.4, 300, train_size=240)
    assert [(b.repeats, b.output_filters) for b in v2.blocks] == [
        (2, 16), (3, 40), (3, 56), (5, 112), (7, 136), (12, 232)]
    assert v2.scaled_head_filters == 1536
    assert v2.paper_targets.image_size == (128, 240)
    assert v2.official_targets.image_size == (128, 240)


def test_compound_scale_formula():
    assert registry.compound_scale(0).blocks == registry.get("efficientnet-b0").blocks
    row = registry.compound_scale(2)
    assert row.width == pytest.approx(1.1 ** 2) and row.depth == pytest.approx(1.2 ** 2)
    assert row.eval_size == 296  # 224 * 1.15^2 = 296.2, to a multiple of 8
    assert row.dropout_rate == 0.3
    # FLOPs of a conv net grow with d * w^2 * r^2 = (1.2 * 1.1^2 * 1.15^2)^phi = 1.92^phi ~ 2^phi.
    assert row.depth * row.width ** 2 * (row.eval_size / 224) ** 2 == pytest.approx(3.68, abs=0.02)


def test_compound_scale_coefficients_are_overridable():
    row = registry.compound_scale(1, alpha=1.4, beta=1.0, gamma=1.0)
    assert (row.width, row.depth, row.eval_size) == (1.0, 1.4, 224)
    assert row.blocks[3].repeats == 5  # ceil(1.4 * 3)
    v2 = registry.compound_scale(1, base="efficientnetv2-b0")
    assert v2.family == registry.V2 and v2.eval_size == 256
    assert v2.train_size == 224  # V2-B0 trains at 192: 192 * 1.15 = 220.8, to a multiple of 8


@pytest.mark.parametrize("kwargs, message", [
    (dict(phi=-1), "phi must be >= 0"), (dict(phi=1, alpha=0.5), "alpha must be >= 1"),
])
def test_compound_scale_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        registry.compound_scale(**kwargs)


def test_rows_validate_their_fields():
    row = registry.get("efficientnet-b0")
    with pytest.raises(ValueError, match="dropout_rate must be in"):
        dataclasses.replace(row, dropout_rate=1.5)
    with pytest.raises(ValueError, match="unknown token"):
        dataclasses.replace(row, base_blocks=("r1_k3_s1_e1_i32_o16_zz",))


def test_scaled_rows_by_name():
    """The grammar of --config.model.name and `info --model`: BASE:w=,d=,r= or BASE:phi=."""
    row = registry.get("efficientnet-b0:w=1.1,d=1.2,r=240")
    assert row.name == "efficientnet-b0:w=1.1,d=1.2,r=240"
    assert (row.width, row.depth, row.eval_size) == (1.1, 1.2, 240)
    assert row.scaled_head_filters == 1408  # round_filters(1280 x 1.1), as B2
    assert [b.repeats for b in row.blocks] == [2, 3, 3, 4, 4, 5, 2]  # ceil(1.2 x 1,2,2,3,3,4,1)
    # Spacing and number formats do not matter: the row's name is canonical.
    assert registry.get("efficientnet-b0: r=240, d=1.20, w=1.10").name == row.name
    phi = registry.get("efficientnet-b0:phi=2")
    assert phi.blocks == registry.compound_scale(2).blocks and phi.eval_size == 296
    assert registry.get(phi.name) == phi  # the recorded name rebuilds the same row


@pytest.mark.parametrize("name, message", [
    ("efficientnet-b0:w=1.1", "lacks d, r"), ("efficientnet-b0:w=wide,d=1,r=224", "KEY=NUMBER"),
    ("efficientnet-b0:x=2", "unknown keys x"), ("efficientnet-b0:", "no keys"),
    ("efficientnet-b9:phi=1", "unknown model 'efficientnet-b9'")])
def test_bad_scaled_names_say_what_is_wrong(name, message):
    with pytest.raises(ValueError, match=message):
        registry.get(name)


def test_compound_names_build_the_compound_row():
    name = registry.compound_name("efficientnet-b0", 1.2, 1.1, 1.15, phi=3)
    assert name == "efficientnet-b0:phi=3,alpha=1.2,beta=1.1,gamma=1.15"
    row = registry.get(name)
    assert (row.width, row.depth, row.eval_size) == (
        pytest.approx(1.1 ** 3), pytest.approx(1.2 ** 3), 344)  # 224 * 1.15^3 = 340.7 -> 344
    # A base that is itself a scaled row: the same row, written as width, depth, resolution.
    base = "efficientnetv2-test:w=0.25,d=0.25,r=32"
    name = registry.compound_name(base, 1.2, 1.1, 1.15, phi=2)
    expected = registry.compound_scale(2, registry.get(base), 1.2, 1.1, 1.15)
    row = registry.get(name)
    assert name == "efficientnetv2-test:w=0.3025,d=0.36,r=40,train=40,dropout=0.3"
    assert (row.blocks, row.eval_size, row.dropout_rate) == (
        expected.blocks, expected.eval_size, expected.dropout_rate)
