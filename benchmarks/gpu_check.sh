#!/usr/bin/env bash
# The GPU check of issue 15, sized for one lent H100/H200 (under 8 minutes): the CUDA tests, `pspnet bench` on CUDA
# (reference vs fast, side by side), a 1-GPU torchrun training run with validation and a resume, and the CamVid recipe
# in fp32 (TF32 off) and with the fast training recipe. Every figure goes to $OUT (default runs/gpu_check).
#
# On the CPU machine first:  python benchmarks/camvid_jpeg.py data/camvid gpu_data/camvid   (27 MiB; carry gpu_data)
#                            DRY=1 bash benchmarks/gpu_check.sh       (the same steps at tiny sizes on the CPU)
# On the device:             OUT=$OUT bash benchmarks/gpu_check.sh    (device run: carry ["gpu_data"])
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu_check}
DATA=${DATA:-gpu_data/camvid}
DRY=${DRY:-0}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
step() { echo "== $1 ($(date +%T))" | tee -a "$SUMMARY"; }
pspnet() { "$PY" -m pspnet.cli.main "$@"; }

if [ "$DRY" = 1 ]; then
  DEV=cpu; export PSPNET_TEST_DEVICE=cpu
  BENCH=(--backbones resnet18 --sizes 65 --batch-size 4 --train-batch 2 --repeats 1 --warmup 1 --workloads infer1 inferN eval train)
  ABLATION=(--backbones resnet18 --sizes 65 --repeats 1 --workloads --ablation --ablation-steps 1 2 3)
  SHORT=(train.iterations=4 train.val_every=2 train.batch_size=2 train.val_images=3 train.checkpoint_every=2)
  LONGER=(train.iterations=6)
  RECIPE=(train.iterations=4 train.val_every=4 train.batch_size=2 train.val_images=3)
  FAST=(train.channels_last=true)  # bf16 and compile are CUDA levers: not rehearsed at CPU speed
else
  DEV=cuda
  BENCH=(--backbones resnet50 --sizes 473 --batch-size 16 --train-batch 16 --repeats 5 --warmup 2 --workloads infer1 inferN eval train)
  ABLATION=(--backbones resnet50 --sizes 473 --repeats 5 --workloads --ablation)
  SHORT=(train.iterations=60 train.val_every=30 train.checkpoint_every=30)
  LONGER=(train.iterations=90)
  RECIPE=()
  FAST=(train.precision=bf16 train.channels_last=true train.compile=true)
fi
COMMON=(--config configs/camvid.yaml --no-progress data.root="$DATA" train.tensorboard=false train.device=$DEV data.workers=4)

step "environment"
{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'; } > "$OUT/env.txt" 2>&1
tail -1 "$OUT/env.txt" | tee -a "$SUMMARY"

step "CUDA tests (pytest -m cuda)"
"$PY" -m pytest -q -m cuda tests > "$OUT/tests.txt" 2>&1; tail -1 "$OUT/tests.txt" | tee -a "$SUMMARY"

step "bench: reference vs fast"
pspnet bench --device $DEV "${BENCH[@]}" --markdown "$OUT/bench.md" --json "$OUT/bench.json" --overwrite > "$OUT/bench.txt" 2>&1
tail -8 "$OUT/bench.txt" | tee -a "$SUMMARY"

step "bench: one change at a time"
pspnet bench --device $DEV "${ABLATION[@]}" --markdown "$OUT/ablation.md" --overwrite > "$OUT/ablation.txt" 2>&1
tail -10 "$OUT/ablation.txt" | tee -a "$SUMMARY"

step "torchrun, 1 process: training with validation, then a resume"
rm -rf "$OUT/ddp"
"$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m pspnet.cli.main train "${COMMON[@]}" \
  train.out_dir="$OUT/ddp" "${SHORT[@]}" > "$OUT/ddp.txt" 2>&1
echo "first part: exit $?" | tee -a "$SUMMARY"
"$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m pspnet.cli.main train "${COMMON[@]}" \
  train.out_dir="$OUT/ddp" "${SHORT[@]}" "${LONGER[@]}" --resume >> "$OUT/ddp.txt" 2>&1
echo "resumed: exit $?" | tee -a "$SUMMARY"
grep -E "resumed|val mIoU|trained" "$OUT/ddp.txt" | tee -a "$SUMMARY"

step "CamVid recipe: fp32 (TF32 off) and the fast training recipe, one run each"
for name in fp32 fast; do
  extra=(); [ $name = fast ] && extra=("${FAST[@]}")
  rm -rf "$OUT/camvid_$name"
  start=$(date +%s)
  NVIDIA_TF32_OVERRIDE=$([ $name = fp32 ] && echo 0 || echo 1) pspnet train "${COMMON[@]}" \
    train.out_dir="$OUT/camvid_$name" "${RECIPE[@]}" "${extra[@]}" > "$OUT/camvid_$name.txt" 2>&1
  echo "$name: exit $?, $(( $(date +%s) - start )) s; $(grep -E 'trained' "$OUT/camvid_$name.txt")" | tee -a "$SUMMARY"
  grep '"val"' "$OUT/camvid_$name/metrics.jsonl" 2>/dev/null | "$PY" -c 'import sys, json
print(" ".join("%d:%.4f" % (r["iteration"], r["val_mIoU"]) for r in map(json.loads, sys.stdin)))' | tee -a "$SUMMARY"
done
step "done"
