#!/usr/bin/env bash
# Settings shared by the TPU scripts. Override any of them in the environment, e.g.
#   TPU_NAME=v2s ZONE=us-central2-b ACCELERATOR=v4-8 bash scripts/tpu/create.sh
# A single-host slice (v2-8, v3-8, v4-8, v5litepod-8, v5p-8) has one TPU VM; a larger slice has
# one VM per host, and every command below runs on all of them (--worker=all).
# Generations that run TensorFlow (Cloud TPU docs, "TPU software versions"): v2, v3, v4, v5e
# (ACCELERATOR=v5litepod-N) and v5p; not v6e (Trillium: JAX/PyTorch only, and TensorFlow
# training is unsupported there on Vertex AI), not TPU7x.

TPU_NAME="${TPU_NAME:-efficientnet}"
ZONE="${ZONE:-us-central1-a}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
# The TensorFlow of the TPU VM image. TPU builds stop at 2.18 (Google's TF/libtpu table);
# the tests run on 2.16.1, the oldest we support (README, "Training on Cloud TPU").
TF_VERSION="${TF_VERSION:-2.16.1}"
SPOT="${SPOT:-0}"  # 1: a spot TPU (cheaper, may be preempted; the run resumes when relaunched)
QUEUED="${QUEUED:-0}"  # 1: ask through a queued resource (waits for capacity instead of failing)
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-}"  # empty: the project's default Compute Engine account
# The VM's access scope: cloud-platform lets the service account's IAM roles decide (it needs
# roles/storage.objectAdmin on the bucket that holds the data and the workdir).
SCOPES="${SCOPES:-https://www.googleapis.com/auth/cloud-platform}"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then
  PROJECT_FLAG=(--project "$PROJECT")
fi

# The number after the generation counts cores (v2, v3, v4, v5p) or chips (v5litepod); above
# 8 the slice has more than one host.
size="${ACCELERATOR##*-}"
if (( size > 8 )); then
  MULTI_HOST=1
else
  MULTI_HOST=0
fi
# tpu-vm-tf-X.Y.Z[-pod]-pjrt: "-pod" for multi-host slices, "-pjrt" for the PJRT runtime (the
# only one from TF 2.15 on for v5e and v5p; also offered for v2-v4). create.sh checks the name
# against `gcloud compute tpus tpu-vm versions list` before creating anything.
if [[ -z "${RUNTIME_VERSION:-}" ]]; then
  if (( MULTI_HOST )); then
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pod-pjrt"
  else
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pjrt"
  fi
fi

tpu_ssh() {  # tpu_ssh WORKER COMMAND: runs COMMAND on host WORKER (0, 1, ... or all)
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
    --worker="$1" --command "$2"
}
