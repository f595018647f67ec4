"""The `efficientnet-tf` command line: `efficientnet-tf COMMAND [--flags]`.

Commands: info (parameters, GMACs and sizes of every variant; `--model=NAME` for its stages).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", None, "Variant name, e.g. efficientnetv2-s (info: show its stages).")
FLAGS = flags.FLAGS


def _info(argv):
    from efficientnet_tf import info
    info.run(FLAGS.model)


COMMANDS = {"info": _info}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: efficientnet-tf {{{'|'.join(COMMANDS)}}} [--flags]; "
                             f"got {' '.join(argv[1:]) or 'no command'}")
    try:
        COMMANDS[argv[1]](argv[2:])
    except ValueError as error:  # bad names, paths and settings: one clear line, no traceback
        sys.exit(f"efficientnet-tf {argv[1]}: error: {error}")


def run():
    app.run(main, argv=sys.argv)


if __name__ == "__main__":
    run()
