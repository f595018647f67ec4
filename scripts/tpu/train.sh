#!/usr/bin/env bash
# Launches training from host 0 of the slice. TensorFlow drives TPUs as a single client: on a
# v3-8/v4-8 the program talks to the local chips (--tpu=local); on a pod slice (a "-pod" runtime
# version) every host runs a TensorFlow server and host 0's program reaches all of them through
# the TPU's name (--tpu=$TPU_NAME), placing one input pipeline on each host, each reading its own
# shard of the files. Data and workdir must be on gs://, which every host can read.
#   WORKDIR=gs://BUCKET/runs/v2-s DATA=gs://BUCKET/imagenet bash scripts/tpu/train.sh
#   EXPERIMENT=experiments/imagenet_v2.py:efficientnetv2-m EXTRA="--config.train.batch_size=1024" ...
# Progress: bash scripts/tpu/train.sh logs (tails host 0's log). A preempted or crashed run resumes
# from its last checkpoint when launched again with the same WORKDIR.
set -euo pipefail
# shellcheck source=scripts/tpu/common.sh
source "$(dirname "$0")/common.sh"

if [[ "${1:-}" == "logs" ]]; then
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --worker=0 \
    --command "tail -f ~/efficientnet_tf/train.log"
  exit 0
fi

: "${WORKDIR:?set WORKDIR=gs://BUCKET/runs/NAME}"
: "${DATA:?set DATA=gs://BUCKET/imagenet (ImageNet TFRecords: train-*, validation-*)}"
EXPERIMENT="${EXPERIMENT:-experiments/imagenet_v2.py:efficientnetv2-s}"
# v3-8 / v4-8: 1024 images per step (128 per core, the V2 recipe's per-core batch); pods: 4096.
BATCH="${BATCH:-$(( cores >= 32 ? 4096 : 1024 ))}"
EXTRA="${EXTRA:-}"

TPU_FLAG=local
if (( cores > 8 )); then
  TPU_FLAG="$TPU_NAME"
fi

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --worker=0 \
  --command "cd ~/efficientnet_tf && nohup ~/.local/bin/efficientnet-tf train --tpu=$TPU_FLAG \
  --config=$EXPERIMENT --workdir=$WORKDIR \
  --config.data.train_pattern='$DATA/train-*' --config.data.eval_pattern='$DATA/validation-*' \
  --config.train.batch_size=$BATCH $EXTRA > train.log 2>&1 &"
echo "training launched on host 0 of $TPU_NAME; follow it: bash scripts/tpu/train.sh logs"
echo "TensorBoard: tensorboard --logdir $WORKDIR"
