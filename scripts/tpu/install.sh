#!/usr/bin/env bash
# Copies this checkout to every host of the slice, installs it there (scripts/tpu/host_install.sh:
# under the image's own TensorFlow, or with TF_TPU=X.Y.Z tensorflow-tpu on a base image), then
# checks from host 0 that the program reaches the TPU: it fails here rather than at the first
# training step. Safe to run again (after a preemption, or to update the code).
#   bash scripts/tpu/install.sh
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"
tf_tpu_single_host
root="$(cd "$(dirname "$0")/../.." && pwd)"

archive="$(mktemp -d)/efficientnet_tf.tar.gz"
tar -C "$root" -czf "$archive" setup.py README.md requirements.txt MANIFEST.in efficientnet_tf \
  experiments scripts
gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:~/efficientnet_tf.tar.gz" --zone "$ZONE" \
  "${PROJECT_FLAG[@]}" --worker=all
# What host_install.sh reads: TF_TPU, and PIP_FIND_LINKS where set (tensorflow-tpu 2.17 and
# 2.18 find their libtpu on Google's libtpu index only).
host_env="TF_TPU=$TF_TPU"
if [[ -n "${PIP_FIND_LINKS:-}" ]]; then
  host_env="PIP_FIND_LINKS=$PIP_FIND_LINKS $host_env"
fi
tpu_ssh all "set -euo pipefail; mkdir -p ~/efficientnet_tf \
  && tar -C ~/efficientnet_tf -xzf ~/efficientnet_tf.tar.gz \
  && $host_env bash ~/efficientnet_tf/scripts/tpu/host_install.sh $MULTI_HOST"

tpu_flag=local
if (( MULTI_HOST )); then
  tpu_flag="$TPU_NAME"
fi
tpu_ssh 0 "cd ~/efficientnet_tf && TPU_RUNTIME_VERSION=$RUNTIME_VERSION \
  ~/.local/bin/efficientnet-tf tpu --tpu=$tpu_flag"
