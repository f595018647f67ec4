#!/usr/bin/env bash
# Deletes the TPU (the workdir on gs:// stays).
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"
gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --quiet
