#!/usr/bin/env bash
# The main job: prepare CamVid, train PSPNet on it, evaluate the best checkpoint, predict a few images.
# CAMVID_SOURCE: a local SegNet-layout CamVid/ folder or a mirror URL (default: ../shared/data/camvid when present,
# else the upstream download). Extra arguments are passed to `pspnet train` as overrides (e.g. train.epochs=2).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${CAMVID_ROOT:-data/camvid}
OUT=${CAMVID_OUT:-runs/camvid}
SOURCE=${CAMVID_SOURCE:-}
if [ -z "$SOURCE" ] && [ -d ../shared/data/camvid ]; then SOURCE=../shared/data/camvid; fi

pspnet data prepare camvid --root "$ROOT" ${SOURCE:+--source "$SOURCE"}
# A rerun continues an interrupted run (and skips a finished one); the eval and predict outputs are this job's own.
RESUME=""
if compgen -G "$OUT/checkpoints/iter_*.pt" > /dev/null; then RESUME=--resume; fi
pspnet train --config configs/camvid.yaml data.root="$ROOT" train.out_dir="$OUT" $RESUME "$@"
MODEL="$OUT/best.safetensors"
[ -f "$MODEL" ] || MODEL="$OUT/final.safetensors"  # no validation ran (train.val_every=-1)
# eval and predict take the test protocol the model was validated with (configs/camvid.yaml's val:) from the model
pspnet eval "$MODEL" --list "$ROOT/val.txt" --root "$ROOT" --json "$OUT/eval.json" --report "$OUT/report" --overwrite
pspnet predict "$MODEL" "$ROOT"/images/val/0016E5_07959.png "$ROOT"/images/val/0016E5_08*1.png \
  --out "$OUT/predictions" --overwrite
echo "main job done: model $MODEL, scores $OUT/eval.json, report $OUT/report/index.html"
