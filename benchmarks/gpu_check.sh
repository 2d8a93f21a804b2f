#!/usr/bin/env bash
# The GPU check of issue 15, sized for one lent H100/H200 (about 8.5 minutes): first, alone on the GPU, `pspnet bench`
# on CUDA (reference vs fast vs the bf16 + channels_last eager anchor, side by side; the training levers one at a
# time; inference with CUDA graphs); then, side by side on the GPU, the CUDA tests, a 1-GPU torchrun `--fast` run
# with validation and a resume, and the CamVid recipe: two fp32 runs (TF32 off, seeds 0-1) and three with the fast
# training recipe (`train.fast`, seeds 0-2), judged against the spread of the fp32 GPU runs in BENCHMARKS.md. Every step has a deadline,
# so a slow step costs its own figures only. Then, on the trained fp32 CamVid model: `pspnet eval` on val in fp32
# and with --fast (mIoU and pixel agreement), and the bench on it; last, torch.profiler's account of the fast and
# the anchor training steps (benchmarks/profile_training.py). PARTS picks parts (default "bench runs trained",
# about 8.5 minutes; "levers" (CUDA graphs for the training step, ~2.5 minutes) and "profile" (~1.5
# minutes, its account is in BENCHMARKS.md) and "protocol" (~2 minutes: torch.profiler's account of the evaluation
# protocol with the fast recipe and the anchor, and of the protocol alone, benchmarks/profile_protocol.py; then
# benchmarks/fused_softmax.py, the softmax in the compiled graph against after it) and "reference" (~2.5 minutes:
# the official reference's training step timed after different first work, benchmarks/reference_speed.py) and
# "matmul" and "graphs" (~2 minutes each: batch 16 and the protocol with the upsampling as matmuls, or with CUDA
# graphs, in the fast column; matmul.txt, graphs.txt) and "tests" (~1.5 minutes: the CUDA tests alone, tests.txt)
# and "pyramid" (~3.5 minutes: the head's convolution with the pyramid at its bins in the fast column at batch 16
# and in the protocol, and in the fast training step against step 7; pyramid.txt)
# are extra). The figures go to $OUT
# (default runs/gpu_check): summary.txt, env.txt, bench.txt/.json, trained.txt, levers.txt, profile.txt,
# protocol.txt, fused_softmax.txt, reference_speed.txt and, at the end, logs.tar.gz (every run's log and metrics.jsonl, the CUDA tests' output); the training runs themselves go
# to $WORK (default /tmp/pspnet_gpu_check), since a device call returns at most 8 files.
#
# On the CPU machine first:  python benchmarks/camvid_jpeg.py data/camvid gpu_data/camvid   (27 MiB; carry gpu_data)
#                            DRY=1 bash benchmarks/gpu_check.sh       (the same steps at tiny sizes on the CPU)
# On the device:             OUT=$OUT bash benchmarks/gpu_check.sh    (device run: carry ["gpu_data"])
# CAMVID_RUNS (default "fp32_s0 fp32_s1 fast_s0 fast_s1 fast_s2") picks the CamVid runs of PARTS=runs.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu_check}
WORK=${WORK:-${TMPDIR:-/tmp}/pspnet_gpu_check}
DATA=${DATA:-gpu_data/camvid}
DRY=${DRY:-0}
BENCH_DEADLINE=${BENCH_DEADLINE:-360}  # seconds for the bench; the side-by-side part gets RUNS_DEADLINE
RUNS_DEADLINE=${RUNS_DEADLINE:-230}
PARTS=${PARTS:-bench runs trained}
has() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd) WORK=$(cd "$WORK" && pwd)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
step() { echo "== $1 ($(date +%T))" | tee -a "$SUMMARY"; }
pspnet() { "$PY" -m pspnet.cli.main "$@"; }

if [ "$DRY" = 1 ]; then
  DEV=cpu; export PSPNET_TEST_DEVICE=cpu
  BENCH=(--backbones resnet18 --sizes 65 --classes 5 --batch-size 4 --train-batch 2 --repeats 1 --warmup 1
         --workloads infer1 inferN eval train --anchor --train-ablation 1 3 --ablation --ablation-steps 7)
  MATMUL=(--backbones resnet18 --sizes 65 --classes 5 --batch-size 4 --repeats 1 --warmup 1 --workloads inferN eval
          --anchor --matmul-upsample)
  GRAPHS=(--backbones resnet18 --sizes 65 --classes 5 --batch-size 4 --repeats 1 --warmup 1 --workloads inferN eval
          --anchor --compile --compile-mode reduce-overhead)
  PYRAMID=(--backbones resnet18 --sizes 65 --classes 5 --batch-size 4 --train-batch 2 --repeats 1 --warmup 1
           --workloads inferN eval --pyramid-at-bins --train-ablation 15)
  LEVERS=(--backbones resnet18 --sizes 65 --classes 5 --train-batch 2 --repeats 1 --warmup 1 --train-ablation 7 9 11 13 14)
  TRAINED_BENCH=(--sizes 65 --batch-size 4 --repeats 1 --warmup 1)
  EVAL_LIMIT=(--limit 3)
  PROFILE=(--backbone resnet18 --size 65 --batch 2 --classes 5 --device cpu --top 5)
  PROTOCOL=(--backbone resnet18 --size 65 --batch 4 --classes 5 --device cpu --top 5)
  FUSED=(--backbone resnet18 --size 65 --batch 4 --classes 5 --device cpu --recipe fp32 --repeats 1)
  REFSPEED=(--device cpu --backbone resnet18 --size 65 --batch 2 --classes 5 --repeats 1 --top 3 --cases alone held-memory)
  SHORT=(train.iterations=4 train.val_every=2 train.batch_size=2 train.val_images=3 train.checkpoint_every=2)
  LONGER=(train.iterations=6)
  RECIPE=(train.iterations=4 train.val_every=4 train.batch_size=2 train.val_images=3)
else
  DEV=cuda
  # Ablation steps 1, 8, 9: the reference, the fast recipe, it with CUDA graphs. Training steps 1, 7: the reference
  # and the fast training recipe (the anchor is the main table's column); the other levers were measured in earlier
  # leases (cuDNN autotuning, inference step 10 and training step 11, and the upsampling as matmuls for inference,
  # step 11 and PARTS=matmul, in the third: neither adopted).
  BENCH=(--backbones resnet50 --sizes 473 --batch-size 16 --train-batch 16 --repeats 5 --warmup 2
         --workloads infer1 inferN eval train --train-ablation 7 --ablation --ablation-steps 8 9)
  # PARTS=matmul: the inference rows again with the upsampling as matmuls in the fast column (ablation step 11
  # measures it at batch 1 in the bench above).
  MATMUL=(--backbones resnet50 --sizes 473 --batch-size 16 --repeats 5 --warmup 2 --workloads inferN eval
          --matmul-upsample)
  # PARTS=graphs: batch 16 and the protocol with CUDA graphs in the fast column (at batch 1 they gave 2.09×).
  GRAPHS=(--backbones resnet50 --sizes 473 --batch-size 16 --repeats 5 --warmup 2 --workloads inferN eval
          --compile-mode reduce-overhead)
  # PARTS=pyramid: the fast column with the pyramid at its bins (batch 16, the protocol; the main bench's fast
  # column is the fast recipe without it); the fast training step (7) against it with the pyramid (16). At batch 1:
  # --ablation --ablation-steps 8 13.
  PYRAMID=(--backbones resnet50 --sizes 473 --batch-size 16 --train-batch 16 --repeats 5 --warmup 2
           --workloads inferN eval --pyramid-at-bins --train-ablation 7 16)
  # PARTS=levers: step 7 against itself with CUDA graphs (9), and with activation checkpointing, eager bf16 +
  # channels_last (13: its peak memory against the anchor's 18.8 GiB) and compiled (14: against step 7's 21.2 GiB;
  # training refuses compile + checkpointing until this measures it). Not step 10, max-autotune: on an H100 its
  # autotuning ran for over 5 minutes without finishing (BENCHMARKS.md); LEVERS_DEADLINE=600 LEVERS_STEPS="7 10".
  LEVERS=(--backbones resnet50 --sizes 473 --train-batch 16 --repeats 3 --warmup 2 --train-ablation ${LEVERS_STEPS:-7 9 13 14})
  TRAINED_BENCH=(--sizes 473 --batch-size 16 --repeats 5 --warmup 2)
  EVAL_LIMIT=()
  PROFILE=(--backbone resnet50 --size 473 --batch 16 --device cuda --top 25)
  PROTOCOL=(--backbone resnet50 --size 473 --batch 16 --device cuda --top 15)
  FUSED=(--backbone resnet50 --size 473 --batch 16 --device cuda --recipe fast --repeats 10)
  REFSPEED=(--device cuda --backbone resnet50 --size 473 --batch 16 --repeats 5 --top 6)
  SHORT=(train.iterations=60 train.val_every=30 train.checkpoint_every=30)
  LONGER=(train.iterations=90)
  RECIPE=()
fi
FAST=(train.precision=auto train.fast=true)  # on GPUs bf16, channels_last, compiled, upsampling as matmuls
COMMON=(--config configs/camvid.yaml --no-progress data.root="$DATA" train.tensorboard=false train.device=$DEV data.workers=3
        train.precision=fp32)  # the fast runs override it

step "environment"
{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")'; nproc; } > "$OUT/env.txt" 2>&1
tail -2 "$OUT/env.txt" | tee -a "$SUMMARY"

if has bench; then
step "bench, alone on the device: reference vs fast vs anchor, training levers, CUDA graphs"
timeout -k 10 "$BENCH_DEADLINE" "$PY" -m pspnet.cli.main bench --device $DEV "${BENCH[@]}" \
  --json "$OUT/bench.json" --overwrite > "$OUT/bench.txt" 2>&1
echo "bench: exit $?" | tee -a "$SUMMARY"
grep -E "×|img/s|GFLOP" "$OUT/bench.txt" | tail -40 >> "$SUMMARY"
fi

variant_bench() {  # name title args...: the bench's inference rows with one change in the fast column
  local name=$1; step "$2"; shift 2
  timeout -k 10 "${VARIANT_DEADLINE:-200}" "$PY" -m pspnet.cli.main bench --device $DEV "$@" > "$OUT/$name.txt" 2>&1
  echo "$name bench: exit $?" | tee -a "$SUMMARY"
  grep -E "×|img/s" "$OUT/$name.txt" | tail -12 >> "$SUMMARY"
}
has matmul && variant_bench matmul "bench: batch 16 and the protocol with the upsampling as matmuls in the fast column" \
  "${MATMUL[@]}"
has graphs && variant_bench graphs "bench: batch 16 and the protocol with CUDA graphs in the fast column" "${GRAPHS[@]}"
has pyramid && VARIANT_DEADLINE=${PYRAMID_DEADLINE:-300} variant_bench pyramid \
  "bench: the pyramid at its bins (fast column, training step)" "${PYRAMID[@]}"

tests() {
  "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py > "$WORK/tests.txt" 2>&1; echo "tests: $(tail -1 "$WORK/tests.txt")"
}
ddp() {  # with the fast recipe: DDP + SyncBatchNorm + compile + bf16 (fp32 under torchrun ran in earlier leases)
  rm -rf "$WORK/ddp"
  "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m pspnet.cli.main train "${COMMON[@]}" \
    train.out_dir="$WORK/ddp" "${SHORT[@]}" "${FAST[@]}" > "$WORK/ddp.txt" 2>&1
  local first=$?
  "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 -m pspnet.cli.main train "${COMMON[@]}" \
    train.out_dir="$WORK/ddp" "${SHORT[@]}" "${FAST[@]}" "${LONGER[@]}" --resume >> "$WORK/ddp.txt" 2>&1
  echo "torchrun: first part exit $first, resumed exit $?"
  grep -E "resum|val mIoU|trained|train.fast" "$WORK/ddp.txt"
}
camvid() {  # name seed [overrides...]
  local name=$1 seed=$2; shift 2
  local start; start=$(date +%s)
  rm -rf "$WORK/camvid_$name"
  NVIDIA_TF32_OVERRIDE=$([ "${name%%_*}" = fp32 ] && echo 0 || echo 1) pspnet train "${COMMON[@]}" \
    train.out_dir="$WORK/camvid_$name" train.seed="$seed" "${RECIPE[@]}" "$@" > "$WORK/camvid_$name.txt" 2>&1
  local rc=$?
  echo "camvid $name: exit $rc, $(( $(date +%s) - start )) s; $(grep -E 'trained' "$WORK/camvid_$name.txt")"
  "$PY" - "$WORK/camvid_$name/metrics.jsonl" <<'PYEOF' 2>/dev/null
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
print("  val mIoU by iteration:", " ".join("%d:%.4f" % (r["iteration"], r["val_mIoU"]) for r in records if r["kind"] == "val"))
waits = [r["data_wait"] for r in records if r["kind"] == "train" and "data_wait" in r]
rates = [r["images_per_s"] for r in records if r["kind"] == "train"]
if waits:
    print("  steps waiting for data: %.1f%% on average; img/s median %.1f" % (100 * sum(waits) / len(waits), sorted(rates)[len(rates) // 2]))
PYEOF
}
export -f tests ddp camvid pspnet
export PY OUT WORK
run_part() { timeout -k 10 "$RUNS_DEADLINE" bash -c "$1" > "$WORK/part_$2.txt" 2>&1; echo "($2: exit $?)" >> "$WORK/part_$2.txt"; }
# Bash arrays do not cross `export`: hand the parts their arguments through declare -p.
ARGS="$(declare -p COMMON SHORT LONGER RECIPE FAST)"
if has runs; then
step "side by side: CUDA tests, torchrun with a resume, CamVid fp32 (seeds 0-1) and fast (seeds 0-2)"
run_part "$ARGS; tests" tests &
run_part "$ARGS; ddp" ddp &
for name in ${CAMVID_RUNS:-fp32_s0 fp32_s1 fast_s0 fast_s1 fast_s2}; do  # CAMVID_RUNS: a shorter list for a short lease
  seed=${name#*_s}; extra=""; [ "${name%%_*}" = fast ] && extra=' "${FAST[@]}"'
  run_part "$ARGS; camvid $name $seed$extra" "$name" &
done
wait
cat "$WORK"/part_*.txt | tee -a "$SUMMARY"
fi

if has tests && ! has runs; then  # PARTS=tests: the CUDA tests alone (they are also a part of "runs")
step "the CUDA tests (tests/test_cuda.py)"
tests | tee -a "$SUMMARY"
cp "$WORK/tests.txt" "$OUT/tests.txt"
fi

if has trained; then
step "the trained fp32 CamVid model: eval in fp32 and --fast, the bench on it"
CKPT=$WORK/camvid_fp32_s0/best.safetensors
[ -f "$CKPT" ] || bash -c "$ARGS; camvid fp32_s0 0" | tee -a "$SUMMARY"
{
  for name in fp32 fast; do
    extra=(); [ $name = fast ] && extra=(--fast)
    rm -rf "$WORK/eval_$name"
    sed "s|^  root: .*|  root: $DATA|" configs/camvid.yaml > "$WORK/camvid.yaml"
    timeout -k 10 150 "$PY" -m pspnet.cli.main eval "$CKPT" --config "$WORK/camvid.yaml" --quiet "${EVAL_LIMIT[@]}" \
      --out "$WORK/eval_$name" --save-predictions "${extra[@]}" 2>&1 | tail -3
  done
  "$PY" - "$WORK/eval_fp32" "$WORK/eval_fast" <<'PYEOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
a, b = (Path(p) for p in sys.argv[1:])
same = total = 0
for f in sorted(a.glob("*.png")):
    x, y = np.asarray(Image.open(f)), np.asarray(Image.open(b / f.name))
    same += int((x == y).sum()); total += x.size
print(f"pixel agreement, fp32 vs --fast predictions: {same}/{total} = {100 * same / max(total, 1):.3f}%")
PYEOF
  timeout -k 10 200 "$PY" -m pspnet.cli.main bench --device $DEV --checkpoint "$CKPT" "${TRAINED_BENCH[@]}" \
    --workloads infer1 inferN eval 2>&1 | grep -vE "^  .*(preparing|in turns)"
} > "$OUT/trained.txt" 2>&1
grep -E "mIoU|agreement|×" "$OUT/trained.txt" | tee -a "$SUMMARY"
fi

if has levers; then
step "training levers on the fastest step: CUDA graphs"
timeout -k 10 "${LEVERS_DEADLINE:-300}" "$PY" -m pspnet.cli.main bench --device $DEV "${LEVERS[@]}" --workloads \
  --no-anchor > "$OUT/levers.txt" 2>&1
echo "levers: exit $?" | tee -a "$SUMMARY"
grep -E "img/s|×" "$OUT/levers.txt" | tail -8 >> "$SUMMARY"
fi

profile_part() {  # name script title args...: the script for the fast recipe and the anchor, into $OUT/name.txt
  local name=$1 script=$2; step "$3"; shift 3
  for recipe in fast anchor; do
    timeout -k 10 150 "$PY" "benchmarks/$script" --recipe $recipe "$@" 2>&1 | grep -v USDT
  done > "$OUT/$name.txt"
  grep -E "per (step|call)|^  .*%  [a-z]" "$OUT/$name.txt" | tee -a "$SUMMARY"
}
has profile && profile_part profile profile_training.py "profile: the fast and the anchor training steps" \
  "${PROFILE[@]}"
if has protocol; then
profile_part protocol profile_protocol.py \
  "profile: the evaluation protocol with the fast recipe and the anchor, and the protocol alone" "${PROTOCOL[@]}"
step "the protocol's softmax and flip pairs in the compiled graph against after it (benchmarks/fused_softmax.py)"
timeout -k 10 150 "$PY" benchmarks/fused_softmax.py "${FUSED[@]}" 2>&1 | grep -v USDT > "$OUT/fused_softmax.txt"
tail -4 "$OUT/fused_softmax.txt" | tee -a "$SUMMARY"
fi
if has reference; then
step "the reference's training step after different first work, each in a fresh process (benchmarks/reference_speed.py)"
timeout -k 10 "${REFERENCE_DEADLINE:-240}" "$PY" benchmarks/reference_speed.py "${REFSPEED[@]}" 2>&1 | grep -v USDT \
  > "$OUT/reference_speed.txt"
grep -E "img/s|^  \(" "$OUT/reference_speed.txt" | tee -a "$SUMMARY"
fi
(cd "$WORK" && find . -name '*.txt' -o -name metrics.jsonl | tar -czf "$OUT/logs.tar.gz" -T -)
step "done"
