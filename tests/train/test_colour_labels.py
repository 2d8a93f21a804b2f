"""Training on colour-coded labels (`data.label_colors`) is training on their class indices."""

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import pspnet
from pspnet.train.config import load_train_config
from pspnet.train.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import config_dict, make_folders_dataset  # noqa: E402

PALETTE = [(128, 64, 128), (0, 0, 142), (70, 130, 180)]
VOID = (0, 0, 0)


def colour_copy(root: Path, out: Path) -> Path:
    """The dataset at `root` with every label drawn in PALETTE, a corner of each marked unlabelled in both copies."""
    shutil.copytree(root / "images", out / "images")
    for label in sorted((root / "labels").rglob("*.png")):
        indices = np.asarray(Image.open(label)).copy()
        indices[:3, :3] = 255
        Image.fromarray(indices).save(label)  # the index copy gets the same ignored corner
        rgb = np.asarray([*PALETTE, *[VOID] * (256 - len(PALETTE))], dtype=np.uint8)[indices]
        target = out / label.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(target)
    return out


def run(cfg: dict, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    train(load_train_config(path), progress=False)
    return Path(cfg["train"]["out_dir"]) / "final.safetensors"


def test_colour_labels_train_exactly_as_their_index_labels(tmp_path):
    indexed = make_folders_dataset(tmp_path / "indexed", n_train=4, n_val=1)
    coloured = colour_copy(indexed, tmp_path / "coloured")
    cfg = config_dict(coloured, tmp_path / "by_colour", class_weights="median_frequency")
    cfg["data"] |= {"label_colors": [list(c) for c in PALETTE], "ignore_colors": [list(VOID)]}
    del cfg["data"]["num_classes"]
    index_cfg = config_dict(indexed, tmp_path / "by_index_weighted", class_weights="median_frequency")
    by_index = run(index_cfg, tmp_path, "by_index_weighted")
    by_colour = run(cfg, tmp_path, "by_colour")
    a, b = load_file(str(by_index)), load_file(str(by_colour))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert pspnet.load(by_colour).info.palette == PALETTE  # predictions are coloured as the labels were
    # Ground truth named by folders is read with the model's colours, as its validation read it (was: an error per
    # image, "label image has mode RGB"), and scores as the index labels do.
    from pspnet.cli.main import main

    scores = []
    for model, labels in ((by_colour, coloured), (by_index, indexed)):
        out = tmp_path / f"{model.parent.name}.json"
        assert main(["eval", str(model), "--images", str(indexed / "images" / "val"), "--labels",
                     str(labels / "labels" / "val"), "--json", str(out), "--quiet", "--workers", "0",
                     "--backend", "torch"]) == 0
        scores.append(yaml.safe_load(out.read_text())["confusion_matrix"])
    assert scores[0] == scores[1] and sum(map(sum, scores[0])) > 0
