#!/usr/bin/env bash
# Creates a TPU VM (v3-8, v4-8) or a pod slice (v3-32, v4-32, ...) with TensorFlow preinstalled.
#   ACCELERATOR=v4-8 ZONE=us-central2-b bash scripts/tpu/create.sh
# Delete it with scripts/tpu/delete.sh when done: a TPU bills while it exists, idle or not.
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"

echo "creating $ACCELERATOR '$TPU_NAME' in $ZONE with $RUNTIME_VERSION"
gcloud compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
  --accelerator-type "$ACCELERATOR" --version "$RUNTIME_VERSION"
gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
  --format "value(state,networkEndpoints[].ipAddress)"
