#!/usr/bin/env bash
# Copies this checkout to every host of the slice and installs it there. The TPU VM image already
# has TensorFlow for the TPU; installing the package keeps it (setup.py asks tensorflow>=2.16).
#   bash scripts/tpu/install.sh
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"

archive="$(mktemp -d)/efficientnet_tf.tar.gz"
tar -C "$root" -czf "$archive" setup.py README.md efficientnet_tf experiments scripts
gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:~/efficientnet_tf.tar.gz" --zone "$ZONE" \
  "${PROJECT_FLAG[@]}" --worker=all
tpu_ssh "set -o pipefail; mkdir -p ~/efficientnet_tf && tar -C ~/efficientnet_tf -xzf ~/efficientnet_tf.tar.gz \
  && python3 -m pip install --user -e ~/efficientnet_tf && ~/.local/bin/efficientnet-tf info \
  --model=efficientnet-b0 | tail -1"
