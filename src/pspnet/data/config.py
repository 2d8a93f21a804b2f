"""The data settings of a training run: which dataset, where, and the augmentation recipe."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pspnet.classes import IGNORE_INDEX, KNOWN
from pspnet.configfile import HeightWidth
from pspnet.data.label_colors import LabelColors, parse_colors
from pspnet.data.label_values import LabelValues, beside_indices, parse_values
from pspnet.errors import PSPNetError

DATASET_KINDS = (*KNOWN, "lists", "folders")


@dataclass
class DataConfig:
    """Defaults are the official recipe (ADE20K/VOC crop 473; use 713 for Cityscapes).

    `dataset`: a known benchmark prepared by `pspnet data prepare` (lists `ROOT/{split}.txt`), `lists` (your own
    list files, `image label` per line, paths relative to `root`) or `folders` (`root/images/{split}/NAME.*` with
    `root/labels/{split}/NAME.png`). Labels hold class indices 0..num_classes-1 and `ignore_index`, or, with
    `label_colors` (the [r, g, b] of class 0, 1, ...), are colour-coded RGB PNGs; `ignore_colors` are the colours of
    unlabelled pixels. The label colours also colour the model's predictions. With `label_values` (the value of class
    0, 1, ..., e.g. [0, 255] for binary masks) index labels hold other values than the class indices;
    `ignore_values` are those of unlabelled pixels (alone: the labels hold the class indices, the ignore index and
    these values, e.g. a void class).
    """

    dataset: str = "lists"
    root: Path = Path("data")
    train_list: Path | None = None  # relative to root; default {split}.txt for the known datasets
    val_list: Path | None = None
    image_dir: str = "images/{split}"  # for dataset: folders
    label_dir: str = "labels/{split}"
    val_fraction: float = 0.0  # > 0: validate on this share of the train split (held out of training) instead of val
    label_suffix: str = ".png"  # for dataset: folders, the label of NAME.jpg is NAME<label_suffix> (e.g. _mask.png)
    num_classes: int | None = None  # required for lists/folders; known datasets bring their own
    class_names: list[str] | None = None
    label_colors: list[tuple[int, int, int]] | None = None  # colour-coded labels: the colour of each class
    ignore_colors: list[tuple[int, int, int]] = field(default_factory=list)  # the colours of unlabelled pixels
    # index labels drawn with other values: the value of each class, or a list of values (classes merged into one)
    label_values: list[int | list[int]] | None = None
    ignore_values: list[int] = field(default_factory=list)  # the values of unlabelled pixels
    ignore_index: int = IGNORE_INDEX
    crop_size: HeightWidth = (473, 473)  # (height, width); one number N: N×N
    scale_range: tuple[float, float] = (0.5, 2.0)
    rotate: tuple[float, float] = (-10.0, 10.0)  # degrees
    rotate_p: float = 0.5
    blur: float = 0.5  # probability of the 5×5 Gaussian blur
    flip: float = 0.5  # probability of the horizontal flip
    workers: int = 4

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.crop_size = (int(self.crop_size[0]), int(self.crop_size[1]))
        # The setting that gives the class count (before label_colors or label_values may give it instead).
        counted = next((k for k in ("class_names", "num_classes") if getattr(self, k) is not None), None)
        if self.dataset not in DATASET_KINDS:
            raise PSPNetError(f"data.dataset = {self.dataset!r}; expected one of {', '.join(DATASET_KINDS)}")
        if self.dataset in KNOWN and self.num_classes not in (None, KNOWN[self.dataset].num_classes):
            raise PSPNetError(f"data.num_classes = {self.num_classes} but {self.dataset} has "
                              f"{KNOWN[self.dataset].num_classes} classes; leave it out")
        if self.label_colors is not None:
            if self.dataset in KNOWN:
                raise PSPNetError(f"data.label_colors is set but {self.dataset} is prepared with index labels; "
                                  "leave it out (it is for dataset: lists or folders)")
            self.label_colors = list(parse_colors(self.label_colors, "data.label_colors"))
            self._one_per_class("data.label_colors", len(self.label_colors), "colour")
        self.ignore_colors = list(parse_colors(self.ignore_colors, "data.ignore_colors"))
        if self.ignore_colors and self.label_colors is None:
            raise PSPNetError("data.ignore_colors is set without data.label_colors; expected both (colour-coded "
                              "labels) or neither")
        if self.label_values is not None:
            if self.dataset in KNOWN:
                raise PSPNetError(f"data.label_values is set but {self.dataset} is prepared with train ids; leave "
                                  "it out (it is for dataset: lists or folders)")
            if self.label_colors is not None:
                raise PSPNetError("data.label_values and data.label_colors are both set; expected one: values for "
                                  "single-channel labels, colours for RGB ones")
            parse_values(self.label_values, "data.label_values")
            self._one_per_class("data.label_values", len(self.label_values), "value")
        self.ignore_values = [v for (v,) in parse_values(self.ignore_values, "data.ignore_values", merged=False)]
        if self.ignore_values and self.label_colors is not None:
            raise PSPNetError(f"data.ignore_values = {self.ignore_values} with data.label_colors; the colours of "
                              "unlabelled pixels are data.ignore_colors, e.g. [[0, 0, 0]]")
        if self.ignore_values and self.dataset in KNOWN:
            raise PSPNetError(f"data.ignore_values is set but {self.dataset} is prepared with train ids (255: "
                              "ignored); leave it out (it is for dataset: lists or folders)")
        if self.dataset not in KNOWN and self.num_classes is None and self.class_names is None:
            raise PSPNetError(f"data.dataset = {self.dataset}: set data.num_classes (or data.class_names)")
        if self.class_names is not None and len(set(self.class_names)) < len(self.class_names):
            twice = next(n for n in self.class_names if self.class_names.count(n) > 1)
            raise PSPNetError(f"data.class_names: {twice!r} names two classes; expected a different name for each "
                              "(the tables and reports name classes by them)")
        if self.class_names is not None and self.num_classes not in (None, len(self.class_names)):
            raise PSPNetError(f"data.num_classes = {self.num_classes} but data.class_names has "
                              f"{len(self.class_names)} names")
        count = len(self.class_names) if self.class_names is not None else self.num_classes
        if self.ignore_values and self.label_values is None and count is not None:
            # Index labels with other values for unlabelled pixels (e.g. a void class 11): the classes keep their
            # values, the ignore index stays ignored, written out as the settings that say so.
            self.label_values, self.ignore_values = beside_indices(count, self.ignore_values, self.ignore_index)
        if count is not None and count < 2:
            counted = counted or ("label_colors" if self.label_colors is not None else "label_values")
            raise PSPNetError(f"data.{counted} = {getattr(self, counted)}: {count} class; expected 2 or more: PSPNet "
                              "scores every class, the background too (a binary mask is 2 classes; saved as 0/255: "
                              "data.label_values: [0, 255])")
        if not 0 <= self.ignore_index <= 255:
            raise PSPNetError(f"data.ignore_index = {self.ignore_index}; expected 0..255 (labels are 8-bit)")
        if min(self.crop_size) < 1:
            raise PSPNetError(f"data.crop_size = {self.crop_size}; expected two positive sizes (height, width)")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise PSPNetError(f"data.scale_range = {self.scale_range}; expected 0 < min <= max")
        if self.rotate[0] > self.rotate[1]:
            raise PSPNetError(f"data.rotate = {self.rotate}; expected (min degrees, max degrees)")
        for name in ("rotate_p", "blur", "flip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PSPNetError(f"data.{name} = {getattr(self, name)}; expected a probability in [0, 1]")
        if not self.label_suffix.lower().endswith(".png"):
            raise PSPNetError(f"data.label_suffix = {self.label_suffix!r}; expected an ending in .png "
                              "(labels are PNGs), e.g. _mask.png")
        if not 0.0 <= self.val_fraction < 1.0:
            raise PSPNetError(f"data.val_fraction = {self.val_fraction}; expected 0 (use the val split) or a share "
                              "below 1, e.g. 0.1")
        if self.workers < 0:
            raise PSPNetError(f"data.workers = {self.workers}; expected 0 or more")
        self.label_coding()  # each colour or value once: checked now, not at the first label

    def _one_per_class(self, setting: str, count: int, what: str) -> None:
        """`setting` lists `count` entries, one per class: the class count when none is given, else it must match."""
        if self.num_classes is None and self.class_names is None:
            self.num_classes = count
        classes = len(self.class_names) if self.class_names is not None else self.num_classes
        if classes != count:
            raise PSPNetError(f"{setting} has {count} {what}s for {classes} classes; expected one {what} per class")

    def coding_settings(self) -> dict[str, Any] | None:
        """The settings that say how labels become class indices, JSON-ready (what a trained model records:
        `DatasetInfo.label_coding`), or None: the labels hold the indices."""
        if self.label_colors is not None:
            return {"label_colors": [list(c) for c in self.label_colors],
                    "ignore_colors": [list(c) for c in self.ignore_colors]}
        if self.label_values is not None:
            return {"label_values": self.label_values, "ignore_values": self.ignore_values}
        return None

    def label_coding(self) -> LabelColors | LabelValues | None:
        """How labels become class indices: by their colours, by their values, or None (they hold the indices)."""
        return coding_from_settings(self.coding_settings(), self.ignore_index)


def coding_from_settings(settings: dict[str, Any] | None, ignore_index: int, prefix: str = "data."
                         ) -> LabelColors | LabelValues | None:
    """How labels become class indices from `DataConfig.coding_settings`' mapping (a config's, or the one a model
    records); None: they hold the indices. A bad value is an error naming `prefix` + the setting."""
    if settings is None:
        return None
    if "label_colors" in settings:
        return LabelColors(parse_colors(settings["label_colors"], f"{prefix}label_colors"),
                           parse_colors(settings.get("ignore_colors") or [], f"{prefix}ignore_colors"), ignore_index)
    ignore = parse_values(settings.get("ignore_values") or [], f"{prefix}ignore_values", merged=False)
    return LabelValues(parse_values(settings["label_values"], f"{prefix}label_values"), tuple(v for (v,) in ignore),
                       ignore_index)


# How labels are read: the overrides taken without a --config too.
CODING_OVERRIDES = ("data.label_values", "data.ignore_values", "data.label_colors", "data.ignore_colors")


def check_overrides_without_config(overrides: Sequence[str], config: Path | None) -> None:
    """Without --config, the `key=value` overrides a command reading labels takes are those of `CODING_OVERRIDES`;
    any other changes a --config's settings: a mistake, said in one line."""
    others = [o for o in overrides if o.split("=", 1)[0] not in CODING_OVERRIDES]
    if config is None and others:
        raise PSPNetError(f"{' '.join(others)}: without --config, the overrides taken are "
                          f"{', '.join(CODING_OVERRIDES)} (how the labels are read); the others change a "
                          "--config's settings: give --config F")


def load_data_config(path: Path, overrides: Sequence[str] = (), sections: Sequence[str] = ("data",),
                     origins: dict[str, str] | None = None) -> tuple[DataConfig, dict[str, Any]]:
    """The data settings of a YAML file (a training config's `data:` section, or the settings at the top level), and
    the whole file's mapping (for its other sections), after `key=value` overrides of the settings under `sections`
    (`data.root=DIR`, and e.g. `val.flip=false` where the caller reads `val:`). `origins`, given: filled with where
    each setting came from (a line of the file or the command line), for the caller's errors of other sections."""
    from pspnet.configfile import from_dict, load_yaml

    origins = {} if origins is None else origins
    raw = load_yaml(path, origins)
    nested = isinstance(raw, dict) and isinstance(raw.get("data"), dict)
    if overrides:
        if not nested:  # the settings alone: they are the data section
            raw, nested = {"data": raw}, True
            moved = {f"data.{key}": line for key, line in origins.items()}
            origins.clear()
            origins.update(moved)
        raw = _overridden(raw, overrides, sections, origins)
    section = raw["data"] if nested else raw
    cfg = from_dict(DataConfig, section, str(path), "data." if nested else "", origins)
    check_root_here(cfg, Path(path), (raw.get("train") or {}).get("out_dir") if nested else None)
    return cfg, raw


def check_root_here(cfg: DataConfig, config: Path, out_dir: object = None, training: bool = False) -> None:
    """A relative data.root is read from the current folder: when it names no folder here but one beside the
    `config` file (a config written next to its data, run from elsewhere) or, for a training run's config.yaml
    (`out_dir`: its train.out_dir), in the folder the run was started from, an error that says both. `training`:
    the caller trains into that out_dir (relative too), so only running from there keeps the run's folder."""
    if cfg.root.is_absolute() or cfg.root.exists():
        return
    places = [(config.parent, "beside the config")]
    if isinstance(out_dir, str) and out_dir and not Path(out_dir).is_absolute():
        parts, folder = Path(out_dir).parts, config.parent.resolve().parts
        if len(folder) > len(parts) and folder[-len(parts):] == parts:
            places.insert(0, (Path(*folder[: -len(parts)]), "where the run was started"))
    for place, how in places:
        if (place / cfg.root).is_dir():
            other = (f" (train.out_dir {out_dir} is read from there too)" if training and how.startswith("where")
                     else f", or give {shlex.quote(f'data.root={(place / cfg.root).resolve()}')}")
            raise PSPNetError(f"{config}: data.root = {cfg.root}: no such folder in the current folder "
                              f"({Path.cwd()}), which relative paths start from; {place / cfg.root} is {how}: run "
                              f"from {place}{other}")


def data_config_from_options(settings: dict[str, Any], overrides: Sequence[str] = ()) -> DataConfig:
    """The data settings given as command-line options (`{"dataset": …, "root": …}`, each named by its option), after
    `data.key=value` overrides of any setting (e.g. `data.label_values=[0,255]`, which no option gives)."""
    from pspnet.configfile import from_dict

    origins = {f"data.{key}": f"--{key.replace('_', '-')} {value}" for key, value in settings.items()}
    raw = _overridden({"data": dict(settings)}, overrides, ("data",), origins)
    return from_dict(DataConfig, raw["data"], "command line", "data.", origins)


def _overridden(raw: dict[str, Any], overrides: Sequence[str], sections: Sequence[str], origins: dict[str, str]
                ) -> dict[str, Any]:
    for item in overrides:
        section, dot, _ = item.split("=", 1)[0].partition(".")
        if not dot or section not in sections:
            raise PSPNetError(f"override {item}: expected a setting under "
                              f"{' or '.join(f'{s}:' for s in sections)} (e.g. data.root=DIR)")
    from pspnet.configfile import apply_overrides

    return apply_overrides(raw, list(overrides), origins=origins)
