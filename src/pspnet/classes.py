"""What a model needs to know about its labels: class names, palette, normalisation. Known datasets included."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pspnet.errors import PSPNetError

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Color = tuple[int, int, int]


def pascal_palette(n: int) -> list[Color]:
    """The PASCAL VOC colour map (bit-interleaved label index), for any number of classes up to 256."""
    colors = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


@dataclass
class DatasetInfo:
    """Class names, colours and the input normalisation (RGB in [0, 1]: x = (rgb - mean) / std), and the test
    protocol the model was validated with where its training run recorded one (`protocol`: the fields of
    `pspnet.engine.inference.InferenceSettings`; None: the dataset's official protocol), and how its training read
    labels drawn otherwise than as class indices (`label_coding`: `{"label_values": …, "ignore_values": …}` or
    `{"label_colors": …, "ignore_colors": …}`, as in `data:`; None: the labels held the class indices)."""

    name: str
    classes: list[str]
    palette: list[Color] = field(default_factory=list)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    protocol: dict[str, Any] | None = None
    label_coding: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.palette:
            self.palette = pascal_palette(len(self.classes))
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{self.name}: {len(self.palette)} palette colours for {len(self.classes)} classes")
        self.palette = [tuple(int(v) for v in c) for c in self.palette]  # type: ignore[misc]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @classmethod
    def generic(cls, num_classes: int) -> DatasetInfo:
        return cls("custom", [f"class_{i}" for i in range(num_classes)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; what checkpoints and exported files store (`from_dict` reads it back)."""
        data = {"name": self.name, "classes": list(self.classes), "palette": [list(c) for c in self.palette],
                "mean": list(self.mean), "std": list(self.std)}
        recorded = {k: dict(v) for k, v in (("protocol", self.protocol), ("label_coding", self.label_coding)) if v}
        return {**data, **recorded}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DatasetInfo:
        """The inverse of `to_dict` (also given as a JSON string); damaged data is an error naming `source`."""
        try:
            if isinstance(data, str):
                data = json.loads(data)
            for key in ("protocol", "label_coding"):
                if data.get(key) is not None and not isinstance(data[key], dict):
                    raise TypeError(f"{key} is a {type(data[key]).__name__}, not a mapping")
            return cls(name=data["name"], classes=list(data["classes"]), palette=[tuple(c) for c in data["palette"]],
                       mean=tuple(data["mean"]), std=tuple(data["std"]), protocol=data.get("protocol"),
                       label_coding=data.get("label_coding"))
        except (KeyError, TypeError, ValueError) as e:
            raise PSPNetError(f"{source}: damaged class metadata ({type(e).__name__}: {e})") from None


CAMVID = DatasetInfo(
    "camvid",
    ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"],
    [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0), (192, 128, 128),
     (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)],
)

CITYSCAPES = DatasetInfo(
    "cityscapes",
    ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
     "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"],
    [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
     (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60), (255, 0, 0),
     (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)],
)

VOC2012 = DatasetInfo(
    "voc2012",
    ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
     "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"],
)

ADE20K = DatasetInfo(
    "ade20k",
    ["wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
     "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
     "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
     "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
     "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
     "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
     "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
     "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
     "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
     "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
     "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
     "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
     "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
     "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
     "bulletin board", "shower", "radiator", "glass", "clock", "flag"],
)

KNOWN: dict[str, DatasetInfo] = {d.name: d for d in (CAMVID, CITYSCAPES, VOC2012, ADE20K)}


def info_for_class_count(num_classes: int) -> DatasetInfo:
    """The benchmark a converted checkpoint with this many classes was most likely trained on (150 ADE20K, 21 VOC,
    19 Cityscapes), else generic class names: for files that do not name their classes."""
    by_count = {d.num_classes: d for d in KNOWN.values() if d.name != "camvid"}
    return by_count.get(num_classes, DatasetInfo.generic(num_classes))


def known_dataset(name: str) -> DatasetInfo:
    if name not in KNOWN:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(KNOWN)}")
    return KNOWN[name]
