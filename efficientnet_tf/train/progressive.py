"""Progressive learning: the stages of a run (V2 paper §4, Algorithm 1 and Table 6).

Training is split into N stages; stage i trains at an image size, dropout rate, RandAugment
magnitude and mixup alpha interpolated between (min, max). Pure functions of the config, the
variant's row and the run's length, so that a resumed run finds the same stage at the same step.

Schedules:
  official  google/automl efficientnetv2 main.py, exactly: the row's official targets; stage i
            of N at size int(128 + (train - 128) * (i + 1) / N), not rounded, so the first stage
            is above 128 (V2-S 171/214/257/300); RandAugment, mixup and cutmix linspace(min,
            max, N)[i]; dropout fixed at the row's rate (automl computes a ramp, then deletes it).
  paper     the V2 paper's Table 6 (the row's paper targets): every quantity from min to max,
            stage i at min + (max - min) * i / (N - 1), sizes rounded to `size_multiple`. The
            paper ramps dropout too; that part is ours, as the official code never did it.
  custom    the paper's interpolation between the (min, max) given in the config (defaults: the
            row's paper targets).
  none      one stage at train.image_size (default: the row's train size) and the configured
            regularization.
"""

import dataclasses

from efficientnet_tf.specs import blocks as blocks_lib
from efficientnet_tf.specs import registry


@dataclasses.dataclass(frozen=True)
class Stage:
    """What a stage trains with, and the steps [start_step, end_step) it covers."""

    index: int
    start_step: int
    end_step: int
    image_size: int
    dropout_rate: float
    randaug_magnitude: float
    mixup_alpha: float
    cutmix_alpha: float
    # False: the stage trains without scale jitter (a detector's last stage, as the task plans
    # it: Task.plan_stages)
    scale_jitter: bool = True


def round_size(size, multiple, ceiling=None):
    """Nearest multiple of `multiple` (at least one), and not above `ceiling` (the largest size
    the schedule allows) when one is given: S's 300 becomes 296 with multiple 8, not 304."""
    rounded = blocks_lib.round_to_multiple(size, multiple)
    if ceiling is not None and rounded > ceiling:
        rounded = max(multiple, int(ceiling) // multiple * multiple)
    return rounded


def targets(spec, config):
    """(min, max) per quantity: the config's progressive values where given, else the row's
    targets of the schedule (for dropout: a fixed config.model.dropout_rate, if set, first)."""
    progressive = config.progressive
    row = spec.official_targets if progressive.schedule == "official" else spec.paper_targets

    def pick(low, high, default):
        return (default[0] if low is None else low, default[1] if high is None else high)

    if row is None and None in (progressive.image_size_min, progressive.image_size_max):
        raise ValueError(f"{spec.name} has no progressive-learning targets (V1 rows have none); "
                         "set config.progressive.image_size_min/max (and the others)")
    augment = config.augment
    if row is None:
        row = registry.ProgressiveTargets(
            (spec.train_size,) * 2, (augment.randaug_magnitude,) * 2, (augment.mixup_alpha,) * 2,
            (augment.cutmix_alpha,) * 2, (spec.dropout_rate,) * 2)
    # An explicit config.model.dropout_rate holds for every stage unless the progressive
    # section ramps dropout itself.
    dropout_default = row.dropout_rate
    if config.model.dropout_rate is not None:
        dropout_default = (config.model.dropout_rate,) * 2
    return registry.ProgressiveTargets(
        image_size=pick(progressive.image_size_min, progressive.image_size_max, row.image_size),
        randaug_magnitude=pick(progressive.randaug_min, progressive.randaug_max,
                               row.randaug_magnitude),
        mixup_alpha=pick(progressive.mixup_min, progressive.mixup_max, row.mixup_alpha),
        cutmix_alpha=pick(progressive.cutmix_min, progressive.cutmix_max, row.cutmix_alpha),
        dropout_rate=pick(progressive.dropout_min, progressive.dropout_max, dropout_default))


def _lerp(bounds, fraction):
    low, high = bounds
    return low + (high - low) * fraction


def stages(spec, config, total_steps):
    """The stages of a run of `total_steps` steps of variant `spec` under `config`."""
    schedule = config.progressive.schedule
    count = config.progressive.num_stages
    multiple = config.progressive.size_multiple
    if multiple < 1:
        raise ValueError(f"progressive.size_multiple must be >= 1, got {multiple!r}")
    dropout = config.model.dropout_rate
    dropout = spec.dropout_rate if dropout is None else dropout
    if schedule == "none":
        size = config.train.image_size or spec.train_size
        return [Stage(0, 0, total_steps, size, dropout,
                      config.augment.randaug_magnitude, config.augment.mixup_alpha,
                      config.augment.cutmix_alpha)]
    if schedule not in ("official", "paper", "custom"):
        raise ValueError(f"unknown progressive schedule {schedule!r}; use paper, official, "
                         "custom or none")
    if count < 1:
        raise ValueError(f"progressive.num_stages must be >= 1, got {count!r}")
    if total_steps < count:
        raise ValueError(f"a run of {total_steps} steps cannot have {count} stages: train "
                         f"longer (train.steps >= {count}, or more train.epochs), or set "
                         f"progressive.num_stages={max(1, total_steps)} (or "
                         "progressive.schedule=none)")
    bounds = targets(spec, config)
    result = []
    for index in range(count):
        if schedule == "official":
            size = int(_lerp(bounds.image_size, (index + 1) / count))
            ramp = index / (count - 1) if count > 1 else 0.0
        else:
            ramp = index / (count - 1) if count > 1 else 1.0
            size = round_size(_lerp(bounds.image_size, ramp), multiple,
                              ceiling=bounds.image_size[1])
        result.append(Stage(
            index=index, start_step=total_steps * index // count,
            end_step=total_steps * (index + 1) // count, image_size=size,
            dropout_rate=round(_lerp(bounds.dropout_rate, ramp), 6),
            randaug_magnitude=round(_lerp(bounds.randaug_magnitude, ramp), 6),
            mixup_alpha=round(_lerp(bounds.mixup_alpha, ramp), 6),
            cutmix_alpha=round(_lerp(bounds.cutmix_alpha, ramp), 6)))
    return merge_equal(result)


def merge_equal(stage_list):
    """Stages with the same settings as the one before joined to it (images too small to grow:
    one stage instead of several identical ones, each of which pays a switch)."""
    merged = []
    for stage in stage_list:
        if merged and _settings(merged[-1]) == _settings(stage):
            merged[-1] = dataclasses.replace(merged[-1], end_step=stage.end_step)
        else:
            merged.append(dataclasses.replace(stage, index=len(merged)))
    return merged


def _settings(stage):
    return (stage.image_size, stage.dropout_rate, stage.randaug_magnitude, stage.mixup_alpha,
            stage.cutmix_alpha, stage.scale_jitter)


def stage_at(stage_list, step):
    """The stage that trains step `step` (the last one once training is over)."""
    for stage in stage_list:
        if stage.start_step <= step < stage.end_step:
            return stage
    return stage_list[-1]


def table(stage_list):
    """The stage table as text lines, for the start-of-run log."""
    lines = ["stage  steps              size  dropout  randaug  mixup  cutmix"]
    for s in stage_list:
        lines.append(f"{s.index + 1:>5}  {s.start_step:>7}-{s.end_step:<9} {s.image_size:>5} "
                     f"{s.dropout_rate:>8.3f} {s.randaug_magnitude:>8.2f} {s.mixup_alpha:>6.3f} "
                     f"{s.cutmix_alpha:>7.3f}" + ("" if s.scale_jitter else "  no scale jitter"))
    return lines
