"""The `efficientnet-tf` command line: `efficientnet-tf COMMAND [--flags]`.

  info     parameters, GMACs and sizes of every variant (`--model=NAME`: its stages)
  train    --config=experiments/FILE.py[:ARG] --workdir=DIR [--config.a.b=value] [--tpu=...]
  eval     --workdir=DIR [--config=...] [--continuous]: top-1/top-5 of the checkpoints
  export   --workdir=DIR --export_dir=PATH [--format=saved_model|keras|tflite]
           [--quantize=none|dynamic|int8] [--top_k=5]: the EMA weights, ready to serve
  predict  --model=EXPORT_DIR_OR_WORKDIR [--json] IMAGE...: top-5 labels per image
  demo     --workdir=DIR: the embedded default run (digits, progressive learning, export)
  tpu      --tpu=local|NAME: the TPU software, topology and devices reached (fails without one)
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

flags.DEFINE_string("model", None, "info: a variant name (e.g. efficientnetv2-s) to show its "
                    "stages; predict: an export directory or a training workdir.")
flags.DEFINE_string("workdir", None, "Run directory (local or gs://): config, checkpoints, "
                    "summaries, plot, results.")
flags.DEFINE_string("tpu", None, "TPU to train on: a TPU name, 'local' on a TPU VM, or "
                    "grpc://IP:8470. Unset: GPUs, TF_CONFIG workers or the CPU.")
flags.DEFINE_string("export_dir", None, "export: where to write (local or gs://); a .keras or "
                    ".tflite file for those formats.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "keras", "tflite"], "export: format.")
flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "int8"], "export --format=tflite: "
                  "weights quantization (int8 calibrates on eval images).")
flags.DEFINE_integer("top_k", 5, "export/predict: how many classes to return per image.")
flags.DEFINE_bool("json", False, "predict: print one JSON object instead of text.")
flags.DEFINE_bool("continuous", False, "eval: evaluate every new checkpoint until the last.")
flags.DEFINE_integer("eval_timeout", None, "eval --continuous: give up after this many seconds "
                     "without a new checkpoint.")
config_flags.DEFINE_config_file("config", None, "Experiment file, e.g. "
                                "experiments/imagenet_v2.py:efficientnetv2-s", lock_config=True)
FLAGS = flags.FLAGS


def _info(argv):
    from efficientnet_tf import info
    info.run(FLAGS.model)


def _require_workdir(command):
    if not FLAGS.workdir:
        raise ValueError(f"{command} needs --workdir=DIR")


def _strategy():
    from efficientnet_tf.train import distribute
    strategy = distribute.resolve(FLAGS.tpu)
    logging.info("strategy: %s", distribute.describe(strategy))
    return strategy


def _train(argv):
    from efficientnet_tf.train import trainer
    _require_workdir("train")
    if FLAGS.config is None:
        raise ValueError("train needs --config=experiments/FILE.py[:ARG]")
    results = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir, _strategy())
    print(f"eval top-1 {100 * results['eval_top1']:.2f}% top-5 {100 * results['eval_top5']:.2f}% "
          f"on {results['eval_examples']} images; workdir {FLAGS.workdir}")


def _eval(argv):
    from efficientnet_tf.train import checkpoints, trainer
    _require_workdir("eval")
    config = FLAGS.config or checkpoints.load_config(FLAGS.workdir)
    results = trainer.evaluate_workdir(config, FLAGS.workdir, _strategy(),
                                       continuous=FLAGS.continuous, timeout=FLAGS.eval_timeout)
    print(f"{results['checkpoint']}: top-1 {100 * results['top1']:.2f}% "
          f"top-5 {100 * results['top5']:.2f}% on {results['examples']} images")


def _export(argv):
    from efficientnet_tf import export
    _require_workdir("export")
    if not FLAGS.export_dir:
        raise ValueError("export needs --export_dir=PATH")
    path = export.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.format, FLAGS.quantize,
                                 FLAGS.top_k)
    print(f"exported {FLAGS.format} to {path}")


def _predict(argv):
    import json

    from efficientnet_tf import predict
    if not FLAGS.model:
        raise ValueError("predict needs --model=EXPORT_DIR_OR_WORKDIR and image files")
    if not argv:
        raise ValueError("predict needs image files after the flags")
    results = predict.predict_files(FLAGS.model, argv, FLAGS.top_k)
    if FLAGS.json:
        print(json.dumps({"model": FLAGS.model,
                          "predictions": [r.as_dict() for r in results]}))
    else:
        print(predict.format_text(results))
    if all(r.error for r in results):
        sys.exit(1)


def _tpu(argv):
    from efficientnet_tf.train import distribute, tpu_runtime
    if not FLAGS.tpu:
        raise ValueError("tpu needs --tpu=local (a TPU VM) or --tpu=NAME (a pod slice, from "
                         "host 0)")
    strategy = distribute.resolve(FLAGS.tpu)
    import tensorflow as tf

    devices = tf.config.list_logical_devices("TPU")
    print(f"TPU software: {tpu_runtime.describe_software()}")
    print(f"{distribute.describe(strategy)}; {len(devices)} TPU devices")
    if not devices:
        sys.exit(f"efficientnet-tf tpu: error: --tpu={FLAGS.tpu} initialised but no TPU devices "
                 "are visible to TensorFlow")


def _demo(argv):
    from efficientnet_tf import demo
    _require_workdir("demo")
    results = demo.run(FLAGS.workdir, _strategy())
    print(f"digits: held-out top-1 {100 * results['eval_top1']:.2f}% on "
          f"{results['eval_examples']} images (chance 10%) after {results['steps']} steps in "
          f"{results['train_seconds']:.0f} s; the exported SavedModel gets "
          f"{100 * results['served_top1']:.2f}% from the image files; export: "
          f"{results['export_dir']}")


COMMANDS = {"info": _info, "train": _train, "eval": _eval, "export": _export,
            "predict": _predict, "demo": _demo, "tpu": _tpu}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: efficientnet-tf {{{'|'.join(COMMANDS)}}} [--flags]; "
                             f"got {' '.join(argv[1:]) or 'no command'}")
    if FLAGS.tpu:  # before TensorFlow is imported: it loads libtpu at import time
        from efficientnet_tf.train import tpu_runtime
        for name, value in tpu_runtime.configure(FLAGS.tpu).items():
            logging.info("TPU runtime: %s=%s", name, value)
    try:
        COMMANDS[argv[1]](argv[2:])
    except ValueError as error:  # bad names, paths and settings: one clear line, no traceback
        sys.exit(f"efficientnet-tf {argv[1]}: error: {error}")


def run():
    # absl prints the __main__ module's docstring for --help; the console script has none.
    sys.modules["__main__"].__doc__ = __doc__
    app.run(main, argv=sys.argv)


if __name__ == "__main__":
    run()
