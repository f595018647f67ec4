"""Progressive learning: the stage tables (V2 paper Table 6, google/automl) and what each stage
really trains with."""

import numpy as np
import pytest
import tensorflow as tf

from efficientnet_tf.models import layers as layers_lib
from efficientnet_tf.specs import registry
from efficientnet_tf.train import checkpoints, config as config_lib, progressive, trainer

from trainutil import tiny_config


def schedule(variant, kind, multiple=8, total=400, **overrides):
    config = config_lib.base_config()
    config.progressive.schedule = kind
    config.progressive.size_multiple = multiple
    for key, value in overrides.items():
        config.progressive[key] = value
    return progressive.stages(registry.get(variant), config, total)


def test_paper_schedule_for_v2_s_starts_at_the_minimum():
    stages = schedule("efficientnetv2-s", "paper", multiple=1)
    assert [s.image_size for s in stages] == [128, 185, 243, 300]
    stages = schedule("efficientnetv2-s", "paper")
    assert [s.image_size for s in stages] == [128, 184, 240, 296]  # multiples of 8, <= 300
    assert [s.randaug_magnitude for s in stages] == pytest.approx([5, 8.333333, 11.666667, 15])
    assert [s.dropout_rate for s in stages] == pytest.approx([0.1, 0.166667, 0.233333, 0.3])
    assert [s.mixup_alpha for s in stages] == [0, 0, 0, 0]
    assert [(s.start_step, s.end_step) for s in stages] == [(0, 100), (100, 200), (200, 300),
                                                            (300, 400)]


def test_paper_schedule_for_m_and_l():
    m = schedule("efficientnetv2-m", "paper")
    assert [s.image_size for s in m] == [128, 208, 296, 376]
    assert (m[0].mixup_alpha, m[-1].mixup_alpha, m[-1].randaug_magnitude, m[-1].dropout_rate) == (
        0.0, 0.2, 20.0, 0.4)
    l = schedule("efficientnetv2-l", "paper")
    assert (l[-1].mixup_alpha, l[-1].randaug_magnitude, l[-1].dropout_rate) == (0.4, 25.0, 0.5)


def test_official_schedule_is_the_automl_formula():
    s = schedule("efficientnetv2-s", "official", multiple=1)
    assert [x.image_size for x in s] == [171, 214, 257, 300]  # REFERENCE.md §4
    for variant in ("efficientnetv2-m", "efficientnetv2-l", "efficientnetv2-xl"):
        config_sizes = [x.image_size for x in schedule(variant, "official", image_size_max=384)]
        assert config_sizes == [192, 256, 320, 384]
    # RandAugment and mixup: linspace(min, max); dropout ramps too (automl discards its own).
    assert [x.randaug_magnitude for x in s] == pytest.approx([5, 8.333333, 11.666667, 15])
    assert s[0].dropout_rate == pytest.approx(0.1) and s[-1].dropout_rate == pytest.approx(0.3)


def test_custom_schedule_224_to_380_ramps_regularization_in_step():
    stages = schedule("efficientnet-b4", "custom", image_size_min=224, image_size_max=380,
                      dropout_min=0.2, dropout_max=0.4, randaug_min=5.0, randaug_max=15.0,
                      num_stages=3)
    assert [s.image_size for s in stages] == [224, 304, 376]
    assert [s.dropout_rate for s in stages] == pytest.approx([0.2, 0.3, 0.4])
    assert [s.randaug_magnitude for s in stages] == pytest.approx([5, 10, 15])


def test_v1_rows_need_custom_targets_and_none_is_one_stage():
    with pytest.raises(ValueError, match="efficientnet-b0 has no progressive-learning targets"):
        schedule("efficientnet-b0", "paper")
    (only,) = schedule("efficientnetv2-s", "none")
    assert (only.image_size, only.start_step, only.end_step) == (300, 0, 400)
    with pytest.raises(ValueError, match="cannot have 4 stages"):
        schedule("efficientnetv2-s", "paper", total=3)


def test_stage_at_and_table():
    stages = schedule("efficientnetv2-s", "paper")
    assert progressive.stage_at(stages, 0).index == 0
    assert progressive.stage_at(stages, 250).index == 2
    assert progressive.stage_at(stages, 10_000).index == 3
    lines = progressive.table(stages)
    assert len(lines) == 5 and lines[1].split()[:3] == ["1", "0-100", "128"]


def three_stage_config(root, **overrides):
    config = tiny_config(root, **{"train.steps": 12, "train.log_every_steps": 2,
                                  "train.checkpoint_every_steps": 2, **overrides})
    config.augment.kind = "randaugment"
    config.progressive.num_stages = 3
    config.progressive.image_size_min = 16
    config.progressive.image_size_max = 32
    config.progressive.dropout_min = 0.1
    config.progressive.dropout_max = 0.7
    config.progressive.randaug_min = 2.0
    config.progressive.randaug_max = 12.0
    config.progressive.mixup_min = 0.0
    config.progressive.mixup_max = 0.8
    return config


def test_each_stage_trains_with_its_own_size_dropout_magnitude_and_mixup(photo_folder, tmp_path,
                                                                         monkeypatch):
    zero_fraction = tf.Variable(0.0)
    original = layers_lib.Dropout.call

    def measuring_call(self, inputs, training=None):
        outputs = original(self, inputs, training=training)
        if training:  # the classifier's dropout in the train step: share of dropped features
            zero_fraction.assign(tf.reduce_mean(tf.cast(tf.equal(outputs, 0.0), tf.float32)))
        return outputs

    monkeypatch.setattr(layers_lib.Dropout, "call", measuring_call)
    config = three_stage_config(photo_folder, **{"train.batch_size": 32})
    strategy = tf.distribute.get_strategy()
    plan = trainer.plan_run(config, strategy)
    state = trainer.build_state(plan, config, strategy, str(tmp_path))
    progress = trainer.report.Progress(str(tmp_path), plan.total_steps, plan.steps_per_epoch,
                                       plan.global_batch, write=False)
    assert [s.image_size for s in plan.stages] == [16, 24, 32]
    for stage in plan.stages:
        trainer.train_stage(plan, state, config, strategy, stage, progress, str(tmp_path))
        assert state.step == stage.end_step
        # 32 examples x 320 features: the measured rate is the stage's within a few percent.
        assert float(zero_fraction.numpy()) == pytest.approx(stage.dropout_rate, abs=0.04)
        assert float(state.augmenter.magnitude.numpy()) == pytest.approx(stage.randaug_magnitude)
        assert float(state.mixing.mixup_alpha.numpy()) == pytest.approx(stage.mixup_alpha)
        images, labels = next(trainer.train_iterator(plan, state, config, strategy, stage,
                                                     state.step))
        assert images.shape[1:3] == (stage.image_size, stage.image_size)
        mixed = ((labels.numpy() > 0.01) & (labels.numpy() < 0.99)).any()
        assert mixed == (stage.mixup_alpha > 0)
    # One trace of the train loop per stage (each image size), none per step: 12 steps, 3 traces.
    assert state.steps.traces["train"] == 3


def test_a_run_killed_in_stage_three_resumes_in_stage_three(photo_folder, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    config = three_stage_config(photo_folder)
    original_save = checkpoints.Checkpoints.save

    def crash_after_ten(self, step):
        path = original_save(self, step)
        if step == 10:
            raise KeyboardInterrupt("killed in stage 3")
        return path

    monkeypatch.setattr(checkpoints.Checkpoints, "save", crash_after_ten)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_and_evaluate(config, workdir)
    monkeypatch.setattr(checkpoints.Checkpoints, "save", original_save)
    entered = []
    original_enter = trainer.enter_stage
    monkeypatch.setattr(trainer, "enter_stage",
                        lambda state, stage: (entered.append((state.step, stage)),
                                              original_enter(state, stage)))
    results = trainer.train_and_evaluate(config, workdir)
    assert results["steps"] == 12 and results["steps_this_run"] == 2
    (step, stage), = entered
    assert step == 10 and stage.index == 2 and stage.image_size == 32
    assert stage.dropout_rate == pytest.approx(0.7) and stage.mixup_alpha == pytest.approx(0.8)
