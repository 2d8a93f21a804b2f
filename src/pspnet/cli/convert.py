"""`pspnet convert --from semseg SRC DST`: an official hszhao/semseg checkpoint → a pspnet checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from pspnet.checkpoint import save
from pspnet.classes import KNOWN, known_dataset
from pspnet.convert.mmseg import convert_mmseg_state
from pspnet.convert.semseg import convert_semseg_state
from pspnet.errors import PSPNetError
from pspnet.files import check_output_file, file_kind, read_torch_file

# --from NAME → (the weights' origin recorded in the checkpoint, the converter)
CONVERTERS = {"semseg": ("hszhao/semseg", convert_semseg_state), "mmseg": ("mmsegmentation", convert_mmseg_state)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source_format", choices=sorted(CONVERTERS), required=True,
                   help="layout of SRC: 'semseg' = the authors' PyTorch release (train_epoch_N.pth); 'mmseg' = an "
                        "mmsegmentation model-zoo PSPNet (pspnet_r50-d8_*.pth, ResNetV1c or the r*b 7×7 stem)")
    p.add_argument("src", type=Path, help="the checkpoint to convert")
    p.add_argument("dst", type=Path, help="where to write the pspnet checkpoint (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.add_argument("--dataset", choices=sorted(KNOWN),
                   help="class names and colours to attach (default: inferred from the class count: "
                        "150 ade20k, 21 voc2012, 19 cityscapes)")


def run(args: argparse.Namespace) -> int:
    check_output_file(args.dst, "DST", args.overwrite)
    if args.dst.resolve() == args.src.resolve():
        raise PSPNetError(f"DST {args.dst}: is SRC; write the converted checkpoint to another file")
    if file_kind(args.src) == "safetensors":
        raise PSPNetError(f"{args.src}: already a safetensors file; expected an official .pth checkpoint")
    info = known_dataset(args.dataset) if args.dataset else None
    source, convert = CONVERTERS[args.source_format]
    model = convert(read_torch_file(args.src), source=str(args.src), info=info)
    if info is not None and info.num_classes != model.config.num_classes:
        raise PSPNetError(f"--dataset {args.dataset} has {info.num_classes} classes; {args.src} has "
                          f"{model.config.num_classes}")
    c = model.config
    variant = f"{c.backbone}, {'deep stem ' + '-'.join(map(str, c.stem_channels)) if c.deep_stem else '7×7 stem'}"
    save(model, args.dst, {"source": source, "converted_from": str(args.src), "variant": variant})
    print(f"{args.dst}: PSPNet {variant}, {c.num_classes} classes ({model.info.name}), "
          f"aux head {'kept' if c.aux else 'absent'}")
    return 0
