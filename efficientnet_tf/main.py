"""The `efficientnet-tf` command line: `efficientnet-tf COMMAND [--flags]`.

  info     parameters, GMACs and sizes of every variant (`--model=NAME`: its stages; NAME may
           be a scaled row, e.g. efficientnet-b0:w=1.1,d=1.2,r=240 or efficientnet-b0:phi=1.5);
           `--weights`: every official checkpoint (name, classes, input scaling, URL)
  train    --config=experiments/FILE.py[:ARG] --workdir=DIR [--config.a.b=value] [--tpu=...]
  eval     --workdir=DIR [--config=...] [--continuous]: the task's metrics of the checkpoints
  export   --workdir=DIR --export_dir=PATH [--format=saved_model|keras|tflite]
           [--quantize=none|dynamic|int8] [--top_k=5] [--nms=hard|gaussian]: the EMA
           weights, ready to serve (a detector's: boxes after NMS); --weights=NAME_OR_PATH
           [--model=NAME] instead of --workdir: pretrained weights as they are
  predict  --export_dir=EXPORT_DIR_OR_WORKDIR (or --weights=NAME_OR_PATH [--model=NAME])
           [--json] [--min_score=S] [--draw=OUT_DIR] IMAGE_OR_FOLDER...: results per image
           (a detector's boxes, drawn into OUT_DIR as PNGs); a folder: each image in it
  convert  --weights=NAME_OR_PATH --output=FILE.weights.h5 [--model=NAME]
           [--input_scaling=...]: pretrained weights (downloaded on first use) as one file that
           create_model(weights=FILE) and --config.init_from=FILE load offline
  scale-search --config=experiments/FILE.py[:ARG] --workdir=DIR [--base=NAME] [--factor=2]
           [--grid_step=0.05] [--tolerance=0.1] [--search_epochs=E] [--seeds=0,1]
           [--shard=i/n]: the compound-scaling search (alpha, beta, gamma on your data), its
           report and WORKDIR/scaled.py (the recipe with the chosen scaling at any phi)
  demo     --workdir=DIR: the embedded default run (digits, progressive learning, export);
           `demo detection --workdir=DIR`: EfficientDet on digit scenes, COCO AP;
           `demo scaling --workdir=DIR`: the compound-scaling search on the digits, two seeds
  tpu      --tpu=local|NAME: the TPU software, topology and devices reached (fails without one)

TensorFlow's start-up messages (CUDA probing, oneDNN notices) are hidden unless --verbose;
with --tpu its warnings and errors stay (libtpu reports its start-up failures there).
`efficientnet-tf COMMAND --help`: that command's flags (train: the experiments and config keys).
"""

import ast
import contextlib
import faulthandler
import glob
import os
import sys
import textwrap

from absl import app, flags, logging
from ml_collections import config_flags

# Flags several commands read; each command's own flags are defined beside it (below).
flags.DEFINE_string("workdir", None, "Run directory (local or gs://): config, checkpoints, "
                    "summaries, plot, results.")
config_flags.DEFINE_config_file("config", None, "Experiment file, e.g. "
                                "experiments/imagenet_v2.py:efficientnetv2-s", lock_config=True)
flags.DEFINE_string("tpu", None, "TPU to train on: a TPU name (a pod slice, from host 0), "
                    "'local' on a single-host TPU VM, or grpc://IP:8470. Unset: GPUs, TF_CONFIG "
                    "workers or the CPU.")
flags.DEFINE_bool("verbose", False, "Show TensorFlow's own start-up and C++ log messages.")
flags.DEFINE_string("model", None, "info: a variant name (e.g. efficientnetv2-s) or a scaled "
                    "row to show its stages; convert, export and predict with --weights: the "
                    "variant a checkpoint path holds.")
flags.DEFINE_string("weights", None, "convert, export, predict: pretrained weights, an official "
                    "checkpoint by name (efficientnet-tf info --weights lists them, e.g. "
                    "efficientdet-d0/coco), a URL or a path; info: list the official ones "
                    "(--weights alone, or --weights=all).")
flags.DEFINE_enum("input_scaling", None, ["mean_std", "sym128", "sym255"], "convert, export, "
                  "predict with --weights=PATH: how the checkpoint's model maps its [0, 255] "
                  "images (an official name sets it).")
flags.DEFINE_string("export_dir", None, "export: where to write (local or gs://; a .keras or "
                    ".tflite file for those formats); predict: an export directory or a workdir.")
flags.DEFINE_integer("top_k", 5, "export/predict: how many classes to return per image.")
FLAGS = flags.FLAGS


def _quiet_tensorflow():
    """Before TensorFlow loads: its C++ logging off (CUDA probing on a machine without GPUs,
    oneDNN notices) unless --verbose or the user set TF_CPP_MIN_LOG_LEVEL. With --tpu only its
    info lines go: libtpu's start-up failures (chips held by another process, a libtpu that
    does not fit the TensorFlow build) are warnings and errors, and must reach the log; a
    native crash prints the Python stack too (faulthandler)."""
    if FLAGS.tpu:
        faulthandler.enable()
    if FLAGS.verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if FLAGS.tpu else "3")


@contextlib.contextmanager
def _stderr_hidden(hide):
    """Process-level stderr (file descriptor 2) sent to /dev/null while TensorFlow loads and
    finds its devices: since TensorFlow logs through Abseil, its start-up lines (the oneDNN
    notice, "Could not find cuda drivers", cuInit) come before TF_CPP_MIN_LOG_LEVEL is read.
    A Python exception still propagates, and is printed after stderr is back."""
    if not hide:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)  # local: the null device, not a user path
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _load_tensorflow():
    """TensorFlow, imported after the flags are parsed and the environment is set (main): it
    reads TF_CPP_MIN_LOG_LEVEL and the TPU runtime's variables when it loads."""
    with _stderr_hidden(not FLAGS.verbose and os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"):
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery (CUDA probing) happens here
    return tf


def _require(flag, command, hint):
    if getattr(FLAGS, flag) in (None, ""):
        raise ValueError(f"{command} needs --{flag}={hint}")


# Exit codes: a usage error (a bad flag, config key or value, a missing file named by a flag)
# is 2, a runtime failure (a path that cannot be written, a full disk, no TPU) is 1. Either is
# one line on stderr, naming the thing and what to do; --verbose adds the traceback.
USAGE_ERROR, RUNTIME_ERROR = 2, 1


def _fail(prefix, message, code):
    print(f"{prefix}: error: {message}", file=sys.stderr)
    sys.exit(code)


HELP_FLAGS = ("--help", "-h", "--helpshort", "-help")


def parse_flags(argv):
    """absl's flag parsing, with every error one line and exit code 2: an unknown flag or
    config key, a value of the wrong type, a config file that does not load. `COMMAND --help`
    prints that command's help (command_help) instead."""
    if len(argv) > 2 and argv[1] in COMMANDS and any(arg in HELP_FLAGS for arg in argv[2:]):
        print(command_help(argv[1]))
        sys.exit(0)
    if len(argv) > 1 and argv[1] == "info":  # `info --weights` lists the checkpoints
        argv = [arg if arg != "--weights" else "--weights=all" for arg in argv]
    try:
        argv = FLAGS(argv)
        _check_config_file()
        return argv
    except flags.Error as error:
        _fail("efficientnet-tf", f"{error}; see --helpshort", USAGE_ERROR)
    except (AttributeError, KeyError, TypeError, ValueError, OSError, SyntaxError) as error:
        if "--verbose" in argv:
            raise
        # ml_collections' own messages: the unknown key, with its "Did you mean" hint, or
        # the config file that failed to load and why.
        lines = [line.strip().strip("'\"") for line in str(error).replace("\\n", "\n")
                 .splitlines() if line.strip().strip("'\"")]
        _fail("efficientnet-tf", f"{type(error).__name__}: {'; '.join(lines) or error!r}",
              USAGE_ERROR)


def _check_config_file():
    """A --config file that did not load is an error now, not at the first use of the config
    (ml_collections defers it, with a message that names no file)."""
    if FLAGS["config"].value is None:
        return
    try:
        FLAGS.config.keys()  # touching it raises the deferred error
    except OSError as error:
        path = FLAGS["config"].config_filename.split(":", 1)[0]
        if not os.path.isfile(path):  # local: ml_collections imports config files from disk
            _fail("efficientnet-tf", f"config file {path!r} does not exist (from "
                  f"{os.getcwd()}); use --config=experiments/FILE.py[:ARG]", USAGE_ERROR)
        cause = str(error.__cause__ or error).strip().splitlines()
        _fail("efficientnet-tf", f"config file {path!r} does not load: {cause[-1].strip()}",
              USAGE_ERROR)


def describe_failure(error):
    """One line for a runtime failure (an OSError or a TensorFlow op error): what happened, to
    what path, and what to do."""
    message = getattr(error, "message", None) or str(error)
    message = " ".join(line.strip() for line in message.strip().splitlines()[:1])
    text = f"{message} ({type(error).__name__})"
    lowered = message.lower()
    if "no space left" in lowered or "file too large" in lowered:
        return f"{text}: the disk is full or the file too large; free space or write elsewhere"
    if "permission denied" in lowered or "read-only file system" in lowered:
        return f"{text}: choose a --workdir / --export_dir you can write to"
    if "no such file or directory" in lowered or "not a directory" in lowered:
        return f"{text}: check the path; its parent must be a directory you can write to"
    return text


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        _fail("efficientnet-tf", f"usage: efficientnet-tf {{{'|'.join(COMMANDS)}}} [--flags]; "
              f"got {' '.join(argv[1:]) or 'no command'}", USAGE_ERROR)
    _quiet_tensorflow()
    command, rest = argv[1], argv[2:]
    try:
        if FLAGS.tpu:  # before TensorFlow is imported: it loads libtpu at import time
            from efficientnet_tf.train import tpu_runtime
            for name, value in tpu_runtime.configure(FLAGS.tpu).items():
                logging.info("TPU runtime: %s=%s", name, value)
        _load_tensorflow()
        COMMANDS[command](rest)
    except ValueError as error:  # bad names, paths and settings: one clear line, no traceback
        if FLAGS.verbose:
            raise
        _fail(f"efficientnet-tf {command}", error, getattr(error, "EXIT_CODE", USAGE_ERROR))
    except Exception as error:  # noqa: BLE001 -- sorted below: runtime failures or bugs
        if FLAGS.verbose or not _is_runtime_failure(error):
            raise  # a bug: its traceback is what a report needs
        _fail(f"efficientnet-tf {command}", describe_failure(error), RUNTIME_ERROR)


def _is_runtime_failure(error):
    """An OSError or a TensorFlow op error (storage, permissions, devices): the machine's or
    the environment's fault, not a bug."""
    if isinstance(error, OSError):
        return True
    tensorflow = sys.modules.get("tensorflow")
    return tensorflow is not None and isinstance(error, tensorflow.errors.OpError)


def _strategy():
    from efficientnet_tf.train import distribute

    resolved = distribute.resolve(FLAGS.tpu)
    logging.info("strategy: %s", distribute.describe(resolved))
    return resolved


def _no_arguments(command, rest):
    if rest:
        raise ValueError(f"{command} takes flags only, got {' '.join(rest)!r}")


# The commands: each a short function of the arguments after its flags; what it prints is
# formatted by the module that does the work.
def info_command(rest):
    from efficientnet_tf import info

    _no_arguments("info", rest)
    if FLAGS["weights"].present:
        info.show_weights(FLAGS.model)
    else:
        info.show_models(FLAGS.model or (FLAGS.config.model.name if FLAGS.config else None))


flags.DEFINE_bool("dry_run", False, "train: print the run's resolved config (with what the "
                  "recipe decides from the data), steps and stages, and stop before training.")


def train_command(rest):
    from efficientnet_tf.train import trainer

    _no_arguments("train", rest)
    _require("config", "train", "experiments/FILE.py[:ARG]")
    if FLAGS.dry_run:
        run = trainer.resolve_run(FLAGS.config, _strategy(), FLAGS.workdir)
        print(trainer.describe_plan(run))
        return
    _require("workdir", "train", "DIR")
    results = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir, _strategy())
    print(trainer.describe_results(results, FLAGS.workdir))


flags.DEFINE_bool("continuous", False, "eval: evaluate every new checkpoint until the last.")
flags.DEFINE_integer("eval_timeout", None, "eval --continuous: give up after this many seconds "
                     "without a new checkpoint.")


def eval_command(rest):
    from efficientnet_tf.train import trainer

    _no_arguments("eval", rest)
    _require("workdir", "eval", "DIR")
    results = trainer.evaluate_workdir(FLAGS.workdir, FLAGS.config, _strategy(),
                                       continuous=FLAGS.continuous, timeout=FLAGS.eval_timeout)
    print(f"{results['checkpoint']}: {results['summary']}")


flags.DEFINE_enum("format", "saved_model", ["saved_model", "keras", "tflite"], "export: format.")
flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "int8"], "export --format=tflite: "
                  "weights quantization (int8 calibrates on eval images).")
flags.DEFINE_enum("nms", None, ["hard", "gaussian"], "export of a detector: its NMS, per class "
                  "(default hard at IoU 0.5; gaussian: soft-NMS, as the COCO evaluation).")


def export_command(rest):
    from efficientnet_tf import export, pretrained

    _no_arguments("export", rest)
    _require("export_dir", "export", "PATH")
    if FLAGS.weights and FLAGS.workdir:
        raise ValueError("export takes --weights (pretrained weights as they are) or --workdir "
                         "(a run of yours), not both")
    if FLAGS.weights:
        path = pretrained.export_pretrained(FLAGS.weights, FLAGS.export_dir, FLAGS.format,
                                            FLAGS.model, FLAGS.input_scaling, FLAGS.quantize,
                                            FLAGS.top_k, FLAGS.nms)
        print(f"exported {FLAGS.format} of {FLAGS.weights} to {path}")
        return
    _require("workdir", "export", "DIR (or --weights=NAME_OR_PATH)")
    path = export.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.format,
                                 FLAGS.quantize, FLAGS.top_k, nms=FLAGS.nms)
    print(f"exported {FLAGS.format} to {path}")


flags.DEFINE_bool("json", False, "predict: print one JSON object instead of text.")
flags.DEFINE_float("min_score", None, "predict: leave out results scored below this (default: "
                   "0.3 for a detector's boxes, 0 for a classifier's classes).")
flags.DEFINE_string("draw", None, "predict with a detector: write each image with its boxes "
                    "and labels drawn as a PNG into this directory (local or gs://).")


def predict_command(rest):
    from efficientnet_tf import predict

    source = FLAGS.export_dir
    if FLAGS.model and not source and not FLAGS.weights:
        raise ValueError(f"predict --model={FLAGS.model} names the variant of --weights; an "
                         "export or a workdir is --export_dir")
    if not source and not FLAGS.weights:
        raise ValueError("predict needs --export_dir=EXPORT_DIR_OR_WORKDIR (or "
                         "--weights=NAME_OR_PATH [--model=VARIANT]) and image files")
    if source and FLAGS.weights:
        raise ValueError("predict takes --weights (pretrained weights as they are) or "
                         "--export_dir (an export or a run of yours), not both")
    if not rest:
        raise ValueError("predict needs image files after the flags")
    shown, results = predict.predict_files(
        source, rest, FLAGS.top_k, FLAGS.min_score, FLAGS.draw,
        weights=FLAGS.weights and (FLAGS.weights, FLAGS.model, FLAGS.input_scaling))
    print(predict.format_json(source or FLAGS.weights, results) if FLAGS.json
          else predict.format_text(shown, results))
    if all(r.error for r in results):
        sys.exit(1)


flags.DEFINE_string("output", None, "convert: the file to write (FILE.weights.h5).")


def convert_command(rest):
    from efficientnet_tf import pretrained

    _no_arguments("convert", rest)
    _require("weights", "convert", "NAME_OR_PATH (efficientnet-tf info --weights)")
    _require("output", "convert", "FILE.weights.h5")
    path, attributes = pretrained.convert(FLAGS.weights, FLAGS.output, FLAGS.model,
                                          FLAGS.input_scaling)
    print(pretrained.describe_conversion(FLAGS.weights, path, attributes))


flags.DEFINE_string("base", None, "scale-search: the network to scale (default: the config's "
                    "model.name).")
flags.DEFINE_float("factor", 2.0, "scale-search: the FLOPs factor of phi = 1 "
                   "(alpha * beta^2 * gamma^2).")
flags.DEFINE_float("grid_step", 0.05, "scale-search: the step of the alpha, beta, gamma grid.")
flags.DEFINE_float("tolerance", 0.1, "scale-search: how far (a share of factor) the formula and "
                   "the counted MACs may be from factor.")
flags.DEFINE_float("search_epochs", None, "scale-search: epochs per candidate (default: the "
                   "config's train.epochs).")
flags.DEFINE_list("seeds", ["0"], "scale-search: the seeds every candidate trains with.")
flags.DEFINE_string("shard", "0/1", "scale-search: i/n trains the i-th of n shares of the "
                    "training runs (machines sharing a --workdir).")


def scale_search_command(rest):
    from efficientnet_tf.scaling import plan, report, search

    _no_arguments("scale-search", rest)
    _require("workdir", "scale-search", "DIR")
    _require("config", "scale-search", "experiments/FILE.py[:ARG] (the recipe every candidate "
             "trains with)")
    settings = plan.Settings(
        base=FLAGS.base or FLAGS.config.model.name, factor=FLAGS.factor,
        grid_step=FLAGS.grid_step, tolerance=FLAGS.tolerance, epochs=FLAGS.search_epochs,
        seeds=_seeds(FLAGS.seeds))
    shard = search.parse_shard(FLAGS.shard)
    result = search.search(FLAGS.config, FLAGS.workdir, settings, _strategy(), shard)
    print(report.describe(result, FLAGS.workdir))


def demo_command(rest):
    from efficientnet_tf import demo

    which = rest[0] if rest else "digits"
    if rest not in ([], ["detection"], ["scaling"]):
        raise ValueError(f"demo takes no argument, 'detection' or 'scaling', got "
                         f"{' '.join(rest)!r}")
    _require("workdir", " ".join(["demo"] + rest), "DIR")
    run, describe = demo.DEMOS[which]
    print(describe(run(FLAGS.workdir, _strategy()), FLAGS.workdir))


def tpu_command(rest):
    import tensorflow as tf

    from efficientnet_tf.train import distribute, tpu_runtime

    _no_arguments("tpu", rest)
    _require("tpu", "tpu", "local (a TPU VM) or --tpu=NAME (a pod slice, from host 0)")
    resolved = _strategy()
    devices = tf.config.list_logical_devices("TPU")
    print(f"TPU software: {tpu_runtime.describe_software()}")
    print(f"{distribute.describe(resolved)}; {len(devices)} TPU devices")
    if not devices:
        raise ValueError(f"--tpu={FLAGS.tpu} initialised but no TPU devices are visible to "
                         "TensorFlow")


COMMANDS = {"info": info_command, "train": train_command, "eval": eval_command,
            "export": export_command, "predict": predict_command, "convert": convert_command,
            "scale-search": scale_search_command, "demo": demo_command, "tpu": tpu_command}


# The flags each command reads, in the order its help lists them.
COMMAND_FLAGS = {
    "info": ["model", "weights", "config"],
    "train": ["config", "workdir", "dry_run", "tpu", "verbose"],
    "eval": ["workdir", "config", "continuous", "eval_timeout", "tpu", "verbose"],
    "export": ["workdir", "export_dir", "format", "quantize", "top_k", "nms", "weights", "model",
               "input_scaling", "verbose"],
    "predict": ["export_dir", "weights", "model", "input_scaling", "top_k", "min_score", "json",
                "draw", "verbose"],
    "convert": ["weights", "output", "model", "input_scaling", "verbose"],
    "scale-search": ["config", "workdir", "base", "factor", "grid_step", "tolerance",
                     "search_epochs", "seeds", "shard", "tpu", "verbose"],
    "demo": ["workdir", "tpu", "verbose"],
    "tpu": ["tpu", "verbose"],
}


def _usage_of(command):
    """The command's lines of the module docstring's table."""
    lines, inside = [], False
    for line in __doc__.splitlines():
        starts = line.startswith("  ") and not line.startswith("   ")
        if starts:
            inside = line.split()[0] == command
        elif not line.strip():
            inside = False
        if inside:
            lines.append(line)
    return "\n".join(lines)


def _experiments(folder="experiments"):
    """(file, first docstring line) of the experiment files under `folder` (the checkout's)."""
    found = []
    # local: the experiment files are the checkout's (ml_collections imports them from disk)
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):  # local: as above
        if os.path.basename(path).startswith("_"):  # local: as above
            continue
        with open(path) as stream:  # local: as above
            doc = ast.get_docstring(ast.parse(stream.read())) or ""
        found.append((path, doc.strip().splitlines()[0] if doc.strip() else ""))
    return found


def command_help(command):
    """What `efficientnet-tf COMMAND --help` prints: its usage, its flags with their help and
    defaults, and for the commands that take --config, the experiment files and where the
    config keys are."""
    parts = [f"efficientnet-tf {command}:", _usage_of(command), "", "flags:"]
    for name in COMMAND_FLAGS[command]:
        flag = FLAGS[name]
        default = ("" if flag.default in (None, "", False)
                   else f" (default: {flag.default_as_str.strip(chr(39))})")
        parts.append(f"  --{name}{default}")
        parts.extend(textwrap.wrap(flag.help, 92, initial_indent="      ",
                                   subsequent_indent="      "))
    if "config" in COMMAND_FLAGS[command] and command != "info":
        experiments = _experiments()
        parts += ["", "experiments (--config=FILE[:ARG]; ARG is a model name, ',runlocal' for a "
                  "smoke run):"]
        parts += [f"  {path:<32} {line}" for path, line in experiments] or [
            "  (no experiments/ folder here: run from the repository's root)"]
        parts += [""] + textwrap.wrap(
            "config keys: every key, its default and meaning, is in "
            "efficientnet_tf/train/config.py (get_config); set one with --config.KEY=VALUE, e.g. "
            "--config.train.epochs=20" + ("; --dry_run prints the config a run would use"
                                          if command == "train" else ""), 96)
    return "\n".join(parts)


def _seeds(values):
    try:
        return tuple(int(value) for value in values)
    except ValueError:
        raise ValueError(f"--seeds must be integers separated by commas, got "
                         f"{','.join(values)!r}") from None


def run():
    # absl prints the __main__ module's docstring for --help; the console script has none.
    sys.modules["__main__"].__doc__ = __doc__
    app.run(main, argv=sys.argv, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
