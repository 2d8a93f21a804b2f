"""`pspnet models [--json] [FILTER]`: the named published weights that `pspnet.load(NAME)` and every command accept."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from pspnet import weights


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("filter", nargs="?", default="", help="only names containing this text (e.g. ade20k, r101)")
    p.add_argument("--json", action="store_true", help="every field of every entry as JSON")


def run(args: argparse.Namespace) -> int:
    chosen = [w for w in weights.list_models() if args.filter.lower() in w.name.lower()]
    if args.json:
        print(json.dumps([asdict(w) for w in chosen], indent=1, ensure_ascii=False))
        return 0 if chosen else 1  # like grep: a script tells "no match" by the exit status, the output stays JSON
    if not chosen:
        close = weights.similar_names(args.filter)[0]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        print(f"pspnet models: no published model's name contains {args.filter!r} (`pspnet models` lists all "
              f"{len(weights.list_models())}){hint}", file=sys.stderr)
        return 1
    width = max(len(w.name) for w in chosen)
    print(f"{'name':<{width}}  {'dataset':<22}  {'mIoU':>6}  {'ms':>6}  {'--preset':<8}  backbone")
    for w in chosen:
        ss = f"{w.mIoU:6.2f}" if w.mIoU is not None else f"{'-':>6}"
        ms = f"{w.mIoU_ms_flip:6.2f}" if w.mIoU_ms_flip is not None else f"{'-':>6}"
        how = "" if w.download == "direct" else "  (download page: see `pspnet models --json`)"
        if w.train.get("evaluated_on") == "testset":  # not comparable with a score on val
            how += "  (scores on the test set)"
        print(f"{w.name:<{width}}  {w.dataset:<22}  {ss}  {ms}  {w.test_preset or '-':<8}  {w.backbone} ({w.stem} stem)"
              f"{how}")
    print(f"{len(chosen)} models; source and licence: `pspnet models --json`; use a name wherever a checkpoint goes; "
          "`pspnet eval NAME` uses the --preset shown (the test behind the published mIoU)")
    return 0
