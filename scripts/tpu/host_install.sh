#!/usr/bin/env bash
# Runs on each TPU VM host (scripts/tpu/install.sh copies it there): installs this package under
# the image's own TensorFlow, which is the TPU build (tensorflow or tensorflow-tpu with libtpu);
# a PyPI tensorflow wheel cannot drive TPUs and must never shadow it.
#   bash scripts/tpu/host_install.sh [MULTI_HOST=0|1]
set -euo pipefail
cd "$(dirname "$0")/../.."
multi_host="${1:-0}"
keras_floor="3.8.0"  # the oldest Keras the tests pass with (TF 2.16.1): setup.py, .ci/run

# Everything the image has stays as it is, Keras aside.
python3 -m pip freeze --all | grep -viE '^(pip|setuptools|wheel|keras)==' > tpu-constraints.txt
keras_now="$(python3 -c 'import importlib.metadata as m; print(m.version("keras"))' 2>/dev/null \
  || echo 0)"
if python3 -c "import sys; v = lambda s: tuple(int(p) for p in s.split('.')[:3] if p.isdigit()); \
sys.exit(0 if v('$keras_now') >= v('$keras_floor') else 1)"; then
  keras="keras==$keras_now"
else
  # Keras is pure Python and not part of the TPU build; older Keras 3 releases cannot average
  # batch-norm statistics across replicas (README, "Training on Cloud TPU").
  echo "the image's Keras $keras_now is older than $keras_floor: installing keras==$keras_floor"
  keras="keras==$keras_floor"
fi
extras=()
if (( multi_host )); then
  extras=(cloud-tpu-client)  # TPUClusterResolver(tpu=NAME) asks the Cloud TPU API
fi
python3 -m pip install --user --quiet -c tpu-constraints.txt -r requirements.txt "$keras" \
  "${extras[@]}"
python3 -m pip install --user --quiet --no-deps -e .

if python3 -m pip list --user 2>/dev/null | grep -qiE '^tensorflow(-cpu|-intel)? '; then
  echo "error: a PyPI tensorflow is now in ~/.local and shadows the image's TPU build;" \
    "remove it: python3 -m pip uninstall tensorflow" >&2
  exit 1
fi
python3 -c 'import tensorflow as tf, keras; print("TensorFlow", tf.__version__, "from",
tf.__file__.rsplit("/", 2)[0], "| Keras", keras.__version__)'
