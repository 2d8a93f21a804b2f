"""Build src/pspnet/catalogue.json, the named weights `pspnet.load(NAME)` knows, from the sources' own metadata.

The authors' Caffe releases come from hszhao/PSPNet's README (download pages and stated scores).
mmsegmentation's PSPNet model zoo comes from its `configs/pspnet/metafile.yaml` (shipped in the mmsegmentation wheel
as `mmseg/.mim/configs/pspnet/metafile.yaml`); the ImageNet ResNetV1c backbones its PSPNets start from
(`open-mmlab://resnet{18,50,101}_v1c`) from mmengine's `mmengine/hub/openmmlab.json`. Nothing here is typed by
hand: every URL, score and setting is the sources'; the file hash is the sha256 prefix in the weight file's name
(the torch hub convention); entries whose architecture `pspnet convert --from mmseg` does not read (output stride
32) or whose URL is not on OpenMMLab's download host are left out and listed.

    pip download --no-deps mmsegmentation==1.2.2 && unzip -o mmsegmentation-1.2.2-py3-none-any.whl \\
        'mmseg/.mim/configs/pspnet/metafile.yaml'
    pip download --no-deps mmengine==0.10.7 && unzip -o mmengine-0.10.7-py3-none-any.whl 'mmengine/hub/openmmlab.json'
    python scripts/build_catalogue.py mmseg/.mim/configs/pspnet/metafile.yaml --source "mmsegmentation 1.2.2" \
        --hub mmengine/hub/openmmlab.json --hub-source "mmengine 0.10.7" --authors-readme PSPNet/README.md
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

HOST = "https://download.openmmlab.com/mmsegmentation/"
ARCHITECTURES = {"R-18-D8": ("resnet18", "deep 32-32-64"), "R-50-D8": ("resnet50", "deep 32-32-64"),
                 "R-101-D8": ("resnet101", "deep 32-32-64"), "R-18b-D8": ("resnet18", "7×7"),
                 "R-50b-D8": ("resnet50", "7×7"), "R-101b-D8": ("resnet101", "7×7")}
OUT = Path(__file__).resolve().parents[1] / "src" / "pspnet" / "catalogue.json"


def entries(metafile: Path, source: str) -> tuple[list[dict], list[str]]:
    data = yaml.safe_load(metafile.read_text())
    license_ = data["Collections"][0]["License"]
    kept, left_out = [], []
    for m in data["Models"]:
        arch = m["Metadata"]["Architecture"][0]
        url = m["Weights"]
        digest = re.search(r"-([0-9a-f]{8,})\.pth$", url)
        if arch not in ARCHITECTURES:
            left_out.append(f"{m['Name']}: architecture {arch} (the converter reads output stride 8 only)")
            continue
        if not url.startswith(HOST) or digest is None:
            left_out.append(f"{m['Name']}: weights URL {url} is not on {HOST} with a hash-named file")
            continue
        crop = re.search(r"-(\d+)x(\d+)$", m["Name"])
        iterations = re.search(r"-(\d+)k_", m["Name"])
        metrics = m["Results"]["Metrics"]
        backbone, stem = ARCHITECTURES[arch]
        kept.append({
            "name": m["Name"], "source": source, "url": url, "sha256_prefix": digest[1],
            "dataset": m["Metadata"]["Training Data"], "architecture": arch, "backbone": backbone, "stem": stem,
            "train": {"crop": [int(crop[1]), int(crop[2])] if crop else None,
                      "iterations": int(iterations[1]) * 1000 if iterations else None,
                      "batch_size": m["Metadata"].get("Batch Size")},
            "mIoU": metrics.get("mIoU"), "mIoU_ms_flip": metrics.get("mIoU(ms+flip)"),
            "config": m["Config"], "license": license_,
        })
    return kept, left_out


BACKBONES = {"resnet18_v1c": "resnet18", "resnet50_v1c": "resnet50", "resnet101_v1c": "resnet101"}


def backbones(hub: Path, source: str) -> list[dict]:
    """The ImageNet ResNetV1c weights (deep stem 32-32-64) named in mmengine's hub list."""
    urls = json.loads(hub.read_text())
    out = []
    for name, depth in BACKBONES.items():
        url = urls[name]
        digest = re.search(r"-([0-9a-f]{8,})\.pth$", url)
        if not url.startswith("https://download.openmmlab.com/") or digest is None:
            raise SystemExit(f"{hub}: {name} → {url}: not an OpenMMLab hash-named file")
        out.append({"name": name, "source": source, "url": url, "sha256_prefix": digest[1], "backbone": depth,
                    "stem": "deep 32-32-64", "license": "Apache License 2.0"})
    return out


AUTHORS_DATASETS = {"ADE20K": "ADE20K", "VOC2012": "Pascal VOC 2012", "cityscapes": "Cityscapes"}


def authors(readme: Path, source: str) -> list[dict]:
    """The authors' Caffe releases from hszhao/PSPNet's README: each file's download page (Google Drive: no direct
    link, no hash) and the scores the README states for it."""
    text = readme.read_text()
    out = []
    for depth, dataset, page in re.findall(r"pspnet(\d+)\\?_(\w+)\.caffemodel: \[GoogleDrive\]\((\S+?)\)", text):
        scores = re.search(rf"PSPNet{depth} on {dataset} (\w+) \(([^)]*)\): ([^\n]*)", text, re.I)
        if scores is None:
            raise SystemExit(f"{readme}: no results line for PSPNet{depth} on {dataset}")
        ss = re.search(r"([\d.]+)(?:/[\d.]+)? \(ss\)", scores[3])
        ms = re.search(r"([\d.]+)(?:/[\d.]+)? \(ms\)", scores[3])
        out.append({
            "name": f"pspnet{depth}_{dataset.lower()}", "source": source, "url": page, "sha256_prefix": "",
            "dataset": AUTHORS_DATASETS[dataset], "architecture": f"PSPNet{depth} (Caffe)",
            "backbone": f"resnet{depth}", "stem": "deep 64-64-128", "train": {"evaluated_on": scores[1]},
            "mIoU": float(ss[1]) if ss else None, "mIoU_ms_flip": float(ms[1]) if ms else None,
            "config": f"pspnet{depth}_{dataset}.caffemodel", "license": "see hszhao/PSPNet",
            "file": f"pspnet{depth}_{dataset}.caffemodel", "download": "page",
        })
    if len(out) != 3:
        raise SystemExit(f"{readme}: found {len(out)} released models; expected the three of the README")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metafile", type=Path, help="mmsegmentation's configs/pspnet/metafile.yaml")
    p.add_argument("--source", default="mmsegmentation", help="what to record as the source (e.g. its version)")
    p.add_argument("--hub", type=Path, required=True, help="mmengine's hub/openmmlab.json (ImageNet backbones)")
    p.add_argument("--hub-source", default="mmengine", help="what to record as the backbones' source")
    p.add_argument("--authors-readme", type=Path, required=True, help="hszhao/PSPNet's README.md (the Caffe releases)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    kept, left_out = entries(args.metafile, args.source)
    kept = authors(args.authors_readme, "hszhao/PSPNet README") + kept
    nets = backbones(args.hub, args.hub_source)
    built_from = (f"hszhao/PSPNet README; {args.source} configs/pspnet/metafile.yaml; {args.hub_source} "
                  "hub/openmmlab.json")
    args.out.write_text(json.dumps({"built_from": built_from, "models": kept, "backbones": nets}, indent=1,
                                   ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(kept)} models, {len(nets)} ImageNet backbones")
    for line in left_out:
        print(f"left out: {line}")


if __name__ == "__main__":
    main()
