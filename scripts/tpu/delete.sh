#!/usr/bin/env bash
# Deletes the TPU, and its queued resource if it came from one (the workdir on gs:// stays).
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"
if (( QUEUED )); then
  gcloud compute tpus queued-resources delete "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
    --force --quiet
else
  gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --quiet
fi
