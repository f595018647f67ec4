"""The compound-scaling search (V1 paper §3.3, step 1): the (α, β, γ) that scale depth, width and
resolution best on the user's own data under α·β²·γ² ≈ factor, and the rows of any φ from them.

    efficientnet-tf scale-search --config=experiments/FILE.py[:ARG] --workdir=DIR
        [--base=NAME] [--factor=2] [--grid_step=0.05] [--tolerance=0.1]
        [--search_epochs=E] [--seeds=0,1] [--shard=i/n]

1.-2. The plan (plan.py): the grid of (α, β, γ) under the constraint, the candidate networks
   within `tolerance` of factor x the base's MACs, the base, the paper's point and one baseline
   per dimension.
3. `search`: every (network, seed) is a normal training run of the same recipe (the config's; what
   it leaves to the data decided once, for the base: `settle_recipe`), in
   WORKDIR/runs/KEY/seedN. A finished one (its results.json) is skipped, an interrupted one
   resumes from its checkpoint, a diverged one is recorded and skipped; `--shard=i/n` trains
   one run in n, so machines or TPU slices can share a workdir.
4. The report (report.py): a table, a plot, the chosen (α, β, γ) and its rows for
   φ = 1..7 as names and as an experiment file (WORKDIR/scaled.py) for train and info.

The plan is recorded in WORKDIR/plan.json with the settings and the recipe, so a rerun or
another shard trains the same candidates; a rerun with other settings is refused.
"""

import dataclasses
import gc
import json

import keras
import tensorflow as tf
from absl import logging

from efficientnet_tf.specs import registry
from efficientnet_tf.train import config as config_lib
from efficientnet_tf.train import distribute, files, trainer
from efficientnet_tf.scaling import plan as plan_lib
from efficientnet_tf.scaling import report as scaling_report
from efficientnet_tf.train import workdir as workdir_lib

FAILED_FILE = "failed.json"


def parse_shard(text):
    """'i/n' -> (i, n): this job trains the i-th of n shares of the runs (shard_jobs)."""
    index, _, count = str(text).partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise ValueError(f"shard must be i/n with 0 <= i < n (e.g. 0/2 and 1/2 on two machines), "
                         f"got {text!r}")
    return index, count


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run of the search: a point (the `index`-th of the plan) under a seed, in
    its own workdir."""

    point: plan_lib.Point
    index: int
    seed: int
    workdir: str

    @property
    def finished(self):
        return tf.io.gfile.exists(f"{self.workdir}/results.json")

    @property
    def failed(self):
        return tf.io.gfile.exists(f"{self.workdir}/{FAILED_FILE}")


def job_dir(workdir, point, seed):
    return f"{workdir}/runs/{point.key}/seed{seed}"


def jobs(plan, workdir, seeds):
    """Every training run, seed by seed (a whole first seed finishes before the second starts,
    so an early report covers every point)."""
    return [Job(point, index, seed, job_dir(workdir, point, seed))
            for seed in seeds for index, point in enumerate(plan.points)]


def shard_jobs(all_jobs, shard):
    """The jobs of shard (i, n): those whose point index plus seed is i modulo n. A job's shard
    depends on the job alone, so shards started with different --seeds still share every run
    out once."""
    index, count = shard
    return [job for job in all_jobs if (job.index + job.seed) % count == index]


def job_config(config, base, job, epochs):
    """The recipe as `job` trains it: its network, its seed, the search's budget."""
    config = config_lib.for_model(config, job.point.name, base.name)
    config.train.seed = job.seed
    if epochs is not None:
        config.train.epochs = float(epochs)
        config.train.steps = 0
    return config


def check_finished(job, config):
    """A finished run must be the one this search would train (a workdir reused after its
    plan.json was removed holds others)."""
    recorded = {key: value for key, value in workdir_lib.read_record(job.workdir).items()
                if key != "resolved"}
    differences = list(plan_lib.differing(recorded, json.loads(config.to_json_best_effort())))
    if differences:
        key, before, now = differences[0]
        raise ValueError(f"{job.workdir} holds another search's run ({key}: {before!r} there, "
                         f"{now!r} now); use a new --workdir")


def train_job(config, job, strategy):
    """Trains one job (`config`: job_config) through the normal trainer; returns its results,
    or None if it diverged (recorded in its workdir's failed.json, so a rerun skips it)."""
    try:
        return trainer.train_and_evaluate(config, job.workdir, strategy)
    except trainer.TrainingDiverged as error:
        logging.warning("scale-search: %s seed %d diverged: %s", job.point.key, job.seed, error)
        if distribute.is_chief(strategy):
            files.write_json(f"{job.workdir}/{FAILED_FILE}", {"error": str(error)})
        return None
    finally:
        keras.backend.clear_session()
        gc.collect()


def search(config, workdir, settings, strategy=None, shard=(0, 1)):
    """The search in `workdir` (local or gs://): plans it (or reads its plan), trains this
    shard's unfinished jobs, and writes the report of everything finished so far (the last
    shard to finish writes the whole one). Returns the report (report.Report)."""

    strategy = strategy or tf.distribute.get_strategy()
    workdir = workdir.rstrip("/")
    chief = distribute.is_chief(strategy)
    base = registry.get(settings.base)
    config = plan_lib.settle_recipe(config, base)
    plan = plan_lib.load_or_make_plan(config, workdir, settings, write=chief)
    everything = jobs(plan, workdir, settings.seeds)
    mine = shard_jobs(everything, shard)
    for job in mine:
        if job.finished:
            check_finished(job, job_config(config, base, job, settings.epochs))
    pending = [job for job in mine if not job.finished and not job.failed]
    logging.info("scale-search: %d networks (%d grid points outside the FLOPs tolerance), %d "
                 "seeds: %d training runs; shard %d/%d has %d, %d to do", len(plan.points),
                 len(plan.rejected), len(settings.seeds), len(everything), shard[0], shard[1],
                 len(mine), len(pending))
    for number, job in enumerate(pending, 1):
        logging.info("scale-search: run %d of %d: %s (%s) seed %d", number, len(pending),
                     job.point.key, ", ".join(job.point.roles), job.seed)
        train_job(job_config(config, base, job, settings.epochs), job, strategy)
    result = scaling_report.collect(plan, everything)
    if chief:
        scaling_report.write(workdir, result)
    return result
