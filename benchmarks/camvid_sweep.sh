#!/usr/bin/env bash
# Train CamVid recipe variants side by side on one GPU, to choose the CPU recipe of configs/camvid.yaml without
# spending 45 CPU minutes per try. A recipe's accuracy does not depend on the device; its wall time does.
#
#   printf '%s\n' 'name|overrides' ... | bash benchmarks/camvid_sweep.sh
#   e.g. 'lr01|train.lr=0.01'  'noweights|train.class_weights=null train.seed=1'
#
# Each variant is `pspnet train --config configs/camvid.yaml OVERRIDES` with validation every 225 iterations; fp32 with
# TF32 off, as on the CPU. DATA_ROOT: the prepared CamVid (default data/camvid); SWEEP_DIR: where runs go.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} NVIDIA_TF32_OVERRIDE=0 PYTHONUNBUFFERED=1
DATA_ROOT=${DATA_ROOT:-data/camvid}
SWEEP_DIR=${SWEEP_DIR:-runs/sweep}
mkdir -p "$SWEEP_DIR"
pids=()
while IFS='|' read -r name overrides; do
  [ -z "$name" ] && continue
  # shellcheck disable=SC2086  # overrides are separate words
  python3 -m pspnet.cli.main train --config configs/camvid.yaml --no-progress data.root="$DATA_ROOT" \
    train.out_dir="$SWEEP_DIR/$name" train.tensorboard=false data.workers=2 train.val_every=225 \
    $overrides > "$SWEEP_DIR/$name.log" 2>&1 &
  pids+=($!)
  echo "started $name: $overrides"
done
for p in "${pids[@]}"; do wait "$p"; done
for f in "$SWEEP_DIR"/*/metrics.jsonl; do
  echo "$(basename "$(dirname "$f")") $(grep '"val"' "$f" | python3 -c 'import sys, json
print(" ".join("%d:%.4f" % (r["iteration"], r["val_mIoU"]) for r in map(json.loads, sys.stdin)))')"
done | tee "$SWEEP_DIR/summary.txt"
