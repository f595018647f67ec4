#!/usr/bin/env bash
# Runs on each TPU VM host (scripts/tpu/install.sh copies it there) and installs this package.
#   bash scripts/tpu/host_install.sh [MULTI_HOST=0|1]
# Two routes (common.sh):
#   a TensorFlow runtime image: the image's TensorFlow is the TPU build (tensorflow or
#     tensorflow-tpu, with libtpu). Everything the image has stays as it is, Keras aside (raised
#     to our floor); a PyPI tensorflow wheel cannot drive TPUs and must never shadow it.
#   TF_TPU=X.Y.Z on a base image: installs tensorflow-tpu==X.Y.Z and the libtpu it depends on
#     (2.19.1: libtpu 0.0.10 and 2.20.0: libtpu 0.0.14+ are on PyPI; 2.17 and 2.18 want a libtpu
#     from Google's libtpu release index: set PIP_FIND_LINKS to it, README "Training on Cloud
#     TPU").
# Running it again changes nothing. PYTHON picks the interpreter (python3); in a virtualenv
# packages go into it, otherwise into ~/.local, beside the image's.
set -euo pipefail
cd "$(dirname "$0")/../.."
multi_host="${1:-0}"
python="${PYTHON:-python3}"
tf_tpu="${TF_TPU:-}"
keras_floor="3.8.0"  # the oldest Keras the tests pass with (TF 2.16.1): setup.py, .ci/run

install=("$python" -m pip install --quiet)
if "$python" -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
  install+=(--user)
fi

tensorflow_builds() {  # every TensorFlow distribution installed, and where (one per line)
  "$python" -c 'import importlib.metadata as m
for name in ("tensorflow-tpu", "tensorflow", "tensorflow-cpu", "tensorflow-intel"):
    try:
        print(name, m.version(name), m.distribution(name).locate_file(""))
    except m.PackageNotFoundError:
        pass'
}

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
requirements=()
if [[ -n "$tf_tpu" ]]; then
  # A base image has no TensorFlow: the TPU build and our requirements resolve together.
  requirements=("tensorflow-tpu==$tf_tpu" "keras>=$keras_floor")
else
  # Pins for everything the image has, so that installing our requirements changes none of
  # it: "name==version" for every distribution, those installed from local wheels included
  # (pip freeze would write "name @ file://..." for them, which a constraints file refuses);
  # editable installs (this package, from an earlier run) left out, as are pip's tools and Keras.
  "$python" -m pip list --format=freeze --exclude-editable \
    | grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*==[^ ;@]+$' \
    | grep -viE '^(pip|setuptools|wheel|keras|efficientnet[-_.]tf)==' > "$constraints" || true
  keras_now="$("$python" -c 'import importlib.metadata as m; print(m.version("keras"))' \
    2>/dev/null || echo 0)"
  if "$python" -c "import sys; v = lambda s: tuple(int(p) for p in s.split('.')[:3] if p.isdigit()); \
sys.exit(0 if v('$keras_now') >= v('$keras_floor') else 1)"; then
    requirements=("keras==$keras_now")
  else
    # Keras is pure Python and not part of the TPU build; older Keras 3 releases cannot average
    # batch-norm statistics across replicas (README, "Training on Cloud TPU").
    echo "the image's Keras $keras_now is older than $keras_floor: installing keras==$keras_floor"
    requirements=("keras==$keras_floor")
  fi
fi
if (( multi_host )) && ! "$python" -c 'import googleapiclient, oauth2client' 2>/dev/null; then
  # TPUClusterResolver(tpu=NAME) asks the Cloud TPU API through TensorFlow's own client, which
  # needs these two (unpinned: cloud-tpu-client's pins do not resolve on current images).
  requirements+=(google-api-python-client oauth2client)
fi

before="$(tensorflow_builds)"
"${install[@]}" -c "$constraints" -r requirements.txt "${requirements[@]}"
"${install[@]}" --no-deps -e .
after="$(tensorflow_builds)"

if [[ -n "$tf_tpu" ]]; then
  if [[ "$after" != "tensorflow-tpu $tf_tpu "* ]] || (( $(wc -l <<< "$after") > 1 )); then
    echo "error: expected tensorflow-tpu $tf_tpu alone, found: ${after//$'\n'/; }" >&2
    exit 1
  fi
elif [[ "$before" != "$after" ]]; then
  echo "error: installing changed the image's TensorFlow (${before//$'\n'/; } ->" \
    "${after//$'\n'/; }); a PyPI tensorflow cannot drive TPUs: $python -m pip uninstall" \
    "the one that was not there before" >&2
  exit 1
fi
# Without importing TensorFlow (the TPU build loads libtpu when imported, which takes the
# chips): what is installed and the libtpu a run will load (the CLI's `tpu` command checks
# the chips).
TENSORFLOW="${after%%$'\n'*}" "$python" -c 'import importlib.metadata as m, os
from efficientnet_tf.train import tpu_runtime
print("TensorFlow:", *os.environ["TENSORFLOW"].split()[:2], "| Keras", m.version("keras"),
      "| libtpu", tpu_runtime.libtpu_path() or "none found")'
