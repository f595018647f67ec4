"""Progressive learning: the stage tables (V2 paper Table 6, google/automl) and what each stage
really trains with."""

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


def table(stages):
    """(size, RandAugment, mixup, cutmix, dropout) per stage, rounded for comparison."""
    return [(s.image_size, round(s.randaug_magnitude, 3), round(s.mixup_alpha, 4),
             round(s.cutmix_alpha, 4), round(s.dropout_rate, 4)) for s in stages]


# google/automl efficientnetv2 main.py (sizes int(128 + (train - 128) * (i + 1) / 4), RandAugment
# linspace(5, ram, 4), mixup = cutmix linspace(0, alpha, 4), dropout fixed) with
# effnetv2_configs.py's ram / alpha / dropout: S 10 / 0 / 0.2, M 15 / 0.2 / 0.3, L 20 / 0.5 / 0.4.
OFFICIAL = {
    "efficientnetv2-s": [(171, 5.0, 0.0, 0.0, 0.2), (214, 6.667, 0.0, 0.0, 0.2),
                         (257, 8.333, 0.0, 0.0, 0.2), (300, 10.0, 0.0, 0.0, 0.2)],
    "efficientnetv2-m": [(192, 5.0, 0.0, 0.0, 0.3), (256, 8.333, 0.0667, 0.0667, 0.3),
                         (320, 11.667, 0.1333, 0.1333, 0.3), (384, 15.0, 0.2, 0.2, 0.3)],
    "efficientnetv2-l": [(192, 5.0, 0.0, 0.0, 0.4), (256, 10.0, 0.1667, 0.1667, 0.4),
                         (320, 15.0, 0.3333, 0.3333, 0.4), (384, 20.0, 0.5, 0.5, 0.4)],
    "efficientnetv2-b0": [(144, 5.0, 0.0, 0.0, 0.2), (160, 3.333, 0.0, 0.0, 0.2),
                          (176, 1.667, 0.0, 0.0, 0.2), (192, 0.0, 0.0, 0.0, 0.2)],
    "efficientnetv2-b3": [(156, 5.0, 0.0, 0.0, 0.3), (184, 3.333, 0.0, 0.0, 0.3),
                          (212, 1.667, 0.0, 0.0, 0.3), (240, 0.0, 0.0, 0.0, 0.3)],
}
# The V2 paper's Table 6 from min to max (S 128-300, RandAugment 5-15, mixup 0, dropout 0.1-0.3;
# M 128-380, 5-20, 0-0.2, 0.1-0.4; L 128-380, 5-25, 0-0.4, 0.1-0.5), sizes rounded to 8.
PAPER = {
    "efficientnetv2-s": [(128, 5.0, 0.0, 0.0, 0.1), (184, 8.333, 0.0, 0.0, 0.1667),
                         (240, 11.667, 0.0, 0.0, 0.2333), (296, 15.0, 0.0, 0.0, 0.3)],
    "efficientnetv2-m": [(128, 5.0, 0.0, 0.0, 0.1), (208, 10.0, 0.0667, 0.0, 0.2),
                         (296, 15.0, 0.1333, 0.0, 0.3), (376, 20.0, 0.2, 0.0, 0.4)],
    "efficientnetv2-l": [(128, 5.0, 0.0, 0.0, 0.1), (208, 11.667, 0.1333, 0.0, 0.2333),
                         (296, 18.333, 0.2667, 0.0, 0.3667), (376, 25.0, 0.4, 0.0, 0.5)],
}


@pytest.mark.parametrize("variant", sorted(OFFICIAL))
def test_official_schedule_is_automls(variant):
    assert table(schedule(variant, "official")) == OFFICIAL[variant]


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_paper_schedule_is_table_6(variant):
    assert table(schedule(variant, "paper")) == PAPER[variant]


def test_paper_schedule_stages_and_sizes_without_rounding():
    stages = schedule("efficientnetv2-s", "paper", multiple=1)
    assert [s.image_size for s in stages] == [128, 185, 243, 300]
    assert [(s.start_step, s.end_step) for s in stages] == [(0, 100), (100, 200), (200, 300),
                                                            (300, 400)]
    xl = schedule("efficientnetv2-xl", "official")
    assert [s.image_size for s in xl] == [192, 256, 320, 384]


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
    with pytest.raises(ValueError, match="cannot have 4 stages: train longer .*"
                                         "progressive.num_stages=3"):
        schedule("efficientnetv2-s", "paper", total=3)


def test_stages_with_equal_settings_are_one_stage():
    """Images too small to grow: one stage, not three identical ones that each pay a switch."""
    (only,) = schedule("efficientnetv2-b0", "custom", num_stages=3, image_size_min=48,
                       image_size_max=48, randaug_min=6.0, randaug_max=6.0, dropout_min=0.2,
                       dropout_max=0.2, mixup_min=0.0, mixup_max=0.0)
    assert (only.index, only.image_size, only.start_step, only.end_step) == (0, 48, 0, 400)
    # Equal sizes with a ramping dropout stay apart.
    ramped = schedule("efficientnetv2-b0", "custom", num_stages=3, image_size_min=48,
                      image_size_max=48, dropout_min=0.1, dropout_max=0.3)
    assert [(s.index, s.start_step) for s in ramped] == [(0, 0), (1, 133), (2, 266)]


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


@pytest.mark.parametrize("prepared", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["inline", "prepared"])
def test_each_stage_trains_with_its_own_size_dropout_magnitude_and_mixup(photo_folder, tmp_path,
                                                                         monkeypatch, prepared):
    """Also when each next stage is made in the background (trainer.NextStage), which sets its
    dropout rate while the stage before it still trains."""
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
    run = trainer.resolve_run(config, strategy)
    state = trainer.build_state(run, strategy, str(tmp_path))
    progress = trainer.report.Progress(str(tmp_path), run.total_steps, run.steps_per_epoch,
                                       run.global_batch, write=False)
    assert [s.image_size for s in run.stages] == [16, 24, 32]
    preparer = trainer.NextStage(state) if prepared else None
    for stage, following in zip(run.stages, run.stages[1:] + (None,)):
        trainer.train_stage(state, stage, progress, str(tmp_path), following, preparer)
        assert state.step == stage.end_step
        # 32 examples x 320 features: the measured rate is the stage's within a few percent.
        assert float(zero_fraction.numpy()) == pytest.approx(stage.dropout_rate, abs=0.04)
        assert state.task.augmenter(stage).magnitude == pytest.approx(stage.randaug_magnitude)
        images, labels = next(trainer.train_iterator(state, stage, state.step))
        assert images.shape[1:3] == (stage.image_size, stage.image_size)
        mixed = ((labels.numpy() > 0.01) & (labels.numpy() < 0.99)).any()
        assert mixed == (stage.mixup_alpha > 0)
    # One trace of the train loop per stage (each image size), none per step: 12 steps, 3 traces.
    assert state.steps.traces["train"] == 3


@pytest.mark.slow  # the default suite resumes a run after SIGKILL
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
    original_train_stage = trainer.train_stage
    monkeypatch.setattr(trainer, "train_stage",
                        lambda state, stage, *rest: (entered.append((state.step, stage)),
                                                     original_train_stage(state, stage, *rest))[1])
    results = trainer.train_and_evaluate(config, workdir)
    assert results["steps"] == 12 and results["steps_this_run"] == 2
    (step, stage), = entered
    assert step == 10 and stage.index == 2 and stage.image_size == 32
    assert stage.dropout_rate == pytest.approx(0.7) and stage.mixup_alpha == pytest.approx(0.8)


@pytest.mark.slow  # 45 s; the default suite trains the stages inline
def test_preparing_the_next_stage_in_the_background_changes_nothing(photo_folder, tmp_path,
                                                                    monkeypatch):
    """The same losses, step for step, whether each stage's dataset and step function are made
    when it starts or in the background during the stage before."""
    def losses(name, prepare):
        config = three_stage_config(photo_folder, **{"train.log_every_steps": 1,
                                                     "train.prepare_next_stage": prepare})
        results = trainer.train_and_evaluate(config, str(tmp_path / name))
        series = trainer.report.read_scalars(str(tmp_path / name / "train"))["loss"]
        return [value for _, value in series], results

    started = []
    original_start = trainer.NextStage.start
    monkeypatch.setattr(trainer.NextStage, "start", lambda self, stage: (
        started.append(stage.index), original_start(self, stage))[1])
    prepared, results = losses("prepared", True)
    assert started == [1, 2]  # stages 2 and 3 were made in the background
    inline, _ = losses("inline", False)
    assert started == [1, 2]
    assert len(prepared) == 12
    assert prepared == pytest.approx(inline, rel=1e-6)
    assert [timing["steps"] for timing in results["stage_timings"]] == [4, 4, 4]
