"""`pspnet bench`: speed and memory of the reference execution and the fast recipe, side by side in one run."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from pspnet.bench.report import format_markdown, format_text, machine, recipes_line
from pspnet.bench.suite import WORKLOADS, BenchConfig, BenchResult, TrainVariant, run_bench
from pspnet.cli.model_folder import use_model_folder
from pspnet.cli.recipe_options import add_recipe_arguments, recipe_from_args
from pspnet.device import resolve_device
from pspnet.engine.recipe import OFFICIAL, Recipe
from pspnet.errors import PSPNetError
from pspnet.files import check_output_file
from pspnet.model.resnet import DEPTHS

T = TypeVar("T")
MIN_AGREEMENT = 0.995  # argmax agreement the fast recipe must keep (issue 6)

ABLATION: tuple[tuple[str, Recipe], ...] = (
    ("reference", OFFICIAL),
    ("+ BN folded", Recipe(fold_bn=True)),
    ("+ channels_last", Recipe(fold_bn=True, channels_last=True)),
    ("BN folded + compiled (NCHW)", Recipe(fold_bn=True, compile=True)),
    ("BN folded + compiled + channels_last", Recipe(fold_bn=True, channels_last=True, compile=True)),
    ("bf16 autocast", Recipe(precision="bf16")),
    ("bf16 + BN folded + channels_last", Recipe(fold_bn=True, channels_last=True, precision="bf16")),
)
INT8_STEP = ("int8 PTQ (X86InductorQuantizer) + compiled", Recipe(compile=True, int8=True))
CUDA_STEPS: tuple[tuple[str, Recipe], ...] = (
    ("bf16 + BN folded + channels_last + compiled (the fast recipe)",
     Recipe(fold_bn=True, channels_last=True, precision="bf16", compile=True)),
    ("+ CUDA graphs (reduce-overhead)",
     Recipe(fold_bn=True, channels_last=True, precision="bf16", compile=True, compile_mode="reduce-overhead")),
    ("the fast recipe + cuDNN autotuning",
     Recipe(fold_bn=True, channels_last=True, precision="bf16", compile=True, cudnn_benchmark=True)),
    ("the fast recipe + upsample as matmuls",
     Recipe(fold_bn=True, channels_last=True, precision="bf16", compile=True, matmul_upsample=True)),
)
# After the device's steps, so that the numbers of the steps above stay what BENCHMARKS.md's commands name.
PYRAMID_STEPS: tuple[tuple[str, Recipe], ...] = (
    ("BN folded + pyramid at its bins", Recipe(fold_bn=True, pyramid_at_bins=True)),
)
CUDA_PYRAMID_STEPS: tuple[tuple[str, Recipe], ...] = (
    ("the fast recipe + pyramid at its bins",
     Recipe(fold_bn=True, channels_last=True, precision="bf16", compile=True, pyramid_at_bins=True)),
)
_BF16_CL = Recipe(precision="bf16", channels_last=True)
_FASTEST = replace(_BF16_CL, compile=True, matmul_upsample=True)  # the fastest training step measured on an H100
TRAIN_ABLATION: tuple[TrainVariant, ...] = (
    TrainVariant("reference", OFFICIAL),
    TrainVariant("bf16 autocast", Recipe(precision="bf16")),
    TrainVariant("+ channels_last", _BF16_CL),
    TrainVariant("+ compiled (model)", replace(_BF16_CL, compile=True)),
    TrainVariant("+ loss compiled", replace(_BF16_CL, compile=True), compile_loss=True),
    TrainVariant("+ fused SGD", replace(_BF16_CL, compile=True), compile_loss=True, fused_sgd=True),
    TrainVariant("+ upsample as matmuls", _FASTEST, compile_loss=True, fused_sgd=True),
    TrainVariant("bf16 + channels_last + upsample as matmuls, eager", replace(_BF16_CL, matmul_upsample=True)),
    # Steps 9 and 10 build on step 7. Step 10's autotuning ran over 5 minutes on an H100 without finishing:
    TrainVariant("+ CUDA graphs (reduce-overhead)", replace(_FASTEST, compile_mode="reduce-overhead"),
                 compile_loss=True, fused_sgd=True),
    TrainVariant("+ max-autotune (no CUDA graphs)", replace(_FASTEST, compile_mode="max-autotune-no-cudagraphs"),
                 compile_loss=True, fused_sgd=True),
    TrainVariant("step 7 + cuDNN autotuning", replace(_FASTEST, cudnn_benchmark=True), compile_loss=True,
                 fused_sgd=True),
    # Memory: the backbone's activations recomputed in the backward pass (eager only), against steps 1 and 3.
    TrainVariant("reference + activation checkpointing", replace(OFFICIAL, activation_checkpointing=True)),
    TrainVariant("bf16 + channels_last + activation checkpointing", replace(_BF16_CL, activation_checkpointing=True)),
    TrainVariant("step 7 + activation checkpointing", replace(_FASTEST, activation_checkpointing=True),
                 compile_loss=True, fused_sgd=True),
    # The head's convolution taking the pyramid at its bins (pspnet.model.pyramid_conv), against steps 1 and 7.
    TrainVariant("reference + pyramid at its bins", replace(OFFICIAL, pyramid_at_bins=True)),
    TrainVariant("step 7 + pyramid at its bins", replace(_FASTEST, pyramid_at_bins=True), compile_loss=True,
                 fused_sgd=True),
)
ANCHOR = _BF16_CL  # on GPUs: the best execution that needs no compiler (issue 15's yardstick)


def add_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("what to measure")
    m.add_argument("--backbones", nargs="+", default=["resnet50", "resnet101"], metavar="NAME",
                   help="backbones of randomly initialised PSPNets (default resnet50 resnet101)")
    m.add_argument("--sizes", nargs="+", type=int, default=[473, 713], metavar="N",
                   help="square input sizes (default 473 713; smaller ones keep a CPU run short)")
    m.add_argument("--classes", type=int, default=150, help="classes of the random models (default 150, ADE20K)")
    m.add_argument("--checkpoint", type=Path,
                   help="measure this trained model (or a training run's folder: its best model) instead of random "
                        "ones")
    m.add_argument("--workloads", nargs="*", choices=WORKLOADS, default=list(WORKLOADS),
                   help="infer1: latency at batch 1; inferN: throughput at --batch-size; eval: the test protocol "
                        "(sliding window + flip); train: SGD steps (default: all; give none to run only --whole or "
                        "--ablation)")
    m.add_argument("--batch-size", type=int, default=8, help="inference and protocol batch (default 8)")
    m.add_argument("--train-batch", type=int, default=2, help="images per training step (default 2)")
    m.add_argument("--repeats", type=int, default=3, help="timed repetitions per figure (default 3)")
    m.add_argument("--warmup", type=int, default=1, help="untimed first calls (compilation happens there; default 1)")
    m.add_argument("--whole", type=int, nargs=2, metavar=("H", "W"),
                   help="also segment one H×W image in one piece per recipe and report its peak memory")
    m.add_argument("--whole-classes", type=int, default=19, help="classes of the whole-image model (default 19)")
    m.add_argument("--ablation", action="store_true",
                   help="also time inference at batch 1 for each optimisation separately")
    m.add_argument("--int8", action="store_true",
                   help="add int8 post-training quantisation to the ablation (needs torchao)")
    m.add_argument("--ablation-steps", nargs="+", type=int, metavar="I",
                   help="run only these steps of the ablation (1 = reference, which the others are compared to)")
    m.add_argument("--train-ablation", nargs="*", type=int, metavar="I",
                   help="also time the training step for each lever separately (reference, bf16, channels_last, "
                        "compiled model, compiled loss, fused SGD, upsample as matmuls, the last eager; 9, 10: step 7 "
                        "with CUDA graphs, with max-autotune; 11: with cuDNN autotuning; 12-14: activation "
                        "checkpointing; 15, 16: steps 1 and 7 with the pyramid at its bins); numbers pick steps "
                        "(1 = reference, always run)")
    m.add_argument("--anchor", action=argparse.BooleanOptionalAction, default=None,
                   help="a third column: bf16 + channels_last eager, timed in the same turns (default: on for CUDA)")
    m.add_argument("--smoke", action="store_true",
                   help="a few seconds: tiny model and sizes, no compilation; checks that both recipes run and agree")
    add_recipe_arguments(p, engines=False)
    o = p.add_argument_group("output")
    o.add_argument("--markdown", type=Path, metavar="FILE", help="write the command, machine and tables as Markdown")
    o.add_argument("--json", type=Path, metavar="FILE", help="write every measurement as JSON")
    o.add_argument("--overwrite", action="store_true", help="replace --markdown / --json files that exist")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of both engines timed, PyTorch and OpenVINO (default: each engine's choice, or "
                        "OMP_NUM_THREADS where set)")
    p.add_argument("--backend", choices=["torch", "openvino"], default="torch",
                   help="what runs the 'fast' column: PyTorch by the fast recipe (default) or OpenVINO on the CPU "
                        "(f32; bf16 with --precision bf16); the reference is eager PyTorch fp32 either way")
    p.add_argument("--openvino-ir", type=Path, metavar="XML",
                   help="with --backend openvino and --checkpoint: run this IR of the checkpoint in the fast column "
                        "(e.g. the int8 model.xml of `pspnet quantize`)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    device = resolve_device(args.device)
    args.fast = True  # the bench's "fast" column is the --fast recipe, with the options given applied
    fast = recipe_from_args(args, device)
    fast_train = recipe_from_args(args, device, training=True, warn=False)  # the same precision: said once
    for name in ("batch_size", "train_batch", "repeats", "classes", "whole_classes"):
        if getattr(args, name) < 1:
            raise PSPNetError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected at least 1")
    if args.warmup < 0:
        raise PSPNetError(f"--warmup {args.warmup}: expected 0 or more")
    if min(args.sizes) < 1:
        raise PSPNetError(f"--sizes {' '.join(map(str, args.sizes))}: expected positive sizes")
    if args.whole is not None and min(args.whole) < 1:
        raise PSPNetError(f"--whole {args.whole[0]} {args.whole[1]}: expected a positive height and width")
    if unknown := [b for b in args.backbones if b not in DEPTHS]:  # said before the machine is measured
        raise PSPNetError(f"--backbones {unknown[0]}: unknown; expected some of {', '.join(DEPTHS)}")
    if args.smoke:
        # A tiny model, sizes and classes; no compilation (it alone would take a minute).
        return BenchConfig(device=device, fast=replace(fast, compile=False), fast_train=replace(fast_train,
                           compile=False), backbones=("resnet18",), sizes=(65,), num_classes=5, batch_size=4,
                           train_batch=2, repeats=1, warmup=1, whole_size=(96, 160), whole_classes=5,
                           model_settings={"output_stride": 16}, seed=0, roofline=False,
                           backend=args.backend)
    return BenchConfig(
        device=device, fast=fast, fast_train=fast_train, backbones=tuple(args.backbones), sizes=tuple(args.sizes),
        num_classes=args.classes, checkpoint=args.checkpoint, workloads=tuple(args.workloads),
        batch_size=args.batch_size, train_batch=args.train_batch, repeats=args.repeats, warmup=args.warmup,
        whole_size=tuple(args.whole) if args.whole else None, whole_classes=args.whole_classes,
        ablation=ablation_steps(args, device), backend=args.backend, train_ablation=train_ablation_steps(args),
        openvino_ir=openvino_ir(args),
        anchor=ANCHOR if (device.type == "cuda" if args.anchor is None else args.anchor) else None,
    )


def openvino_ir(args: argparse.Namespace) -> Path | None:
    if args.openvino_ir is None:
        return None
    if args.backend != "openvino" or args.checkpoint is None:
        raise PSPNetError("--openvino-ir needs --backend openvino and the --checkpoint it was made from")
    if not args.openvino_ir.is_file():
        raise PSPNetError(f"--openvino-ir {args.openvino_ir}: no such file")
    return args.openvino_ir


def ablation_steps(args: argparse.Namespace, device: torch.device) -> tuple[tuple[str, Recipe], ...]:
    if not (args.ablation or args.int8):
        return ()
    full = ABLATION + (CUDA_STEPS if device.type == "cuda" else ()) + PYRAMID_STEPS + (
        CUDA_PYRAMID_STEPS if device.type == "cuda" else ())
    steps = (full if args.ablation else ABLATION[:1]) + ((INT8_STEP,) if args.int8 else ())
    return chosen_steps(steps, args.ablation_steps, "--ablation-steps")


def train_ablation_steps(args: argparse.Namespace) -> tuple[TrainVariant, ...]:
    if args.train_ablation is None:
        return ()
    return chosen_steps(TRAIN_ABLATION, args.train_ablation, "--train-ablation")


def chosen_steps(steps: tuple[T, ...], numbers: list[int] | None, option: str) -> tuple[T, ...]:
    """The steps numbered (from 1) in `numbers`, the first always among them; all of them for none."""
    if not numbers:
        return steps
    chosen = sorted(set(numbers) | {1})
    if min(chosen) < 1 or max(chosen) > len(steps):
        raise PSPNetError(f"{option} {min(chosen) if min(chosen) < 1 else max(chosen)}: the steps are numbered "
                          f"1 to {len(steps)}")
    return tuple(steps[i - 1] for i in chosen)


def disagreements(result: BenchResult, trained: bool) -> tuple[list[str], list[str]]:
    """(failures, notes): inference rows where the fast recipe changes more than 0.5% of the argmax (training rows
    differ by their dropout masks once compiled, so they are reported, not checked). A random model's logits are
    near-tied almost everywhere, so a reduced-precision recipe's rounding flips a few percent of them whatever its
    accuracy: without a trained model (`trained`), its rows are notes; fp32 recipes are checked either way."""
    failures, notes = [], []
    for r in result.rows:
        if r.agreement is None or r.workload.startswith("training") or r.agreement.argmax >= MIN_AGREEMENT:
            continue
        line = f"{r.model} {r.size} {r.workload}: argmax agreement {100 * r.agreement.argmax:.2f}%"
        (failures if trained or r.fast_precision == "fp32" else notes).append(line)
    return failures, notes


def allow_recompiles(dynamo_config: Any, limit: int) -> None:
    """Let dynamo compile a function `limit` times: `recompile_limit`, or `cache_size_limit` in older torch (2.4.1
    has only that name, and setting the new one raised AttributeError)."""
    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    setattr(dynamo_config, name, limit)


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise PSPNetError(f"--threads {args.threads}: expected at least 1")
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what the other engines follow (`engine_threads`)
    from torch import _dynamo  # 1 s to import: only when the bench runs

    # Every recipe and workload shape compiles its own graph of the same forward code: allow them all.
    allow_recompiles(_dynamo.config, 64)
    if args.checkpoint is not None:
        use_model_folder(args)
    if args.int8:
        from pspnet.export.quantize import require_torchao

        require_torchao()
    config = config_from_args(args)
    for option, path in (("--markdown", args.markdown), ("--json", args.json)):
        if path is not None:
            check_output_file(path, option, args.overwrite)
    recipes = recipes_line(config.fast, config.fast_train, config.anchor)
    if config.backend == "openvino":
        recipes += (f"; fast (inference) runs {config.openvino_ir} on OpenVINO" if config.openvino_ir else
                    f"; fast (inference) runs on OpenVINO {'bf16' if config.fast.precision == 'bf16' else 'f32'}")
    print(f"{machine(config.device)}\n{recipes}", file=sys.stderr)
    result = run_bench(config, progress=lambda message: print(f"  {message}", file=sys.stderr, flush=True))
    print(format_text(result, recipes))
    command = "pspnet bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else "pspnet bench"
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_markdown(result, command, config.device, recipes))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"command": command, "machine": machine(config.device), "fast": asdict(config.fast),
               "fast_train": asdict(config.fast_train), "rows": [asdict(r) for r in result.rows],
               "ablation": [asdict(r) for r in result.ablation],
               "train_ablation": [asdict(r) for r in result.train_ablation], "matmul_gflops": result.matmul,
               "forward_gflop": result.gflop}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    bad, noted = disagreements(result, trained=config.checkpoint is not None)
    for line in bad:
        print(f"pspnet bench: the fast recipe changes the answer: {line}", file=sys.stderr)
    for line in noted:
        print(f"pspnet bench: note: {line} on random weights, whose near-tied logits the reduced precision flips; "
              "the agreement that counts is a trained model's: pspnet bench --checkpoint CKPT", file=sys.stderr)
    return 1 if bad else 0
