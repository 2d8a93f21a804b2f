"""`train.init`: a run that starts from another model's weights — a published model, an earlier run, the authors' or
mmsegmentation's checkpoint — on the same dataset or another one.

The architecture follows the weights: a model setting the config leaves out is taken from them, one it sets must
agree where the weights' shapes depend on it (`follow_init`). The classifiers start afresh when the class count
differs, the auxiliary head when the weights have none, and the inputs are normalised as the weights expect
(`start_from`)."""

from __future__ import annotations

from dataclasses import replace

from pspnet.classes import DatasetInfo
from pspnet.errors import PSPNetError
from pspnet.model.config import ModelConfig
from pspnet.model.pspnet import PSPNet
from pspnet.model.state import load_state_strict

# The settings the weights' names and shapes depend on: the config must agree with the weights on them.
SHAPE_KEYS = ("backbone", "deep_stem", "stem_channels", "bins", "head_channels", "ppm_channels", "aux_channels")
# The settings of what the network computes with the same weights: taken from the weights unless the config sets them.
FUNCTION_KEYS = ("output_stride", "dilation", "align_corners", "stride_on_1x1", "ceil_pool", "norm")
# num_classes comes from the data, aux and dropout are the run's own: never taken from the weights.
CLASSIFIERS = ("head.classifier.", "aux_head.classifier.")


def follow_init(model: ModelConfig, explicit: dict[str, str], init: ModelConfig, name: str) -> ModelConfig:
    """`model` with every architecture setting not in `explicit` (setting → where the config set it) taken from
    `init`, the settings of the weights `name`. A set shape setting that differs from the weights' is an error naming
    where it was set; a set function setting (output stride, dilation, ...) is kept: the run changes it on purpose."""
    taken = {}
    for key in (*SHAPE_KEYS, *FUNCTION_KEYS):
        ours, theirs = getattr(model, key), getattr(init, key)
        if ours == theirs:
            continue
        if key not in explicit:
            taken[key] = theirs
        elif key in SHAPE_KEYS or (key == "norm" and "group" in (ours, theirs)):
            raise PSPNetError(f"{explicit[key]}: model.{key} = {_plain(ours)}, but train.init = {name} was trained "
                              f"with {key} {_plain(theirs)}; its weights fit only that (leave model.{key} out to "
                              f"take it from the weights)")
    return replace(model, **taken)


def start_from(model: PSPNet, init: PSPNet, name: str) -> list[str]:
    """Load `init`'s weights into `model` (built for the run, already seeded): every tensor must fit, except the
    classifiers when the class counts differ and an auxiliary head only one of them has. Returns what the run should
    say about it."""
    state = dict(init.state_dict())
    own = model.state_dict()
    notes = []
    fresh: list[str] = []
    theirs, ours = init.config.num_classes, model.config.num_classes
    if theirs != ours:
        fresh += [k for k in own if k.startswith(CLASSIFIERS)]
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIERS)}
        notes.append(f"its {theirs} classes ({_names(init.info)}) are not the data's {ours}: the classifiers start "
                     "afresh")
    elif init.info.classes != model.info.classes:
        notes.append(f"its classes ({_names(init.info)}) are taken as the data's ({_names(model.info)}), in order")
    if model.aux_head is None:
        state = {k: v for k, v in state.items() if not k.startswith("aux_head.")}
    elif init.aux_head is None:
        fresh += [k for k in own if k.startswith("aux_head.") and k not in fresh]
        notes.append("it has no auxiliary head: that head starts afresh")
    state.update({k: own[k] for k in fresh})
    load_state_strict(model, state, f"train.init = {name}")
    changed = [f"{key} {_plain(getattr(model.config, key))} (the weights': {_plain(getattr(init.config, key))})"
               for key in FUNCTION_KEYS if getattr(model.config, key) != getattr(init.config, key)]
    if changed:
        notes.append("the run changes " + ", ".join(changed))
    return notes


def normalisation(data: DatasetInfo, init: PSPNet) -> tuple[DatasetInfo, str | None]:
    """The run's class names with the inputs normalised as `init`'s weights expect, and a note when that differs from
    the data's default (e.g. the authors' Caffe models: their mean, a std of 1/255)."""
    if (init.info.mean, init.info.std) == (data.mean, data.std):
        return data, None
    mean, std = (", ".join(f"{v:.4g}" for v in values) for values in (init.info.mean, init.info.std))
    return (replace(data, mean=init.info.mean, std=init.info.std),
            f"inputs normalised as its weights expect: mean ({mean}), std ({std})")


def _plain(value: object) -> str:
    if isinstance(value, tuple):
        return str(list(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _names(info: DatasetInfo, shown: int = 3) -> str:
    more = ", ..." if len(info.classes) > shown else ""
    return ", ".join(info.classes[:shown]) + more
