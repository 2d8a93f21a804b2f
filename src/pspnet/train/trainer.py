"""The training loop: the paper's recipe on one process or many (DDP under torchrun), resumable to the bit."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pspnet.checkpoint import load, read_metadata, save, unwrap
from pspnet.classes import DatasetInfo
from pspnet.configfile import changed_settings, to_dict
from pspnet.convert.imagenet import backbone_state, imagenet_state
from pspnet.data.augment import TrainAugment
from pspnet.data.check import check_dataset
from pspnet.data.datasets import build_dataset, folder_pair
from pspnet.data.label_values import parse_values
from pspnet.data.loader import build_loader
from pspnet.device import VAL_SECTION, bf16_warning, is_out_of_memory, memory_state, release_cached_memory
from pspnet.distributed import (
    Distributed,
    all_reduce_sum,
    broadcast_buffers,
    broadcast_from_main,
    gather_lists,
    processes_of,
    raise_together,
    setup,
)
from pspnet.engine.evaluate import evaluate
from pspnet.engine.recipe import (
    default_recipe,
    fast_recipe,
    inference_forward,
    training_model,
    training_precision,
)
from pspnet.errors import PSPNetError
from pspnet.model.config import ModelConfig
from pspnet.model.pspnet import PSPNet
from pspnet.model.state import load_state_strict
from pspnet.progress import progress_bar
from pspnet.run_folder import checkpoint_iteration, checkpoint_path, list_checkpoints, training_lock
from pspnet.train.checkpoints import check_resume_file, load_training_checkpoint, save_training_checkpoint
from pspnet.train.class_weights import resolve_class_weights
from pspnet.train.config import TrainConfig, load_train_config
from pspnet.train.init_weights import normalisation, start_from
from pspnet.train.outdir import COMMAND, FIT, RunOptions, check_out_dir, move_aside
from pspnet.train.runlog import RunLog
from pspnet.train.schedule import parameter_groups, set_poly_lr
from pspnet.train.step import TrainingStep
from pspnet.train.stop import StopRequests, TrainingStopped


class NonFiniteLoss(PSPNetError):
    pass


@dataclass
class Summary:
    iterations: int
    final_checkpoint: Path
    best_checkpoint: Path | None
    best_miou: float | None
    seconds: float


def micro_batches(loader: Any, per_epoch: int, micro: int, start: int) -> Iterator[dict[str, list[Any]]]:
    """The endless stream of this rank's micro-batches from stream position `start` (epoch = position // per_epoch)."""
    epoch, offset = divmod(start, per_epoch)
    while True:
        loader.sampler.set_epoch(epoch, start_index=offset * micro)
        yield from loader
        epoch, offset = epoch + 1, 0


class TimedStream:
    """An iterator over `items` that adds up the time its consumer waited for them, after the first (the loader's
    workers starting): in training, the time the step, and the GPU, since each step ends synchronised, waited for
    the data loader."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = items
        self.waited = 0.0
        self.started = False

    def __iter__(self) -> TimedStream:
        return self

    def __next__(self) -> Any:
        start = time.perf_counter()
        item = next(self.items)
        if self.started:
            self.waited += time.perf_counter() - start
        self.started = True
        return item


DATA_WAIT_NOTE = 0.1  # a run that waited longer than this share of its time for data says so at the end


def train(cfg: TrainConfig, resume: str | Path | bool | None = None, progress: bool = True,
          overwrite: bool = False, names: RunOptions = COMMAND) -> Summary:
    """Run (or continue) a training run; rank 0 writes checkpoints, logs and the final model to `train.out_dir`.
    A folder holding an earlier run needs `resume` (continue) or `overwrite` (start afresh; old files moved aside).
    `names`: how the messages name those two (the command's flags, or `pspnet.fit`'s arguments)."""
    afresh = check_out_dir(cfg.train.out_dir, resume, overwrite, names, init=cfg.train.init)
    if isinstance(resume, (str, Path)):
        check_resume_file(Path(resume), names, cfg.train.out_dir)
    place = partial(setup, cfg.train.device, "train.device=cpu", "run the training")
    with processes_of(place) as d, contextlib.ExitStack() as held:  # a caller's group stays
        failure = None
        try:
            if d.is_main:  # one run at a time in a folder: a --resume while it still trains is refused
                held.enter_context(training_lock(cfg.train.out_dir))
        except PSPNetError as e:
            failure = e
        raise_together(failure, d, "stopped: another run is training into train.out_dir")
        try:
            if afresh and d.is_main and (aside := move_aside(cfg.train.out_dir)) is not None:
                why = "" if overwrite else f" (it stopped before its first checkpoint: {names.resume} starts afresh)"
                tqdm.write(f"the earlier run in {cfg.train.out_dir} was moved to {aside}{why}")
        except PSPNetError as e:
            failure = e
        raise_together(failure, d, "stopped: the first process could not move the earlier run aside")
        return Trainer(cfg, d, progress, names, resume).run()


def fit(config: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), *,
        resume: str | Path | bool | None = None, overwrite: bool = False, progress: bool = True) -> Summary:
    """Train from Python as `pspnet train` does: `config` is a YAML file or the same settings as a mapping,
    `overrides` its `key=value` changes; `resume=True` continues the run in `train.out_dir` (or from a checkpoint
    file). Returns the run's summary (`best_checkpoint`, `best_miou`, `final_checkpoint`); a stop request (Ctrl-C,
    SIGTERM) saves a checkpoint and raises `TrainingStopped`."""
    overrides = [overrides] if isinstance(overrides, str) else list(overrides)  # one override given as it is
    return train(load_train_config(config, overrides, resuming=bool(resume)), resume=resume, progress=progress,
                 overwrite=overwrite, names=FIT)


class Trainer:
    def __init__(self, cfg: TrainConfig, d: Distributed, progress: bool, names: RunOptions = COMMAND,
                 resume: str | Path | bool | None = None) -> None:
        self.cfg, self.d, self.progress, self.names = cfg, d, progress, names
        s = cfg.train
        self.out = s.out_dir
        self.ckpt_dir = self.out / "checkpoints"
        self.resumed = self.checkpoint_to_resume(resume)  # (file, content) until run() has taken its state
        if s.batch_size % (d.world_size * s.accumulate):
            raise PSPNetError(f"train.batch_size = {s.batch_size} is not divisible by processes × accumulate = "
                              f"{d.world_size} × {s.accumulate}; each step needs equal micro-batches")
        self.micro = s.batch_size // (d.world_size * s.accumulate)
        self.train_set = build_dataset(cfg.data, "train")
        try:
            self.val_set = build_dataset(cfg.data, "val") if s.val_every >= 0 else None
        except PSPNetError as e:
            raise PSPNetError(f"{e} (the validation split: add it, hold out part of train with data.val_fraction=0.1, "
                              "or train without validation: train.val_every=-1)") from None
        failure = None
        if s.check_data and d.is_main:  # the others wait for its answer
            try:
                self.check_data(progress)
            except PSPNetError as e:
                failure = e
        raise_together(failure, d, "stopped: the first process found problems in the data (its message lists them)")
        self.loader = build_loader(self.train_set, self.micro, train=True, seed=s.seed, rank=d.rank,
                                   world_size=d.world_size, workers=cfg.data.workers, device=d.device)
        if self.loader.num_workers < cfg.data.workers:
            self.note(f"data.workers {cfg.data.workers} → {self.loader.num_workers}: this process may use "
                      f"{self.loader.num_workers} CPUs")
        self.per_epoch = self.loader.sampler.shard_size // self.micro
        if self.per_epoch == 0:
            raise PSPNetError(f"the train split has {len(self.train_set)} images, fewer than one micro-batch of "
                              f"{self.micro} per process; lower train.batch_size")
        steps_per_epoch = self.per_epoch // s.accumulate or 1
        self.max_iter = s.iterations or s.epochs * steps_per_epoch
        if self.max_iter < 1:
            raise PSPNetError("set train.iterations or train.epochs: the run has no steps")
        if s.iterations and s.epochs:  # both set (one in the file, one on the command line, say): one is not used
            self.note(f"note: train.iterations {s.iterations} sets the run's length; train.epochs {s.epochs} "
                      f"({s.epochs * steps_per_epoch} iterations) is not used (train.iterations=0 uses it)")
        if s.fast and d.device.type == "cuda":
            self.recipe = replace(fast_recipe(d.device, training=True),
                                  activation_checkpointing=s.activation_checkpointing)
            why = ("the fastest training recipe measured there" if not s.activation_checkpointing else
                   "the fastest training recipe measured there, with train.activation_checkpointing: on an H100 "
                   "0.86× its speed for less memory")
            self.note(f"train.fast on cuda → {self.recipe.describe()} ({why})")
        else:
            requested = "auto" if s.fast else s.precision  # on CPUs train.fast is what auto picks
            precision, why = training_precision(requested, d.device)
            if requested == "auto" and set(gather_lists([precision], d)) != {precision}:
                precision, why = "fp32", "auto → fp32: not every process's CPU has fast bf16 units"
            # train.fast: the CPUs' fast recipe (the pyramid at its bins) in the precision auto picked
            self.recipe = (replace(fast_recipe(d.device, training=True), precision=precision,
                                   activation_checkpointing=s.activation_checkpointing) if s.fast
                           else s.recipe(precision))
            if requested == "auto":
                self.note(f"train.{'fast' if s.fast else 'precision'} {why}")
        if (warning := bf16_warning(d.device, self.recipe.precision)) is not None:
            self.note(f"warning: {warning}")
        self.val_recipe = default_recipe(d.device)  # fp32: the headline metric's recipe, whatever the training's
        if self.val_set is not None and cfg.data.val_fraction > 0:
            unused = folder_pair(cfg.data, "val")[0] if cfg.data.dataset == "folders" else None
            unused_note = (f"; {unused}, which holds images, is not used (data.val_fraction=0 validates on it)"
                           if unused is not None and unused.is_dir() and any(unused.iterdir()) else "")
            self.note(f"validation on {len(self.val_set)} of the {len(self.train_set) + len(self.val_set)} train "
                      f"pairs, held out of training (data.val_fraction {cfg.data.val_fraction:g}){unused_note}")
        self.note(f"{self.max_iter} iterations on {d.device} ({d.world_size} process(es)); training recipe "
                  f"{self.recipe.describe()}{', loss compiled' if self.recipe.compile else ''}; validation "
                  f"{self.val_recipe.describe()}: {cfg.val.describe()}")
        self.model = self.build_model()
        self.optimizer = torch.optim.SGD(
            parameter_groups(unwrap(self.model), s.lr, s.head_lr_mult),
            lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
        )
        self.step = TrainingStep(
            self.model, self.optimizer, TrainAugment(cfg.data, self.info, d.device), self.recipe, d,
            micro=self.micro, accumulate=s.accumulate, ignore_index=cfg.data.ignore_index, aux_weight=s.aux_weight,
            class_weights=self.loss_class_weights(progress), seed=s.seed, compile_loss=self.recipe.compile,
        )

    def check_data(self, progress: bool) -> None:
        """Every file of the splits the run reads: its problems, all listed, are an error before training starts."""
        splits = ("train", "val") if self.val_set is not None else ("train",)
        notes: list[str] = []
        problems = check_dataset(self.cfg.data, splits, progress=progress, notes=notes)
        for message in notes:
            self.note(f"note: {message}")
        if problems:
            shown = "\n  ".join(str(p) for p in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise PSPNetError(f"the data has {len(problems)} problem(s); fix them before training "
                              f"(`pspnet data check` lists them):\n  {shown}{more}")

    def build_model(self) -> nn.Module:
        """The run's model, seeded, initialised from train.init or the ImageNet weights, wrapped for the recipe and
        DDP. Sets `self.info`: the classes of the data, the normalisation of the weights it starts from."""
        cfg, d = self.cfg, self.d
        # A resume takes every weight from its checkpoint: the ImageNet or train.init weights the run started from
        # are not read again (they may be gone); what the run took from them comes with the checkpoint.
        starting = self.resumed is None
        imagenet = imagenet_state(cfg.train.imagenet, cfg.model.backbone) if cfg.train.imagenet and starting else None
        if imagenet is not None and any(getattr(cfg.model, k) != v for k, v in imagenet[1].items()):
            # The stem follows the backbone weights (e.g. ResNetV1c's 32-32-64): the run's model settings say so.
            cfg.model = replace(cfg.model, **imagenet[1])
            self.note(f"model stem set to {imagenet[1]} to match the ImageNet weights {imagenet[2]}")
        try:
            init = load(cfg.train.init) if cfg.train.init and starting else None
        except PSPNetError as e:  # read when the config was (a resume with no checkpoint yet): gone since
            raise PSPNetError(f"train.init: {e}") from None
        torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
        data_info = self.train_set.info
        self.info, normalised = normalisation(data_info, init) if init else (data_info, None)
        if self.resumed is not None:
            path, ckpt = self.resumed
            self.check_resumed_model(path, ckpt)
            saved = DatasetInfo.from_dict(json.loads(ckpt["info"]), str(path))
            self.info = replace(self.info, mean=saved.mean, std=saved.std)  # as its weights were trained
        # what predict and eval use by default: the protocol, and how the labels are read (0/255 masks)
        self.info = replace(self.info, protocol=to_dict(cfg.val), label_coding=cfg.data.coding_settings())
        model = PSPNet.from_config(cfg.model, self.info)
        if imagenet is not None:
            state, _, path = imagenet
            load_state_strict(model.backbone, backbone_state(state, cfg.model.deep_stem, str(path)), str(path))
            self.note(f"backbone initialised from {path}")
        if init is not None:
            notes = [*start_from(model, init, str(cfg.train.init)), *([normalised] if normalised else [])]
            self.note(f"weights initialised from {cfg.train.init}" + "".join(f"; {n}" for n in notes))
        if d.enabled and cfg.train.sync_bn and d.device.type == "cuda" and cfg.model.norm == "batch":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif d.enabled and cfg.model.norm == "syncbatch" and d.device.type != "cuda":
            raise PSPNetError("model.norm = syncbatch needs CUDA GPUs (PyTorch's SyncBatchNorm is GPU-only); "
                              "on CPUs use norm: batch (per-process statistics) or norm: group")

        def ddp(net: nn.Module) -> nn.Module:
            return DistributedDataParallel(net, device_ids=[d.device.index] if d.device.type == "cuda" else None)

        return training_model(model, self.recipe, d.device, wrap=ddp if d.enabled else None)

    def loss_class_weights(self, progress: bool) -> torch.Tensor | None:
        """train.class_weights as a tensor. Weights computed from the labels are counted by the main process only
        (reading every train label once, not once per process) and broadcast to the others."""
        cfg, d = self.cfg, self.d
        setting = cfg.train.class_weights
        if setting is None:
            return None
        counted = isinstance(setting, str)
        weights = (
            [0.0] * cfg.model.num_classes if counted and not d.is_main
            else resolve_class_weights(setting, self.train_set.pairs, cfg.model.num_classes, cfg.data.ignore_index,
                                       progress=progress, coding=self.train_set.label_coding)
        )
        tensor = torch.tensor(weights, device=d.device)
        if counted:
            tensor = broadcast_from_main(tensor, d)
        names = self.info.classes
        self.note("class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(names, tensor.tolist(), strict=False)))
        return tensor

    def note(self, message: str) -> None:
        if self.d.is_main:
            tqdm.write(message)

    def checkpoint_to_resume(self, resume: str | Path | bool | None) -> tuple[Path, dict[str, Any]] | None:
        """The training checkpoint `resume` names (True: the newest in the run's folder), read; None: the run starts
        at iteration 0."""
        if not resume:
            return None
        if resume is True:
            found = list_checkpoints(self.ckpt_dir)
            if not found:
                self.note(f"no checkpoint in {self.ckpt_dir}: starting from the beginning")
                return None
            path = found[-1]
        else:
            path = Path(resume)
        return path, load_training_checkpoint(path, self.names)

    def check_resumed_model(self, path: Path, ckpt: dict[str, Any]) -> None:
        """The checkpoint's weights must be for the run's model settings. The stem that ImageNet weights set at the
        start (train.imagenet, not read again) is the checkpoint's."""
        written = ModelConfig.from_dict(ckpt["model_config"], str(path))
        if self.cfg.train.imagenet:
            self.cfg.model = replace(self.cfg.model, deep_stem=written.deep_stem, stem_channels=written.stem_channels)
        if written != self.cfg.model:
            changes = changed_settings(written.to_dict(), self.cfg.model.to_dict(), "model.")
            raise PSPNetError(f"{path}: its weights are for other model settings than the config's "
                              f"({', '.join(changes)}); resume with the run's own model settings, or start afresh "
                              f"with {self.names.overwrite} or another train.out_dir")

    def resume_from(self) -> tuple[int, dict[str, Any]]:
        """The iteration and progress the run continues from, its model and optimiser state loaded."""
        if self.resumed is None:
            return 0, {}
        path, ckpt = self.resumed
        self.resumed = None  # the checkpoint's tensors are not held for the whole run
        unwrap(self.model).load_state_dict(ckpt["model"])
        # The optimiser's state (momentum) is the checkpoint's; its settings (lr, momentum, weight decay, the head's
        # lr multiplier) are the config's, changed or not: load_state_dict would bring back the old ones.
        settings = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for group, own in zip(self.optimizer.param_groups, settings, strict=True):
            group.update(own)
        self.note(f"resumed from {path} at iteration {ckpt['iteration']}")
        return int(ckpt["iteration"]), ckpt["progress"]

    def note_changes(self, start: int, log: RunLog) -> None:
        """On a resume: the settings that differ from those the run started with (its config.yaml), said and
        recorded in metrics.jsonl; the run continues with the new ones."""
        import yaml

        saved = self.out / "config.yaml"
        if not saved.is_file():
            return  # a run without its config.yaml (copied checkpoints): nothing to compare with
        try:  # with today's defaults filled in: a setting added since the run started is no change
            before = yaml.safe_load(config_yaml(load_train_config(saved, resuming=True)))
        except PSPNetError:  # settings this version no longer reads: compared as written
            try:
                before = yaml.safe_load(saved.read_text())
            except (OSError, yaml.YAMLError):
                return
        changes = changed_settings(before, yaml.safe_load(config_yaml(self.cfg)))
        if changes:
            self.note(f"resuming at iteration {start} with settings changed since the run started ({saved}): "
                      + ", ".join(changes))
            self.written(log.path, lambda: log.record(start, {}, kind="resume", notes={"changed": changes}))

    def provenance(self, iteration: int, val_miou: float | None) -> dict[str, Any]:
        """What a saved model records of its training (shown by `pspnet info`)."""
        from pspnet import __version__

        cfg, s = self.cfg, self.cfg.train
        return {"source": "pspnet train", "pspnet_version": __version__, "iteration": iteration,
                "iterations": self.max_iter, "val_mIoU": val_miou, "val_protocol": to_dict(cfg.val),
                "val_recipe": self.val_recipe.describe(), "dataset": cfg.data.dataset, "data_root": str(cfg.data.root),
                "out_dir": str(self.out), "train_recipe": self.recipe.describe(), "processes": self.d.world_size,
                "batch_size": s.batch_size, "lr": s.lr, "seed": s.seed, "init": s.init,
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **({"label_values": [v[0] for v in parse_values(cfg.data.label_values, "data.label_values")]}
                   if cfg.data.label_values is not None else {})}  # each class's (first) value in the labels

    def set_aside_later_files(self, start: int) -> None:
        """A run resumed from an earlier checkpoint than its last (`--resume checkpoints/iter_N.pt`): the checkpoints
        and models of the iterations after it are of a run that no longer goes on; left in place, a later plain
        --resume would continue from them, and they would be taken for this run's. They are moved aside, said."""
        if start == 0:
            return
        failure = None
        try:
            if self.d.is_main:
                later = [p for p in list_checkpoints(self.ckpt_dir) if checkpoint_iteration(p) > start]
                for name in ("final.safetensors", "best.safetensors"):
                    path = self.out / name
                    if path.is_file() and (read_metadata(path)["provenance"].get("iteration") or 0) > start:
                        later.append(path)
                if later and (aside := move_aside(self.out, later)) is not None:
                    self.note(f"resuming at iteration {start}: the files of later iterations, of the run that went "
                              f"on from it before ({', '.join(p.name for p in later)}), were moved to {aside}")
        except PSPNetError as e:
            failure = e
        raise_together(failure, self.d, "stopped: the first process could not move the later iterations' files aside")

    def check_same_start(self, start: int) -> None:
        """Every process must continue from the same iteration (a node that cannot see the checkpoint would start
        from 0 and wait forever in the first all_reduce)."""
        if not self.d.enabled:
            return
        starts = [int(v) for v in gather_lists([str(start)], self.d)]
        if len(set(starts)) > 1:
            raise PSPNetError(f"the processes would continue from different iterations {starts} (by rank): every "
                              f"node must see the same train.out_dir ({self.out}); put it on a shared filesystem")

    def run(self) -> Summary:
        cfg, d, s = self.cfg, self.d, self.cfg.train
        start, progress = self.resume_from()
        self.check_same_start(start)
        final = self.out / "final.safetensors"
        # A validation still owed at `start`: cut short by a stop request (the checkpoint says so), or the last one
        # when the run ended before its final model was written (killed after its last checkpoint).
        owed = self.val_set is not None and start > 0 and (
            progress.get("val_due") == start or (start >= self.max_iter and not final.exists()))
        self.set_aside_later_files(start)
        if start >= self.max_iter and final.exists() and not owed:
            self.note(f"the run in {self.out} is finished (iteration {start} of {self.max_iter}): nothing to train. "
                      f"To train longer, raise train.iterations (or train.epochs) and {self.names.resume}; to start "
                      f"afresh, {self.names.overwrite}")
            best_path = self.out / "best.safetensors"
            return Summary(start, final, best_path if best_path.exists() else None, progress.get("best_miou"), 0.0)
        best = progress.get("best_miou")
        last_miou: float | None = None
        self.written(self.out, lambda: self.out.mkdir(parents=True, exist_ok=True))
        log = RunLog(self.out, enabled=d.is_main, tensorboard=s.tensorboard)
        self.written(log.tensorboard_dir, lambda: log.open(start, owed))
        if start == 0:
            self.written(self.out / "config.yaml", lambda: (self.out / "config.yaml").write_text(config_yaml(cfg)))
        else:
            self.note_changes(start, log)
        stream = TimedStream(micro_batches(self.loader, self.per_epoch, self.micro, start * s.accumulate))
        bar = progress_bar(total=self.max_iter, initial=start, desc="train", unit="it",
                   disable=not (self.progress and d.is_main), dynamic_ncols=True)
        t0 = time.perf_counter()
        window_start, window_images, window_waited = time.perf_counter(), 0, 0.0
        last_saved: Path | None = list_checkpoints(self.ckpt_dir)[-1] if start else None
        self.model.train()
        stops = StopRequests(self.note)
        stops.install()
        try:
            if owed:
                self.note(f"validating iteration {start} first: its validation did not finish")
                before = best
                best, last_miou, last_saved = self.validation(start, best, log, stops, last_saved)
                if progress.get("val_due") == start and best == before:  # not re-saved as a best: the checkpoint
                    last_saved = self.save_checkpoint(start, {"best_miou": best})  # owes the validation no longer
            for iteration in range(start, self.max_iter):
                lr = set_poly_lr(self.optimizer, iteration, self.max_iter, s.power)
                failed = False
                try:
                    losses = self.step(stream, iteration)
                except RuntimeError as e:
                    if not is_out_of_memory(e):
                        raise
                    failed = True
                if failed:  # out of memory; out of the except block, the step's tensors are freed by now
                    release_cached_memory(d.device)
                    raise self.out_of_memory(iteration, last_saved)
                if not all(math.isfinite(v) for v in losses.values()):
                    where = f"; the last good checkpoint is {last_saved}" if last_saved else ""
                    raise NonFiniteLoss(f"the loss became {losses['loss']} at iteration {iteration + 1}; stopped "
                                        f"without saving{where}. Lower train.lr or check the data")
                done = iteration + 1
                window_images += s.batch_size
                bar.update(1)
                if done % s.log_every == 0 or done == self.max_iter:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    rate, waiting = window_images / elapsed, (stream.waited - window_waited) / elapsed
                    bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                    self.logged(log, done, {**losses, "lr": lr, "images_per_s": rate, "data_wait": waiting})
                    window_start, window_images, window_waited = time.perf_counter(), 0, stream.waited
                if done % s.checkpoint_every == 0 or done == self.max_iter:
                    last_saved = self.save_checkpoint(done, {"best_miou": best})
                if self.val_set is not None and (
                    (s.val_every > 0 and done % s.val_every == 0) or done == self.max_iter
                ):
                    best, last_miou, last_saved = self.validation(done, best, log, stops, last_saved)
                if done < self.max_iter and (signum := stops.agreed(d)):  # SIGTERM or Ctrl-C: stop, resumable
                    if last_saved != checkpoint_path(self.ckpt_dir, done):
                        last_saved = self.save_checkpoint(done, {"best_miou": best})
                    stopped = TrainingStopped(signum, done, str(last_saved), resume=self.names.resume)
                    self.note(str(stopped))
                    raise stopped
        except KeyboardInterrupt:  # a second request: at once, mid-step; the last checkpoint is a finished step's
            self.note("stopped at once, without saving" + (f"; the last checkpoint is {last_saved}" if last_saved
                                                             else ""))
            raise
        except BaseException:
            with contextlib.suppress(OSError):  # already stopping: the failure that stopped the run is the one told
                log.close()
            raise
        finally:
            stops.restore()
            bar.close()
        self.written(log.tensorboard_dir, log.close)
        self.written(final, lambda: save(self.model, final, self.provenance(self.max_iter, last_miou)))
        seconds = time.perf_counter() - t0
        best_path = self.out / "best.safetensors" if best is not None else None
        summary = Summary(self.max_iter, final, best_path, best, seconds)
        if d.is_main:
            if (share := stream.waited / max(seconds, 1e-9)) > DATA_WAIT_NOTE:
                self.note(f"the training steps waited for data {100 * share:.0f}% of the run ({stream.waited:.1f} s "
                          f"of {seconds:.1f} s; data.workers {self.loader.num_workers}): more data.workers, a "
                          "faster disk or smaller images would train faster")
            miou = f", best val mIoU {best:.4f}" if best is not None else ""
            self.note(f"trained {self.max_iter - start} iterations in {seconds / 60:.1f} min{miou}; "
                      f"model: {final}" + (f", best: {best_path}" if best_path else ""))
        return summary

    def out_of_memory(self, iteration: int, last_saved: Path | None) -> PSPNetError:
        """What to change when a training step does not fit in memory, and where the run can continue from."""
        s, d = self.cfg.train, self.d
        h, w = self.cfg.data.crop_size
        ways = []
        if self.micro > 1:
            accumulate = s.accumulate * (2 if self.micro % 2 == 0 else self.micro)
            micro = s.batch_size // (d.world_size * accumulate)
            ways.append(f"train.accumulate={accumulate} (the batch stays {s.batch_size} per step, {micro} "
                        f"image{'s' if micro > 1 else ''} per forward: BatchNorm's statistics then come from "
                        f"{'those' if micro > 1 else 'one'})")
        if not s.activation_checkpointing:
            ways.append("train.activation_checkpointing=true (up to 1.85× less memory, about 15% slower)")
        if d.device.type == "cuda" and self.recipe.precision == "fp32":
            ways.append("train.fast=true (bf16)")
        ways.append("a smaller data.crop_size")
        where = (f"; the last checkpoint, {last_saved}, is intact: {self.names.resume} continues from it with the "
                 "change" if last_saved else "")
        return PSPNetError(f"out of memory in training step {iteration + 1} on {d.device}{memory_state(d.device)}, "
                           f"{self.micro} images of {h}×{w} per forward; lower what one forward holds with "
                           f"{', '.join(ways[:-1])} or {ways[-1]}{where}")

    def save_checkpoint(self, iteration: int, progress: dict[str, Any]) -> Path:
        path = checkpoint_path(self.ckpt_dir, iteration)
        self.written(path, lambda: save_training_checkpoint(self.ckpt_dir, self.model, self.optimizer, iteration,
                                                            progress, self.cfg.train.keep_last))
        return path

    def written(self, path: Path, write: Callable[[], object]) -> None:
        """`write()` of the run's files by the first process (every process calls this), its outcome agreed by all:
        a write that fails (a full disk, a quota, a folder made read-only) stops every process at the same point,
        the first with one line naming the file, why and the checkpoint the run continues from (every file is
        written whole or not at all: those written before are intact), the others saying they stopped for it."""
        failure = None
        try:
            if self.d.is_main:
                write()
        except OSError as e:
            found = [p for p in list_checkpoints(self.ckpt_dir) if p != path]
            fix = "make it writable" if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else "make room"
            where = (f"; the last checkpoint, {found[-1]}, is intact: {fix} and {self.names.resume} continues "
                     "from it" if found else "; no checkpoint was written yet")
            failure = PSPNetError(f"{path}: cannot write {'into it' if path.is_dir() else 'it'} "
                                  f"({e.strerror or e}){where}")
        raise_together(failure, self.d, f"stopped: the first process could not write {path}")

    def logged(self, log: RunLog, iteration: int, values: dict[str, float], kind: str = "train",
               notes: dict[str, Any] | None = None) -> None:
        """A record of metrics.jsonl and its TensorBoard scalars, each write agreed by every process (`written`)."""
        self.written(log.path, lambda: log.record(iteration, values, kind, notes))
        self.written(log.tensorboard_dir, lambda: log.tensorboard_scalars(iteration, values, kind))

    def validation(self, done: int, best: float | None, log: RunLog, stops: StopRequests, last_saved: Path | None
                   ) -> tuple[float | None, float, Path | None]:
        """Validate at iteration `done`, keep the model as best.safetensors when it is the best so far (with a
        checkpoint that remembers it): (best, this mIoU, the last checkpoint). A stop request during it cuts it
        short: a checkpoint marked to validate first on `--resume`, then TrainingStopped."""
        miou = self.validate(done, log, stops)  # the same on every process: they take one branch
        if miou is None:
            last_saved = self.save_checkpoint(done, {"best_miou": best, "val_due": done})
            stopped = TrainingStopped(stops.agreed(self.d), done, str(last_saved), validating=True,
                                      resume=self.names.resume)
            self.note(str(stopped))
            raise stopped
        if not math.isnan(miou) and (best is None or miou > best):
            best = miou
            path = self.out / "best.safetensors"
            self.written(path, lambda: save(self.model, path, self.provenance(done, best)))
            last_saved = self.save_checkpoint(done, {"best_miou": best})
        self.model.train()
        return best, miou, last_saved

    def validate(self, iteration: int, log: RunLog, stops: StopRequests) -> float | None:
        """mIoU on the val split by the fp32 protocol; every process scores its shard and gets the same value.
        None when a stop request cut it short on any process (nothing is logged then)."""
        net = unwrap(self.model)
        broadcast_buffers(net, self.d)  # the statistics rank 0 saves are the ones every process evaluates with
        dataset = self.val_set
        if self.cfg.train.val_images:
            dataset = torch.utils.data.Subset(dataset, range(min(self.cfg.train.val_images, len(dataset))))
        forward = inference_forward(net, self.val_recipe, self.d.device, fit_memory=self.note, memory_names=VAL_SECTION)
        samples = self.cfg.train.val_samples if log.shows_images else 0  # chosen over the whole split
        ev = evaluate(forward, dataset, self.cfg.val, self.info, self.d.device, self.cfg.data.ignore_index,
                      num_samples=samples, progress=self.progress and self.d.is_main, processes=self.d,
                      stop=lambda: bool(stops.received))
        if all_reduce_sum(torch.tensor([int(ev.interrupted)], device=self.d.device), self.d).item():
            return None
        sc = ev.scores
        per_class = {f"val_IoU/{name}": iou for name, iou in zip(self.info.classes, sc.iou, strict=True)
                     if not math.isnan(iou)}
        self.logged(log, iteration, {"val_mIoU": sc.miou, "val_mAcc": sc.macc, "val_allAcc": sc.allacc, **per_class},
                    kind="val", notes={"recipe": self.val_recipe.describe(), "images": ev.images})
        self.written(log.tensorboard_dir, lambda: log.samples(iteration, ev.samples, self.info.palette))
        self.note(f"iteration {iteration}: val mIoU {sc.miou:.4f}  mAcc {sc.macc:.4f}  allAcc {sc.allacc:.4f} "
                  f"({ev.images} images, {self.val_recipe.describe()})")
        for message in ev.failures:
            self.note(f"validation skipped {message}")
        return sc.miou


def config_yaml(cfg: TrainConfig) -> str:
    """The whole config as YAML (every default filled in): what `--print-config` prints and a run saves."""
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False)
