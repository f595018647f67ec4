#!/usr/bin/env bash
# Settings shared by the TPU scripts. Override any of them in the environment, e.g.
#   TPU_NAME=v2s ZONE=us-central2-b ACCELERATOR=v4-8 bash scripts/tpu/create.sh
# A single-host slice (v3-8, v4-8) has one TPU VM; a pod slice (v3-32, v4-32, ...) has one VM per
# host, and every command below runs on all of them (--worker=all).

TPU_NAME="${TPU_NAME:-efficientnet}"
ZONE="${ZONE:-us-central1-a}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
TF_VERSION="${TF_VERSION:-2.16.1}"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then
  PROJECT_FLAG=(--project "$PROJECT")
fi

# TPU VM software versions are named tpu-vm-tf-X.Y.Z[-pod][-pjrt] (Cloud TPU docs, "TPU software
# versions"): "-pod" for slices with more than one host, "-pjrt" for the PJRT runtime (TF >= 2.15).
cores="${ACCELERATOR##*-}"
if [[ -z "${RUNTIME_VERSION:-}" ]]; then
  if (( cores > 8 )); then
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pod-pjrt"
  else
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pjrt"
  fi
fi

tpu_ssh() {  # tpu_ssh COMMAND: runs COMMAND on every host of the slice
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
    --worker=all --command "$1"
}
