#!/usr/bin/env bash
# Launches training from host 0 of the slice. TensorFlow drives TPUs as a single client: on a
# single-host slice the program loads libtpu and talks to the local chips (--tpu=local); on a
# multi-host slice (a "-pod" runtime version) every host runs a TensorFlow server and host 0's
# program reaches all of them through the TPU's name (--tpu=$TPU_NAME), placing one input
# pipeline on each host, each reading its own shard of the files. Data and workdir must be on
# gs://, which every host can read (the TPU's service account needs access to the bucket).
#   WORKDIR=gs://BUCKET/runs/v2-s DATA=gs://BUCKET/imagenet bash scripts/tpu/train.sh
#   EXPERIMENT=experiments/imagenet_v2.py:efficientnetv2-m EXTRA="--config.train.batch_size=1024" ...
# Progress: bash scripts/tpu/train.sh logs (tails host 0's log, which keeps TensorFlow's and
# libtpu's start-up warnings and errors: the CLI does with --tpu; libtpu's full log is in
# /tmp/tpu_logs on the host). A crashed run resumes from its last checkpoint when launched again
# with the same WORKDIR; a preempted spot TPU must first be deleted, created and installed again
# (README, "When a spot TPU is preempted").
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"

if [[ "${1:-}" == "logs" ]]; then
  tpu_ssh 0 "tail -f ~/efficientnet_tf/train.log"
  exit 0
fi

: "${WORKDIR:?set WORKDIR=gs://BUCKET/runs/NAME}"
: "${DATA:?set DATA=gs://BUCKET/imagenet (ImageNet TFRecords: train-*, validation-*)}"
EXPERIMENT="${EXPERIMENT:-experiments/imagenet_v2.py:efficientnetv2-s}"
# One host: 1024 images per step, 128 per replica where TensorFlow sees 8 (v2-8, v3-8: one per
# core; v5litepod-8, v6e-8: one per chip) and 256 where it sees 4 (v4-8, v5p-8: one per chip,
# its two cores act as one); slices of 32 or more: 4096.
BATCH="${BATCH:-$(( size >= 32 ? 4096 : 1024 ))}"
EXTRA="${EXTRA:-}"

# What the PJRT runtimes need, set before TensorFlow starts (the CLI sets the same when unset;
# sources: TensorFlow's TPU tests and the Vertex AI TPU docs, README "Training on Cloud TPU").
if (( MULTI_HOST )); then
  TPU_FLAG="$TPU_NAME"
  RUNTIME_ENV="TPU_NAME=$TPU_NAME TPU_LOAD_LIBRARY=0"
else
  TPU_FLAG=local
  # The CLI adds TF_PLUGGABLE_DEVICE_LIBRARY_PATH: the image's /lib/libtpu.so or libtpu's own.
  RUNTIME_ENV="NEXT_PLUGGABLE_DEVICE_USE_C_API=true"
fi

tpu_ssh 0 "cd ~/efficientnet_tf && env $RUNTIME_ENV TPU_RUNTIME_VERSION=$RUNTIME_VERSION \
  nohup ~/.local/bin/efficientnet-tf train --tpu=$TPU_FLAG --config=$EXPERIMENT --workdir=$WORKDIR \
  --config.data.train_pattern='$DATA/train-*' --config.data.eval_pattern='$DATA/validation-*' \
  --config.train.batch_size=$BATCH $EXTRA > train.log 2>&1 &"
echo "training launched on host 0 of $TPU_NAME; follow it: bash scripts/tpu/train.sh logs"
echo "TensorBoard: tensorboard --logdir $WORKDIR"
