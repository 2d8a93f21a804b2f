#!/usr/bin/env bash
# Fine-tuning a trained model on a new task (train.init, data.label_values): CamVid relabelled into 3 classes
# (road, car, everything else: label_values merges the other 9), trained for the same short schedule three ways —
# from random initialisation (the CamVid recipe's model), from the 11-class CamVid model (the architecture and
# everything but the classifiers taken from it) at the recipe's lr 0.01, and the same at lr 0.001. Prints the val
# mIoU of each and the wall time.
#   INIT=runs/camvid/best.safetensors bash benchmarks/finetune_camvid.sh     (after scripts/camvid.sh)
#   DRY=1 INIT=... bash benchmarks/finetune_camvid.sh                          (4 iterations each, 3 val images)
set -euo pipefail
cd "$(dirname "$0")/.."
INIT=${INIT:-runs/camvid/best.safetensors}
DATA=${DATA:-data/camvid}
OUT=${OUT:-runs/finetune_camvid}
ITERATIONS=${ITERATIONS:-100}
DRY=${DRY:-0}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
[ "$DRY" = 1 ] && SHORT=(train.iterations=4 train.batch_size=2 train.val_images=3) || SHORT=(train.iterations="$ITERATIONS")

cat > "$OUT/task.yaml" <<YAML
# CamVid's prepared lists with 3 classes: Road (3), Car (8) and the other 9 merged; void (255) ignored
data:
  dataset: lists
  root: $DATA
  train_list: train.txt
  val_list: val.txt
  class_names: [other, road, car]
  label_values: [[0, 1, 2, 4, 5, 6, 7, 9, 10], 3, 8]
  ignore_values: [255]
  crop_size: [180, 240]
  scale_range: [0.35, 1.0]
  rotate_p: 0.0
  blur: 0.0
  workers: 2
train:
  batch_size: 8
  lr: 0.01
  checkpoint_every: 1000
  log_every: 10
  tensorboard: false
val:
  base_size: 240
  crop_size: [180, 240]
  flip: true
  mode: whole
YAML

say "== $(date -u +%FT%TZ) $(lscpu | grep 'Model name' | sed 's/ \+/ /g')"
say "flags: $(grep -o 'avx512_bf16\|avx512_vnni\|amx[a-z_]*\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
say "init: $INIT; $ITERATIONS iterations of batch 8 each (DRY=$DRY)"
run() {  # name, then overrides
  local name=$1; shift
  local start=$SECONDS
  pspnet train --config "$OUT/task.yaml" train.out_dir="$OUT/$name" "${SHORT[@]}" "$@" --no-progress --overwrite \
    > "$OUT/$name.log" 2>&1
  say "$name: $(python - "$OUT/$name/metrics.jsonl" <<'PY'
import json, sys
val = [r for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "val"][-1]
print(f"val mIoU {val['val_mIoU']:.4f}, mAcc {val['val_mAcc']:.4f}, allAcc {val['val_allAcc']:.4f} "
      f"({val['images']} images)", end="")
PY
), $((SECONDS - start)) s"
}
run scratch model.backbone=resnet18 model.output_stride=16
run init train.init="$INIT"
run init_lr0.001 train.init="$INIT" train.lr=0.001
say "logs and runs in $OUT"
