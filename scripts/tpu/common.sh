#!/usr/bin/env bash
# Settings shared by the TPU scripts. Override any of them in the environment, e.g.
#   TPU_NAME=v2s ZONE=us-central2-b ACCELERATOR=v4-8 bash scripts/tpu/create.sh
# A single-host slice (v2-8, v3-8, v4-8, v5p-8, v5litepod-8, v6e-8) has one TPU VM; a larger
# slice has one VM per host, and every command below runs on all of them (--worker=all).
# Generations with TensorFlow runtimes (Cloud TPU docs, "TPU software versions"): v2, v3, v4,
# and, from TF 2.15 on with -pjrt runtimes only, v5e (ACCELERATOR=v5litepod-N), v5p and v6e
# (Trillium). TPU7x has no TensorFlow. These scripts use the Cloud TPU API (`gcloud compute
# tpus`), which Google now keeps at bug fixes and security updates.

TPU_NAME="${TPU_NAME:-efficientnet}"
ZONE="${ZONE:-us-central1-a}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
# Two routes to TensorFlow on the TPU VM:
#   a TensorFlow runtime image, tpu-vm-tf-$TF_VERSION[-pod]-pjrt (the default): TensorFlow's
#     TPU build comes with the image. 2.16.1 is the oldest we test (README, "Training on Cloud
#     TPU"); `gcloud compute tpus tpu-vm versions list --zone $ZONE` lists what a zone offers.
#   TF_TPU=X.Y.Z: a base image (below) and tensorflow-tpu==X.Y.Z with its libtpu from PyPI,
#     installed by host_install.sh. 2.19.1 is the TPU build CI tests (the last TensorFlow the
#     Keras team supports on TPUs); 2.20.0 is the last published.
TF_VERSION="${TF_VERSION:-2.16.1}"
TF_TPU="${TF_TPU:-}"
SPOT="${SPOT:-0}"  # 1: a spot TPU (cheaper, may be preempted: README, "When a spot TPU is preempted")
QUEUED="${QUEUED:-0}"  # 1: ask through a queued resource (waits for capacity instead of failing)
POLL_SECONDS="${POLL_SECONDS:-60}"  # how often create.sh asks a queued resource for its state
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-}"  # empty: the project's default Compute Engine account
# The VM's access scope: cloud-platform lets the service account's IAM roles decide (it needs
# roles/storage.objectAdmin on the bucket that holds the data and the workdir, and on a
# multi-host slice roles/tpu.viewer, to look the TPU up by name).
SCOPES="${SCOPES:-https://www.googleapis.com/auth/cloud-platform}"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then
  PROJECT_FLAG=(--project "$PROJECT")
fi

# The number after the generation counts TensorCores (v2, v3, v4, v5p: two per chip) or chips
# (v5litepod, v6e); above 8 the slice has more than one host.
generation="${ACCELERATOR%%-*}"
size="${ACCELERATOR##*-}"
if (( size > 8 )); then
  MULTI_HOST=1
else
  MULTI_HOST=0
fi
# tpu-vm-tf-X.Y.Z[-pod]-pjrt: "-pod" for multi-host slices, "-pjrt" for the PJRT runtime (the
# only one for v5e, v5p and v6e; also offered for v2-v4). With TF_TPU, the generation's base
# image. create.sh checks the name against the zone's list before creating anything.
if [[ -z "${RUNTIME_VERSION:-}" ]]; then
  if [[ -n "$TF_TPU" ]]; then
    case "$generation" in
      v6e) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
      v5p) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
      v5litepod) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
      *) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
    esac
  elif (( MULTI_HOST )); then
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pod-pjrt"
  else
    RUNTIME_VERSION="tpu-vm-tf-${TF_VERSION}-pjrt"
  fi
fi

tf_tpu_single_host() {  # create.sh and install.sh: TF_TPU only where it can work
  # A multi-host slice runs through a TensorFlow server on every host, which the -pod runtime
  # images start; a base image has none.
  if [[ -n "$TF_TPU" ]] && (( MULTI_HOST )); then
    echo "error: TF_TPU=$TF_TPU (a base image) is for single-host slices; $ACCELERATOR has" \
      "several hosts: leave TF_TPU unset for a tpu-vm-tf-X.Y.Z-pod-pjrt image" >&2
    exit 1
  fi
}

tpu_ssh() {  # tpu_ssh WORKER COMMAND: runs COMMAND on host WORKER (0, 1, ... or all)
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" \
    --worker="$1" --command "$2"
}
