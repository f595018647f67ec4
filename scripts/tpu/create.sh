#!/usr/bin/env bash
# Creates a TPU VM (v3-8, v4-8, v5litepod-8, ...) or a multi-host slice with TensorFlow
# preinstalled, after checking that the zone offers the runtime version.
#   ACCELERATOR=v4-8 ZONE=us-central2-b bash scripts/tpu/create.sh
#   SPOT=1 QUEUED=1 ACCELERATOR=v5litepod-16 ZONE=us-west4-a TF_VERSION=2.18.0 bash ...create.sh
#   TF_TPU=2.19.1 ACCELERATOR=v6e-8 ZONE=us-east5-b bash ...create.sh   (a base image)
# Delete it with scripts/tpu/delete.sh when done: a TPU bills while it exists, idle or not.
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"
tf_tpu_single_host

available="$(gcloud compute tpus tpu-vm versions list --zone "$ZONE" "${PROJECT_FLAG[@]}" \
  --format 'value(version)')"
if ! grep -qx "$RUNTIME_VERSION" <<< "$available"; then
  echo "runtime $RUNTIME_VERSION is not offered in $ZONE; what it offers:" >&2
  if [[ -n "$TF_TPU" ]]; then
    grep -E '^(tpu-ubuntu|v2-alpha-)' <<< "$available" | sort -V >&2 || echo "  (none)" >&2
  else
    grep '^tpu-vm-tf-' <<< "$available" | sort -V >&2 || echo "  (none)" >&2
  fi
  echo "set TF_VERSION=X.Y.Z or RUNTIME_VERSION=NAME (v5e, v5p and v6e need a -pjrt one)," \
    "or TF_TPU=X.Y.Z for a base image with tensorflow-tpu" >&2
  exit 1
fi

options=(--zone "$ZONE" "${PROJECT_FLAG[@]}" --accelerator-type "$ACCELERATOR"
         --scopes "$SCOPES")
if [[ -n "$SERVICE_ACCOUNT" ]]; then
  options+=(--service-account "$SERVICE_ACCOUNT")
fi
if (( SPOT )); then
  options+=(--spot)
fi

echo "creating $ACCELERATOR '$TPU_NAME' in $ZONE with $RUNTIME_VERSION"
if (( QUEUED )); then
  # A queued resource waits for capacity; the TPU exists once it is ACTIVE. FAILED and
  # SUSPENDED (a spot TPU preempted) never become ACTIVE: the request has to be deleted.
  gcloud compute tpus queued-resources create "$TPU_NAME" --node-id "$TPU_NAME" \
    --runtime-version "$RUNTIME_VERSION" "${options[@]}"
  while true; do
    state="$(gcloud compute tpus queued-resources describe "$TPU_NAME" --zone "$ZONE" \
      "${PROJECT_FLAG[@]}" --format 'value(state.state)')" || state="unknown: gcloud failed"
    case "$state" in
      ACTIVE) break ;;
      FAILED | SUSPENDING | SUSPENDED)
        echo "error: queued resource $TPU_NAME is $state and will not become ACTIVE; the" \
          "reason: gcloud compute tpus queued-resources describe $TPU_NAME --zone $ZONE;" \
          "delete it (QUEUED=1 bash scripts/tpu/delete.sh) before asking again" >&2
        exit 1 ;;
      *)
        echo "waiting for capacity (queued resource $TPU_NAME: ${state:-no state yet})..."
        sleep "$POLL_SECONDS" ;;
    esac
  done
else
  gcloud compute tpus tpu-vm create "$TPU_NAME" --version "$RUNTIME_VERSION" "${options[@]}"
fi
gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
  --format "value(state,networkEndpoints[].ipAddress)"
