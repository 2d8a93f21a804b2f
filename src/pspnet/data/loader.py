"""Loading: a torch.utils.data pipeline whose workers only decode, and a sampler for one process or DDP."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pspnet.errors import PSPNetError


class ShardSampler(Sampler[int]):
    """Each rank's share of the dataset in an order reproducible from (seed, epoch).

    Shuffled (train): every epoch a new permutation from `seed + epoch`, padded by repeating its start so that every
    rank gets the same number of samples (DDP needs equal step counts). Not shuffled (validation): the plain order,
    no padding, so shards are disjoint and cover the data exactly (ranks may differ by one sample).
    Resume mid-epoch with `set_epoch(epoch, start_index=K)`: this rank skips the first K samples of its shard.
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 start_index: int = 0) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise PSPNetError(f"sampler: rank {rank} of world size {world_size}; expected 0 <= rank < world size")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_index = 0
        self.set_epoch(0, start_index)

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Select the epoch's order; `start_index` skips that many of this rank's samples (0 at each new epoch)."""
        if not 0 <= start_index <= self.shard_size:
            raise PSPNetError(f"sampler: start_index {start_index}; expected 0..{self.shard_size} (the shard size)")
        self.epoch = epoch
        self.start_index = start_index

    @property
    def shard_size(self) -> int:
        if self.shuffle:
            return -(-self.size // self.world_size)
        return len(range(self.rank, self.size, self.world_size))

    def shard(self) -> list[int]:
        """This rank's whole shard for the current epoch (before skipping start_index)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
            total = self.shard_size * self.world_size
            while order and len(order) < total:
                order += order[: total - len(order)]
        else:
            order = list(range(self.size))
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start_index:])

    def __len__(self) -> int:
        return self.shard_size - self.start_index


def collate(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Lists, not stacked tensors: images differ in size until the augmentation crops them on the device."""
    return {key: [item[key] for item in items] for key in items[0]}


def to_device(batch: dict[str, list[Any]], device: torch.device | str) -> dict[str, list[Any]]:
    """Move the tensors of a collated batch (non-blocking from pinned memory)."""
    return {k: [v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for v in vs]
            for k, vs in batch.items()}


def usable_workers(requested: int) -> int:
    """`requested` decoding processes, at most one per CPU this process may run on: more only compete for the same
    cores (and make torch warn about a possible freeze)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(requested, cpus)


def build_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, workers: int = 4, device: torch.device | str = "cpu",
                 start_index: int = 0) -> DataLoader:
    """A DataLoader of collated lists (see `collate`) for this rank. Train: shuffled, last partial batch dropped
    (a batch of one breaks BatchNorm). Pinned memory when `device` is CUDA. `loader.sampler` is the ShardSampler:
    call `loader.sampler.set_epoch(epoch)` before each epoch; resume with `start_index` (samples of this rank).
    `workers` is capped by `usable_workers`."""
    if batch_size < 1:
        raise PSPNetError(f"batch_size = {batch_size}; expected 1 or more")
    sampler = ShardSampler(len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size,  # type: ignore[arg-type]
                           start_index=start_index)
    workers = usable_workers(workers)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=torch.device(device).type == "cuda", drop_last=train,
                      persistent_workers=workers > 0, worker_init_fn=leave_stop_signals_to_the_main_process)


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A Ctrl-C, or a scheduler's SIGTERM, reaches every process of the group, the loader's workers too: they ignore
    it, and the main process decides (training finishes its step with their data, saves and stops them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
