"""`pspnet convert --from semseg SRC DST`: an official hszhao/semseg checkpoint → a pspnet checkpoint."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from pspnet.checkpoint import TRAINING_FORMAT, save
from pspnet.classes import KNOWN, known_dataset
from pspnet.convert.caffe import convert_caffe
from pspnet.convert.mmseg import convert_mmseg_state
from pspnet.convert.semseg import convert_semseg_state
from pspnet.errors import PSPNetError
from pspnet.files import check_output_file, file_kind, read_torch_file
from pspnet.model.pspnet import PSPNet

# --from NAME → (the weights' origin recorded in the checkpoint, the converter of a torch file's content)
CONVERTERS = {"semseg": ("hszhao/semseg", convert_semseg_state), "mmseg": ("mmsegmentation", convert_mmseg_state),
              "caffe": ("hszhao/PSPNet (Caffe)", None)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source_format", choices=sorted(CONVERTERS), required=True,
                   help="layout of SRC: 'semseg' = the authors' PyTorch release (train_epoch_N.pth); 'mmseg' = an "
                        "mmsegmentation model-zoo PSPNet (pspnet_r50-d8_*.pth, ResNetV1c or the r*b 7×7 stem); "
                        "'caffe' = the authors' Caffe release (pspnet50_ADE20K.caffemodel ...), read without Caffe")
    p.add_argument("--prototxt", type=Path, help="caffe only: the deploy .prototxt, to record its input size")
    p.add_argument("src", type=Path, help="the checkpoint to convert")
    p.add_argument("dst", type=Path, help="where to write the pspnet checkpoint (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.add_argument("--align-corners", action=argparse.BooleanOptionalAction, default=None,
                   help="mmseg only: the heads' resize setting, which the weights do not show (default: the file's "
                        "stored config, else off; mmseg's 769×769 Cityscapes models need --align-corners)")
    p.add_argument("--dataset", choices=sorted(KNOWN),
                   help="class names and colours to attach (default: inferred from the class count: "
                        "150 ade20k, 21 voc2012, 19 cityscapes)")


def run(args: argparse.Namespace) -> int:
    if args.dst.suffix.lower() != ".safetensors":  # read back by its suffix: an .onnx of weights reads as a bad graph
        raise PSPNetError(f"DST {args.dst}: convert writes a pspnet .safetensors file; name it e.g. "
                          f"{args.dst.with_suffix('.safetensors').name}")
    if args.prototxt is not None and args.source_format != "caffe":
        raise PSPNetError(f"--prototxt is for --from caffe; {args.source_format} files need none")
    check_output_file(args.dst, "DST", args.overwrite)
    if args.dst.resolve() == args.src.resolve():
        raise PSPNetError(f"DST {args.dst}: is SRC; write the converted checkpoint to another file")
    info = known_dataset(args.dataset) if args.dataset else None
    source, convert = CONVERTERS[args.source_format]
    extra = {}
    if convert is None:  # Caffe: a protobuf file, not a torch one
        if not args.src.is_file():
            raise PSPNetError(f"{args.src}: no such .caffemodel file")
        try:
            kind = file_kind(args.src)
        except PSPNetError:
            kind = None  # no torch file: read as Caffe's
        if kind is not None:  # (Caffe's decoder would say "wire type 3")
            raise PSPNetError(f"{args.src}: a PyTorch or safetensors checkpoint, not a .caffemodel; convert it with "
                              "--from semseg (the authors' PyTorch code) or --from mmseg")
        model = dataset_named(lambda: convert_caffe(args.src, info), args)
        if args.prototxt is not None:
            extra["deploy_input"] = deploy_input(args.prototxt)
    else:
        if args.src.suffix.lower() == ".caffemodel" and args.src.is_file():
            raise PSPNetError(f"{args.src}: a Caffe model; convert it with --from caffe")
        if file_kind(args.src) == "safetensors":
            raise PSPNetError(f"{args.src}: already a safetensors file; expected an official .pth checkpoint")
        options = {"align_corners": args.align_corners} if args.source_format == "mmseg" else {}
        if args.align_corners is not None and args.source_format != "mmseg":
            raise PSPNetError(f"--align-corners is for --from mmseg; {args.source_format} files record their resize")
        loaded = read_torch_file(args.src)
        if isinstance(loaded, dict) and loaded.get("format") == TRAINING_FORMAT:
            raise PSPNetError(f"{args.src}: a checkpoint of `pspnet train` (iteration {loaded.get('iteration')}), "
                              f"which needs no conversion: every command and pspnet.load read it as it is (`pspnet "
                              f"info {args.src}`)")
        model = dataset_named(lambda: convert(loaded, source=str(args.src), info=info, **options), args)
    if info is not None and info.num_classes != model.config.num_classes:
        raise PSPNetError(f"--dataset {args.dataset} has {info.num_classes} classes; {args.src} has "
                          f"{model.config.num_classes}")
    c = model.config
    variant = f"{c.backbone}, {'deep stem ' + '-'.join(map(str, c.stem_channels)) if c.deep_stem else '7×7 stem'}"
    save(model, args.dst, {"source": source, "converted_from": str(args.src), "variant": variant, **extra})
    print(f"{args.dst}: PSPNet {variant}, {c.num_classes} classes ({model.info.name}), "
          f"aux head {'kept' if c.aux else 'absent'}")
    return 0


def dataset_named(convert: Callable[[], PSPNet], args: argparse.Namespace) -> PSPNet:
    """`convert()`, whose class-count mismatch with --dataset is said as the option's."""
    try:
        return convert()
    except PSPNetError as e:
        found = re.fullmatch(r"PSPNet: (\d+) class names given for (\d+) classes", str(e))
        if found is None:
            raise
        raise PSPNetError(f"--dataset {args.dataset} has {found[1]} classes; {args.src} has {found[2]}") from None


def deploy_input(prototxt: Path) -> list[int]:
    """The `input_dim`s of a deploy prototxt (e.g. [1, 3, 473, 473]): what size the fixed pooling kernels were for."""
    try:
        text = prototxt.read_text()
    except OSError as e:
        raise PSPNetError(f"--prototxt {prototxt}: cannot read it ({e.strerror})") from None
    except UnicodeDecodeError:
        raise PSPNetError(f"--prototxt {prototxt}: not a text file; expected the deploy .prototxt") from None
    dims = [int(d) for d in re.findall(r"input_dim:\s*(\d+)", text)]
    if len(dims) != 4:
        raise PSPNetError(f"--prototxt {prototxt}: expected four input_dim lines (N, C, H, W), found {len(dims)}")
    return dims
