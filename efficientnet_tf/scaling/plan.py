"""The compound-scaling search's plan (V1 paper §3.3, step 1): which networks to train.

1. `grid`: every (α, β, γ) >= 1 on a grid of `grid_step` whose α·β²·γ² lies within `tolerance`
   of `factor` (the paper's constraint: a conv net's FLOPs grow with d·w²·r²).
2. `make_plan`: each point becomes a registry row the way `compound_scale` makes one (filters to
   multiples of 8, repeats rounded up, resolution to a multiple of 8); points that round to the
   same network are one candidate (named by the one whose α·β²·γ² is closest to factor); each
   candidate's multiply-accumulates are counted on its built graph (models/stats.py), and only
   those within `tolerance` of factor x the base's are trained. Trained beside them: the base
   itself, the paper's (1.2, 1.1, 1.15), and one baseline per dimension, scaled alone to the
   grid value whose counted MACs come closest to factor x the base's (depth only, width only,
   resolution only).

The plan is recorded in WORKDIR/plan.json with the settings and the recipe (what the config
leaves to the data decided once, for the base: `settle_recipe`), so a rerun or another shard
trains the same candidates; a rerun with other settings is refused.
"""

import dataclasses
import itertools
import json
import math
from typing import Optional, Tuple

import keras
import tensorflow as tf
from absl import logging

from efficientnet_tf import tasks
from efficientnet_tf.models import efficientnet, stats
from efficientnet_tf.specs import registry
from efficientnet_tf.tasks import base as tasks_base
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import files

PAPER = (1.2, 1.1, 1.15)  # V1 paper §3.3: the grid search's result on ImageNet for B0
PLAN_FILE = "plan.json"
# Roles of a trained point: the grid's candidates, the unscaled base, the paper's
# coefficients, and the three single-dimension baselines.
CANDIDATE, BASE, PAPER_ROLE = "candidate", "base", "paper"
BASELINES = (("depth", 0), ("width", 1), ("resolution", 2))  # (role, index in (α, β, γ))


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a search is: the base row, the FLOPs factor, the grid and its tolerance, and the
    per-candidate budget (epochs; None: the recipe's) and seeds."""

    base: str
    factor: float = 2.0
    grid_step: float = 0.05
    tolerance: float = 0.1
    epochs: Optional[float] = None
    seeds: Tuple[int, ...] = (0,)

    def __post_init__(self):
        if not self.factor > 1:
            raise ValueError(f"factor must be > 1 (how much more compute φ = 1 buys), got "
                             f"{self.factor!r}")
        if not 0 < self.grid_step <= 1:
            raise ValueError(f"grid_step must be in (0, 1], got {self.grid_step!r}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1) (a share of factor), got "
                             f"{self.tolerance!r}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0 (or unset: the recipe's), got {self.epochs!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct integers >= 0, got {self.seeds!r}")
        if not isinstance(registry.get(self.base), registry.ModelSpec):
            raise ValueError(f"scale-search scales a classification network; {self.base!r} is a "
                             "detector (EfficientDet scales by its own rule: efficientdet:phi=N)")

    def planned(self):
        """The settings a plan is bound to (seeds may be added to a finished search)."""
        return {"base": self.base, "factor": self.factor, "grid_step": self.grid_step,
                "tolerance": self.tolerance, "epochs": self.epochs}


def grid(factor, grid_step, tolerance):
    """Every (α, β, γ) >= 1 on the grid with |α·β²·γ² / factor - 1| <= tolerance, sorted."""
    top = factor * (1 + tolerance)

    def axis(limit):
        return [round(1 + step * grid_step, 6)
                for step in range(int(math.floor((limit - 1) / grid_step + 1e-9)) + 1)]

    return [(alpha, beta, gamma)
            for alpha, beta, gamma in itertools.product(axis(top), axis(math.sqrt(top)),
                                                        axis(math.sqrt(top)))
            if abs(alpha * beta ** 2 * gamma ** 2 / factor - 1) <= tolerance + 1e-9]


def architecture_key(spec, resolution):
    """What makes two rows the same network: the stages after rounding, the stem, the head, the
    resolution it is evaluated at and the row's train size."""
    stages = tuple((block.repeats, block.input_filters, block.output_filters)
                   for block in spec.blocks)
    return (stages, spec.scaled_stem_filters, spec.scaled_head_filters, resolution,
            spec.train_size)


def eval_size(config, base, name):
    """The resolution the row `name` runs at under the recipe for `base` (the one its MACs are
    counted at)."""
    return (config_lib.for_model(config, name, base.name).eval.image_size
            or registry.get(name).eval_size)


@dataclasses.dataclass
class Point:
    """One network the search trains: its (α, β, γ), model name, roles, the grid points that
    build it (a candidate's; several round to one network), and its counted MACs and
    parameters."""

    alpha: float
    beta: float
    gamma: float
    name: str
    resolution: int
    macs: int
    params: int
    roles: list = dataclasses.field(default_factory=list)
    grid_points: list = dataclasses.field(default_factory=list)

    @property
    def key(self):
        return f"a{self.alpha:g}_b{self.beta:g}_g{self.gamma:g}"

    @property
    def coefficients(self):
        return (self.alpha, self.beta, self.gamma)

    def to_dict(self):
        return dataclasses.asdict(self)

    def closest_grid_point(self, factor):
        """Of the grid points that build this network, the one whose α·β²·γ² is closest to
        `factor` (the first on a tie): they agree at φ = 1 and part at φ >= 2, where the
        constraint is what is left to go by."""
        return min((tuple(point) for point in self.grid_points),
                   key=lambda point: abs(point[0] * point[1] ** 2 * point[2] ** 2 - factor),
                   default=None)


class _Counter:
    """MACs and parameters per network, each built and counted once."""

    def __init__(self, config, base, num_classes):
        self.config, self.base, self.num_classes = config, base, num_classes
        self.counted = {}

    def point(self, coefficients):
        name = (self.base.name if coefficients == (1.0, 1.0, 1.0)  # the base row as it is
                else registry.compound_name(self.base.name, *coefficients))
        resolution = eval_size(self.config, self.base, name)
        key = architecture_key(registry.get(name), resolution)
        if key not in self.counted:
            if len(self.counted) % 25 == 24:
                logging.info("scale-search: %d networks counted", len(self.counted) + 1)
            model = efficientnet.build(registry.get(name), num_classes=self.num_classes)
            self.counted[key] = (stats.count_macs(model, resolution), model.count_params())
            del model
            keras.backend.clear_session()
        macs, params = self.counted[key]
        return key, Point(*coefficients, name=name, resolution=resolution, macs=macs,
                          params=params)


@dataclasses.dataclass
class Plan:
    """The networks a search trains (`points`, in training order) and the grid points it
    leaves out (`rejected`: outside the FLOPs tolerance), with the settings and recipe."""

    settings: dict
    recipe: dict
    base_macs: int
    points: list
    rejected: list

    def to_dict(self):
        return {"settings": self.settings, "recipe": self.recipe, "base_macs": self.base_macs,
                "points": [point.to_dict() for point in self.points],
                "rejected": self.rejected}

    @classmethod
    def from_dict(cls, values):
        return cls(values["settings"], values["recipe"], values["base_macs"],
                   [Point(**point) for point in values["points"]], values["rejected"])


def settle_recipe(config, base):
    """The recipe every network trains with. A recipe that leaves settings to the data
    (adapt_to_data: the folder recipe) has them decided once, for the base, so that each
    network scales the base's image sizes instead of deciding its own (which the images'
    size would cap)."""
    if config.task != "classification":
        raise ValueError(f"scale-search trains classifiers; the config's task is {config.task!r}")
    task_class = tasks.get(config.task)
    if not (config.adapt_to_data and tasks_base.open_keys(config, task_class.ADAPTED_KEYS)):
        return config
    config, decisions = task_class.adapt_to_data(config, base,
                                                 task_class.make_source(config.data),
                                                 config_lib.total_steps)
    for decision in decisions:
        logging.info("scale-search: for the base %s, %s", base.name, decision.line())
    config.adapt_to_data = False
    return config


def make_plan(config, settings):
    """The search's points (see the module docstring), counted on built models; `config` is
    the settled recipe (settle_recipe)."""
    base = registry.get(settings.base)
    num_classes = tasks.get(config.task).make_source(config.data).num_classes
    counter = _Counter(config, base, num_classes)
    networks = {}  # architecture key -> Point, in training order

    def add(counted, role):
        key, point = counted
        kept = networks.setdefault(key, point)
        if role not in kept.roles:
            kept.roles.append(role)
        if role == CANDIDATE:
            kept.grid_points.append(list(point.coefficients))
        return kept

    base_macs = add(counter.point((1.0, 1.0, 1.0)), BASE).macs
    add(counter.point(PAPER), PAPER_ROLE)
    for role, index in BASELINES:
        add(counter.point(_baseline(counter, index, settings, base_macs)), role)
    rejected = []
    points = grid(settings.factor, settings.grid_step, settings.tolerance)
    logging.info("scale-search: %d grid points; counting their networks' MACs", len(points))
    for coefficients in points:
        counted = counter.point(coefficients)
        point = counted[1]
        ratio = point.macs / base_macs
        if abs(ratio / settings.factor - 1) <= settings.tolerance:
            add(counted, CANDIDATE)
        else:
            rejected.append({"alpha": point.alpha, "beta": point.beta, "gamma": point.gamma,
                             "macs": point.macs, "ratio": round(ratio, 4)})
    for point in networks.values():
        if point.roles == [CANDIDATE]:  # named by its grid point closest to the constraint
            point.alpha, point.beta, point.gamma = point.closest_grid_point(settings.factor)
            point.name = registry.compound_name(base.name, *point.coefficients)
    return Plan(settings.planned(), json.loads(config.to_json_best_effort()), base_macs,
                list(networks.values()), rejected)


def _baseline(counter, index, settings, base_macs):
    """(α, β, γ) with only coefficient `index` above 1: its grid value whose network's counted
    MACs come closest to factor x the base's (MACs only grow along the axis, so the walk stops
    at the first value past the target)."""
    target = settings.factor * base_macs
    best = None
    for step in range(1, 10_000):
        value = round(1 + step * settings.grid_step, 6)
        coefficients = tuple(value if axis == index else 1.0 for axis in range(3))
        _, point = counter.point(coefficients)
        if best is None or abs(point.macs - target) < abs(best[1] - target):
            best = (coefficients, point.macs)
        if point.macs >= target:
            break
    return best[0]


def load_or_make_plan(config, workdir, settings, write=True):
    """WORKDIR/plan.json if this search made it (else an error naming what differs), or a new
    plan written there."""
    path = f"{workdir}/{PLAN_FILE}"
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as stream:
            plan = Plan.from_dict(json.load(stream))
        recipe = json.loads(config.to_json_best_effort())
        differences = [f"{key}: {plan.settings.get(key)!r} there, {value!r} now"
                       for key, value in settings.planned().items()
                       if plan.settings.get(key) != value]
        differences += [f"config {key}: {before!r} there, {now!r} now"
                        for key, before, now in differing(plan.recipe, recipe)]
        if differences:
            raise ValueError(f"{path} is another search's plan ({'; '.join(differences)}); "
                             "use a new --workdir or the same settings")
        return plan
    plan = make_plan(config, settings)
    if write:
        tf.io.gfile.makedirs(workdir)
        files.write_json(path, plan.to_dict())
    return plan


def differing(before, now, prefix=""):
    """(dotted key, before, now) of each value that differs between two nested dicts."""
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            yield from differing(old, new, f"{prefix}{key}.")
        elif old != new:
            yield f"{prefix}{key}", old, new
