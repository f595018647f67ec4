"""The compound-scaling search's report (V1 paper §3.3): what each network scored, the chosen
(α, β, γ) and its rows for φ = 1..7, how much the ranking moves between seeds, and how compound
scaling fared against scaling one dimension.

Files in the search's workdir: report.md, report.csv, report.json, report.png (top-1 against
MACs) and scaled.py (an experiment file: the recipe with the chosen scaling at any φ).
"""

import csv
import dataclasses
import io
import itertools
import json
import statistics
from typing import Dict, List, Optional

import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from efficientnet_tf.scaling import plan as plan_lib
from efficientnet_tf.specs import registry
from efficientnet_tf.train import files

PHIS = range(1, 8)  # the rows printed and written for the chosen coefficients (B1..B7's φ)


@dataclasses.dataclass
class Row:
    """A trained network's results: top-1 and wall seconds (training and evaluation, of the
    process that finished it) per finished seed, and the seeds that diverged."""

    point: plan_lib.Point
    top1: Dict[int, float]
    seconds: Dict[int, float]
    failed: List[int]

    @property
    def mean(self):
        return statistics.fmean(self.top1.values()) if self.top1 else None

    @property
    def scaled_dimensions(self):
        return sum(value > 1 for value in self.point.coefficients)


@dataclasses.dataclass
class Report:
    plan: plan_lib.Plan
    seeds: List[int]
    rows: List[Row]
    pending: int  # training runs not finished yet (other shards, or interrupted)

    def complete(self, row):
        return all(seed in row.top1 for seed in self.seeds)

    @property
    def chosen(self) -> Optional[Row]:
        """The candidate with the best mean top-1 over every seed (fewer MACs on a tie, then
        plan order)."""
        finished = [row for row in self.rows
                    if plan_lib.CANDIDATE in row.point.roles and self.complete(row)]
        return max(finished, key=lambda row: (row.mean, -row.point.macs), default=None)

    @property
    def chosen_coefficients(self):
        """The chosen network's (α, β, γ) for φ >= 2: of the grid points that build it, the one
        closest to the constraint (plan_lib.Point.closest_grid_point)."""
        chosen = self.chosen
        return chosen.point.closest_grid_point(self.plan.settings["factor"]) if chosen else None

    def spread(self):
        """Per pair of seeds, over the networks finished under both: the rank correlation of
        their top-1 (Spearman), the networks tied for the first seed's best and their ranks
        under the second (tied values share their mean rank, 1 the best), and the mean and
        largest top-1 difference of the same network."""
        pairs = []
        for first, second in itertools.combinations(self.seeds, 2):
            both = [row for row in self.rows if first in row.top1 and second in row.top1]
            if len(both) < 2:
                continue
            a, b = [row.top1[first] for row in both], [row.top1[second] for row in both]
            differences = [abs(x - y) for x, y in zip(a, b)]
            ranks_second = ranks([-value for value in b])
            best = [index for index, value in enumerate(a) if value == max(a)]
            correlation = spearman(a, b)
            pairs.append({
                "seeds": [first, second], "networks": len(both),
                "spearman": None if correlation is None else round(correlation, 4),
                "best_of_first": [both[index].point.key for index in best],
                "their_ranks_under_second": [ranks_second[index] for index in best],
                "mean_abs_difference": round(statistics.fmean(differences), 4),
                "max_abs_difference": round(max(differences), 4)})
        return pairs

    def comparison(self):
        """The best network scaling two or three dimensions against each single-dimension
        baseline (mean top-1), beside the seed-to-seed noise of one network."""
        compound = [row for row in self.rows if plan_lib.CANDIDATE in row.point.roles
                    and row.scaled_dimensions >= 2 and self.complete(row)]
        best = max(compound, key=lambda row: row.mean, default=None)
        spreads = self.spread()
        noise = statistics.fmean(pair["mean_abs_difference"] for pair in spreads) if spreads \
            else None
        base_macs = self.plan.base_macs
        result = {"compound": best.point.key if best else None,
                  "compound_top1": best.mean if best else None,
                  "compound_macs_ratio": best.point.macs / base_macs if best else None,
                  "seed_noise": noise, "baselines": {}}
        for role, _ in plan_lib.BASELINES:
            row = next((row for row in self.rows if role in row.point.roles
                        and self.complete(row)), None)
            if row is None or best is None:
                continue
            margin = best.mean - row.mean
            verdict = ("seed noise unknown (one seed)" if noise is None
                       else "within seed noise" if abs(margin) <= noise
                       else "compound better" if margin > 0 else "compound worse")
            result["baselines"][role] = {"network": row.point.key, "top1": row.mean,
                                         "macs_ratio": row.point.macs / base_macs,
                                         "margin": margin, "verdict": verdict}
        return result

    def phi_rows(self):
        coefficients = self.chosen_coefficients
        if coefficients is None:
            return []
        base = self.plan.settings["base"]
        rows = []
        for phi in PHIS:
            name = registry.compound_name(base, *coefficients, phi=phi)
            spec = registry.get(name)
            rows.append({"phi": phi, "name": name, "width": spec.width, "depth": spec.depth,
                         "resolution": spec.eval_size, "dropout": spec.dropout_rate})
        return rows


def ranks(values):
    """1-based ranks of `values`, smallest first; tied values share their mean rank."""
    order = sorted(range(len(values)), key=lambda index: values[index])
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(first, second):
    """Spearman's rank correlation, or None when one side is all ties (undefined)."""
    x, y = ranks(first), ranks(second)
    mean_x, mean_y = statistics.fmean(x), statistics.fmean(y)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y))
    scale = (sum((a - mean_x) ** 2 for a in x) * sum((b - mean_y) ** 2 for b in y)) ** 0.5
    return covariance / scale if scale else None


def collect(plan, jobs):
    """The Report of `plan` from its jobs' workdirs (results.json, failed.json)."""
    rows = {point.key: Row(point, {}, {}, []) for point in plan.points}
    pending = 0
    for job in jobs:
        row = rows[job.point.key]
        if job.finished:
            with tf.io.gfile.GFile(f"{job.workdir}/results.json") as stream:
                results = json.load(stream)
            row.top1[job.seed] = results["eval_top1"]
            row.seconds[job.seed] = results["train_seconds"]  # evaluation included
        elif job.failed:
            row.failed.append(job.seed)
        else:
            pending += 1
    seeds = sorted({job.seed for job in jobs})
    return Report(plan, seeds, list(rows.values()), pending)


COLUMNS = ("network", "roles", "alpha", "beta", "gamma", "width", "depth", "resolution",
           "params", "macs", "macs_ratio")


def table_rows(result):
    """One dict per trained network: the columns above, top-1 per seed, mean, wall seconds."""
    rows = []
    for row in result.rows:
        point = row.point
        spec = registry.get(point.name)
        values = {"network": point.key, "roles": "+".join(point.roles), "alpha": point.alpha,
                  "beta": point.beta, "gamma": point.gamma, "width": round(spec.width, 6),
                  "depth": round(spec.depth, 6), "resolution": point.resolution,
                  "params": point.params, "macs": point.macs,
                  "macs_ratio": round(point.macs / result.plan.base_macs, 4)}
        for seed in result.seeds:
            values[f"top1_seed{seed}"] = row.top1.get(seed)
        values["top1_mean"] = row.mean
        values["wall_seconds"] = round(sum(row.seconds.values()), 1)
        values["failed_seeds"] = " ".join(str(seed) for seed in row.failed)
        rows.append(values)
    return rows


def _percent(value):
    return "—" if value is None else f"{100 * value:.1f}"


def markdown(result):
    """report.md: the table, the chosen coefficients and rows, the seeds' spread and the
    compound-against-single-dimension comparison."""
    settings = result.plan.settings
    seeds = result.seeds
    lines = [f"# Compound scaling search on {settings['base']}",
             "",
             f"α·β²·γ² ≈ {settings['factor']:g} (grid step {settings['grid_step']:g}, "
             f"tolerance {100 * settings['tolerance']:g}% on the formula and on the MACs counted "
             f"from each built graph); {len(result.rows)} networks trained, each with "
             f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}); "
             f"{len(result.plan.rejected)} grid points outside the MACs tolerance; base "
             f"{result.plan.base_macs / 1e6:.2f} MMACs."
             + (f" {result.pending} training runs not finished yet." if result.pending else ""),
             "",
             "| network | roles | α | β | γ | width | depth | res | params | MMACs | ×base | "
             + " | ".join(f"top-1 s{seed}" for seed in seeds) + " | mean | wall s |",
             "|" + "---|" * (13 + len(seeds))]
    for values in table_rows(result):
        lines.append(
            f"| {values['network']} | {values['roles']} | {values['alpha']:g} | "
            f"{values['beta']:g} | {values['gamma']:g} | {values['width']:g} | "
            f"{values['depth']:g} | {values['resolution']} | {values['params']:,} | "
            f"{values['macs'] / 1e6:.2f} | {values['macs_ratio']:.2f} | "
            + " | ".join(_percent(values[f"top1_seed{seed}"]) for seed in seeds)
            + f" | {_percent(values['top1_mean'])} | {values['wall_seconds']:.0f} |")
    lines += ["", *summary_lines(result)]
    return "\n".join(lines) + "\n"


def summary_lines(result):
    """The chosen coefficients with their φ rows, the spread and the comparison, as text."""
    lines = []
    chosen = result.chosen
    if chosen is None:
        lines.append("No candidate has finished under every seed yet: nothing chosen.")
    else:
        coefficients = result.chosen_coefficients
        alpha, beta, gamma = coefficients
        lines.append(f"Chosen: α = {alpha:g}, β = {beta:g}, γ = {gamma:g} (network "
                     f"{chosen.point.key}, mean top-1 {_percent(chosen.mean)}%).")
        others = [tuple(point) for point in chosen.point.grid_points
                  if tuple(point) != coefficients]
        if others:
            lines.append("The same network at φ = 1 is built by " + ", ".join(
                f"({', '.join(f'{value:g}' for value in point)})" for point in others)
                + f" too: they part at φ >= 2, which the search cannot tell apart; the one with "
                f"α·β²·γ² closest to {result.plan.settings['factor']:g} is taken.")
        lines += ["Rows (names the trainer accepts; scaled.py holds the recipe with them):", ""]
        lines += [f"    φ={row['phi']}: {row['name']}  (width {row['width']:.4g}, depth "
                  f"{row['depth']:.4g}, resolution {row['resolution']})"
                  for row in result.phi_rows()]
        lines.append("")
    for pair in result.spread():
        correlation = ("undefined (one seed's top-1 all equal)" if pair["spearman"] is None
                       else f"{pair['spearman']:.2f}")
        best = ", ".join(f"{key} (rank {rank:g})" for key, rank in
                         zip(pair["best_of_first"], pair["their_ranks_under_second"]))
        lines.append(
            f"Seeds {pair['seeds'][0]} and {pair['seeds'][1]} over {pair['networks']} networks: "
            f"rank correlation {correlation}; seed {pair['seeds'][0]}'s best, under seed "
            f"{pair['seeds'][1]} (of {pair['networks']}; ties share a mean rank): {best}; the "
            f"same network's top-1 differs by {100 * pair['mean_abs_difference']:.1f} points on "
            f"average, {100 * pair['max_abs_difference']:.1f} at most.")
    comparison = result.comparison()
    if comparison["compound"]:
        lines.append("")
        lines.append(f"Best network scaling two or three dimensions: {comparison['compound']} "
                     f"({comparison['compound_macs_ratio']:.2f}× the base's MACs), "
                     f"{_percent(comparison['compound_top1'])}%.")
        for role, entry in comparison["baselines"].items():
            lines.append(f"- against {role} only ({entry['network']}, "
                         f"{entry['macs_ratio']:.2f}× MACs, {_percent(entry['top1'])}%): "
                         f"{100 * entry['margin']:+.1f} points, {entry['verdict']}")
    return lines


def plot(result):
    """PNG bytes: mean top-1 against MACs, bars from the lowest to the highest seed; the
    candidates, the base, the paper's coefficients, the baselines and the chosen marked."""
    figure = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    styles = {"base": ("s", "black"), "paper": ("*", "goldenrod"), "depth": ("^", "tab:blue"),
              "width": ("v", "tab:green"), "resolution": ("D", "tab:purple"),
              "candidate": ("o", "tab:gray")}
    labelled = set()
    for row in result.rows:
        if not row.top1:
            continue
        role = next((role for role in styles if role in row.point.roles), "candidate")
        marker, color = styles[role]
        x, values = row.point.macs / 1e6, [100 * value for value in row.top1.values()]
        mean = statistics.fmean(values)
        axis.errorbar([x], [mean], yerr=[[mean - min(values)], [max(values) - mean]],
                      fmt=marker, color=color, markersize=11 if marker == "*" else 7, capsize=3,
                      label=None if role in labelled else _legend(role))
        labelled.add(role)
        if role != "candidate":
            _label(axis, row.point.key, (x, mean), LABEL_OFFSETS[role])
    chosen = result.chosen
    if chosen is not None:
        where = (chosen.point.macs / 1e6, 100 * chosen.mean)
        axis.plot([where[0]], [where[1]], "o", markersize=16, markerfacecolor="none",
                  markeredgecolor="red", label="chosen")
        _label(axis, chosen.point.key, where, LABEL_OFFSETS["chosen"], color="red")
    axis.set_xlabel("MMACs (counted from the built graph)")
    axis.set_ylabel(f"top-1 % (mean of {len(result.seeds)} seed(s); bars: seed range)")
    axis.set_title(f"Compound scaling search on {result.plan.settings['base']} "
                   f"(α·β²·γ² ≈ {result.plan.settings['factor']:g})")
    axis.grid(alpha=0.3)
    if labelled:
        axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


# Where each marked network's label goes (points from it, with an arrow): the single-dimension
# baselines sit at the same MACs by construction, so their labels go to different sides.
LABEL_OFFSETS = {"base": (10, 10), "paper": (-40, 22), "depth": (-90, -18), "width": (14, 26),
                 "resolution": (12, -30), "chosen": (-100, 4)}


def _label(axis, text, where, offset, color="black"):
    axis.annotate(text, where, textcoords="offset points", xytext=offset, fontsize=7,
                  color=color, arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6})


def _legend(role):
    return {"candidate": "grid candidates", "base": "base (φ = 0)",
            "paper": "paper's (1.2, 1.1, 1.15)", "depth": "depth only", "width": "width only",
            "resolution": "resolution only"}[role]


SCALED_FILE = """\"\"\"Written by `efficientnet-tf scale-search` ({workdir}): its recipe with
the chosen compound scaling of {base}, alpha={alpha:g}, beta={beta:g}, gamma={gamma:g}
(V1 paper eq. 3). ARG: phi (default 1; any number >= 0).

    efficientnet-tf train --config=THIS_FILE:3 --workdir=runs/phi3
    efficientnet-tf info --config=THIS_FILE:3
\"\"\"

import json

from efficientnet_tf.specs import registry
from efficientnet_tf.train import config as config_lib

BASE = {base!r}
ALPHA, BETA, GAMMA = {alpha!r}, {beta!r}, {gamma!r}
RECIPE = json.loads({recipe!r})


def get_config(phi="1"):
    name = registry.compound_name(BASE, ALPHA, BETA, GAMMA, float(phi))
    return config_lib.for_model(config_lib.from_dict(RECIPE), name, BASE)
"""


def write(workdir, result):
    """Writes the report files into `workdir`; returns their paths."""
    paths = {name: f"{workdir}/report.{name}" for name in ("md", "csv", "json", "png")}
    rows = table_rows(result)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    chosen = result.chosen
    contents = {
        "md": markdown(result), "csv": buffer.getvalue(), "png": plot(result),
        "json": json.dumps({"settings": result.plan.settings, "seeds": result.seeds,
                            "rows": rows, "pending": result.pending,
                            "chosen": chosen.point.key if chosen else None,
                            "chosen_coefficients": result.chosen_coefficients,
                            "phi_rows": result.phi_rows(), "spread": result.spread(),
                            "comparison": result.comparison(),
                            "rejected": result.plan.rejected}, indent=2) + "\n"}
    scaled = f"{workdir}/scaled.py"
    if chosen is not None:
        paths["scaled"] = scaled
        alpha, beta, gamma = result.chosen_coefficients
        contents["scaled"] = SCALED_FILE.format(
            workdir=workdir, base=result.plan.settings["base"], alpha=alpha, beta=beta,
            gamma=gamma, recipe=json.dumps(result.plan.recipe, sort_keys=True))
    elif tf.io.gfile.exists(scaled):  # an earlier choice, no longer backed by every seed
        tf.io.gfile.remove(scaled)
    for name, path in paths.items():
        files.write_atomically(path, contents[name])
    return paths


def describe(result, workdir):
    """What the command prints: the report's text and where its files are."""
    files = ", ".join(f"{workdir}/{name}" for name in
                      ("report.md", "report.csv", "report.png", "report.json")
                      + (("scaled.py",) if result.chosen else ()))
    return f"{markdown(result)}\nfiles: {files}"
