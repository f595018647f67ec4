"""What a user sees of a run: the progress line, TensorBoard summaries, the final plot and summary.

Summaries are written under WORKDIR/train and WORKDIR/eval; the plot of loss, accuracy and learning
rate is read back from those event files, so it covers every step of a resumed run too.
"""

import dataclasses
import io
import math
import time

import tensorflow as tf
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def duration(seconds):
    """'1h02m', '3m05s', '42s'."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """The periodic progress line and the train summaries.

    `summarize` turns summed window totals into the task's values (e.g. top1), and `headline`
    names the one the line shows beside the loss. images/s and the ETA exclude each stage's
    first host loop, which also traces the step.
    """

    def __init__(self, workdir, total_steps, steps_per_epoch, global_batch, write=True,
                 summarize=None, headline="top1"):
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.global_batch = global_batch
        self.writer = tf.summary.create_file_writer(f"{workdir}/train") if write else None
        self.print = write
        self.summarize = summarize or (lambda totals: {})
        self.headline = headline
        self._window = self._empty()
        self._rate = float("nan")
        self.last = {}

    @staticmethod
    def _empty():
        return {"seconds": 0.0, "steps": 0}

    def add(self, totals, steps, seconds, timed=True):
        for key, value in totals.items():
            self._window[key] = self._window.get(key, 0.0) + float(value)
        if timed:
            self._window["seconds"] += seconds
            self._window["steps"] += steps

    def emit(self, step, learning_rate, stage=None, extra=None):
        window = self._window
        examples = max(window.get("examples", 0.0), 1.0)
        if window["steps"]:
            self._rate = window["steps"] * self.global_batch / max(window["seconds"], 1e-9)
        remaining = (self.total_steps - step) * self.global_batch / self._rate
        self.last = {"step": step, "loss": window.get("loss", 0.0) / examples,
                     **self.summarize({**window, "examples": examples}),
                     "learning_rate": float(learning_rate), "images_per_second": self._rate,
                     "epoch": step / self.steps_per_epoch}
        if window.get("clip_checks"):  # clipping on: the norm it compared (train/loop.py)
            self.last["grad_norm"] = window["grad_norm"] / window["clip_checks"]
            self.last["clipped_share"] = window["clipped"] / window["clip_checks"]
        headline = (f" {self.headline} {100 * self.last[self.headline]:.1f}%"
                    if self.headline in self.last else "")
        line = (f"step {step}/{self.total_steps} epoch {self.last['epoch']:.2f} "
                f"loss {self.last['loss']:.4f}{headline} "
                f"lr {learning_rate:.3g} {self._rate:.1f} img/s ETA {duration(remaining)}")
        if "grad_norm" in self.last:
            line += (f" grad norm {self.last['grad_norm']:.3g} (clipped "
                     f"{100 * self.last['clipped_share']:.0f}%)")
        if stage is not None:
            line += f" [stage {stage.index + 1} size {stage.image_size}]"
        if extra:
            line += " " + extra
        if self.print:
            logging.info(line)
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for key, value in self.last.items():
                    if key not in ("step", "epoch") and math.isfinite(value):
                        tf.summary.scalar(key, value)
                if stage is not None:
                    tf.summary.scalar("image_size", stage.image_size)
                    tf.summary.scalar("dropout_rate", stage.dropout_rate)
                    tf.summary.scalar("randaug_magnitude", stage.randaug_magnitude)
                    tf.summary.scalar("mixup_alpha", stage.mixup_alpha)
            self.writer.flush()
        self._window = self._empty()
        return line


@dataclasses.dataclass
class StageTiming:
    """Where a stage's time went: starting it (its dataset, iterator and step function), its
    first host loop (which also traces the step, and on TPU compiles it, and waits for the
    first batches) and the steady loops after it. The switch is what the stage cost beyond its
    steps: the start plus the first loop's excess over the steady step time."""

    stage: int  # 1-based
    image_size: int
    start_s: float = 0.0
    first_loop_s: float = 0.0
    first_loop_steps: int = 0
    steady_s: float = 0.0
    steady_steps: int = 0

    def add(self, steps, seconds):
        if not self.first_loop_steps:
            self.first_loop_s, self.first_loop_steps = seconds, steps
        else:
            self.steady_s += seconds
            self.steady_steps += steps

    @property
    def step_s(self):
        """Seconds per steady step (the first loop's, when the stage had no other)."""
        if self.steady_steps:
            return self.steady_s / self.steady_steps
        return self.first_loop_s / max(self.first_loop_steps, 1)

    @property
    def switch_s(self):
        return max(0.0, self.start_s + self.first_loop_s - self.first_loop_steps * self.step_s)

    @property
    def seconds(self):
        return self.start_s + self.first_loop_s + self.steady_s

    def to_dict(self):
        return {"stage": self.stage, "image_size": self.image_size,
                "steps": self.first_loop_steps + self.steady_steps,
                "seconds": round(self.seconds, 3), "switch_s": round(self.switch_s, 3),
                "step_ms": round(1000 * self.step_s, 2)}

    def line(self, global_batch):
        return (f"stage {self.stage} ({self.image_size} px) took {duration(self.seconds)}: "
                f"{self.switch_s:.1f} s to switch (dataset, trace, first batches), then "
                f"{1000 * self.step_s:.0f} ms per step "
                f"({global_batch / max(self.step_s, 1e-9):.0f} img/s)")


class InputMeter:
    """This host's input pipeline: images it decoded per second since the last reading."""

    def __init__(self, counter):
        self.counter = counter
        self._timer = Timer()
        self._decoded, self._skipped = int(counter.decoded.numpy()), counter.skipped

    def line(self):
        decoded, skipped = int(self.counter.decoded.numpy()), self.counter.skipped
        seconds = self._timer.elapsed()
        images = decoded - self._decoded
        line = (f"input pipeline decoded {images} images in {seconds:.1f} s "
                f"({images / max(seconds, 1e-9):.1f} img/s), skipped {skipped - self._skipped}")
        self._decoded, self._skipped, self._timer = decoded, skipped, Timer()
        return line


def write_eval_summary(workdir, step, metrics):
    """The evaluation's numbers (not its example count) as summaries under WORKDIR/eval."""
    writer = tf.summary.create_file_writer(f"{workdir}/eval")
    with writer.as_default(step=step):
        for key, value in metrics.items():
            if key != "examples" and isinstance(value, (int, float)):
                tf.summary.scalar(key, value)
    writer.flush()


def read_scalars(directory):
    """{tag: [(step, value)]} from the TensorBoard event files in `directory`."""
    series = {}
    files = sorted(tf.io.gfile.glob(f"{directory}/events.out.tfevents.*"))
    for file_name in files:
        for record in tf.data.TFRecordDataset(file_name):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = (tf.make_ndarray(value.tensor).item() if value.HasField("tensor")
                          else value.simple_value)
                series.setdefault(value.tag, {})[event.step] = float(number)
    return {tag: sorted(points.items()) for tag, points in series.items()}


def write_plot(workdir, headline="top1", headline_title="top-1 accuracy"):
    """WORKDIR/training.png: loss, the task's headline metric (train and eval) and the learning
    rate over steps."""
    train, evaluation = read_scalars(f"{workdir}/train"), read_scalars(f"{workdir}/eval")
    # The object interface (a Figure with an Agg canvas): no pyplot, no global backend change.
    figure = Figure(figsize=(15, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for axis, tag, title in ((axes[0], "loss", "loss"), (axes[1], headline, headline_title)):
        for series, label, style in ((train, "train", "-"), (evaluation, "eval", "o-")):
            if series.get(tag):
                steps, values = zip(*series[tag])
                axis.plot(steps, values, style, label=label)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.legend()
    if train.get("learning_rate"):
        steps, values = zip(*train["learning_rate"])
        axes[2].plot(steps, values)
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("step")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    path = f"{workdir}/training.png"
    with tf.io.gfile.GFile(path, "wb") as stream:
        stream.write(buffer.getvalue())
    return path


def class_count_line(counts, shown=20):
    """"cat 120/30, dog 118/29" for {split: {class: images}} (train, then eval), the first
    `shown` classes and how many more there are."""
    names = list(counts["train"])
    parts = [f"{name} {counts['train'][name]}/{counts.get('eval', {}).get(name, 0)}"
             for name in names[:shown]]
    if len(names) > shown:
        parts.append(f"and {len(names) - shown} more (classes.json)")
    return ", ".join(parts)


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self):
        return time.perf_counter() - self.start
