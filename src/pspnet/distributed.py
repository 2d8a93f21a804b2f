"""torchrun integration: one process per device, NCCL on GPUs and gloo on CPUs; rank 0 writes."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from pspnet.device import resolve_device
from pspnet.environment import environment_int
from pspnet.errors import PSPNetError

T = TypeVar("T")


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_name: str, use_cpu: str = "--device cpu", caller: str = "run this command") -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a single process otherwise. `use_cpu`:
    how the caller asks for the CPU (for the error on a machine without a GPU); `caller`: as for `join`."""
    local_rank = environment_int("LOCAL_RANK", 0)
    device = resolve_device(device_name, use_cpu)
    if launched_processes() > 1 and device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise PSPNetError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) here; "
                              "start at most one process per GPU (torchrun --nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return join(device, caller)


def launched_processes() -> int:
    """How many processes torchrun started (WORLD_SIZE; 1 outside torchrun)."""
    return environment_int("WORLD_SIZE", 1)


# What gloo and NCCL say in the processes left when one of the job's processes dies (killed, out of memory).
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "communicator was aborted",
             "Socket Timeout", "Connection refused")


def is_peer_lost(error: BaseException) -> bool:
    """Whether `error`, in a process of a job of several, is a collective failing for a process that has gone."""
    return launched_processes() > 1 and isinstance(error, RuntimeError) and any(
        text in str(error) for text in PEER_LOST)


_started = itertools.count()  # the process groups started here in this process, the same count in every process
# The store rank 0 hosts for its peers, kept for the process's life (see `join`); the latest one (a later
# rendezvous on the same port shares its server).
_hosted_store: list[dist.Store] = []
# A process that waits this long for the others to join says which it waits for, and gives up after the second
# (torch's own default process-group timeout), in a line naming them, instead of waiting without a word.
JOIN_NOTE_AFTER_S = 60.0
JOIN_GIVE_UP_AFTER_S = 1800.0


def join(device: torch.device, caller: str = "run this command") -> Distributed:
    """This process among its peers, on `device` as it is: in the process group the caller started (under torchrun
    or not), else, launched by torchrun, in one started here (NCCL for a GPU, gloo for the CPU); else one process.
    Each group started here meets under keys of its own in torchrun's store: a second group under the default keys
    read the first one's addresses, closed by then (gloo: "Connection refused"; every time in 6 starts in a row).
    Where rank 0 hosts the store itself (torchrun of torch 2.4, TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, a launcher
    that sets MASTER_ADDR and the others itself) it keeps it for the process's life, as torchrun's agent keeps its
    own: a group the script starts after this one's end meets in it too. Closed with the group, a peer quicker than
    rank 0 met in the closing store and failed ("Connection reset by peer": every time when rank 0 left last).
    `caller` names what every process must run (in the note and the error of `wait_for_everyone`)."""
    if launched_processes() > 1 and not dist.is_initialized():
        store, rank, world_size = next(dist.rendezvous("env://"))
        if rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":  # torch's own test of it
            _hosted_store[:] = [store]  # the next rendezvous of this process reuses its server (multi-tenant)
        keys = dist.PrefixStore(f"pspnet/{next(_started)}", store)
        wait_for_everyone(dist.PrefixStore("arrived", keys), rank, world_size, caller)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                store=keys)
    if not dist.is_initialized():
        return single_process(device)
    return Distributed(dist.get_rank(), dist.get_world_size(), environment_int("LOCAL_RANK", 0), device)


def wait_for_everyone(store: dist.Store, rank: int, world_size: int, caller: str) -> None:
    """Return once all `world_size` processes have called this with `store` (keys of their own in torchrun's store).
    A process that waits JOIN_NOTE_AFTER_S says which ranks have not come (a script that calls
    `pspnet.evaluate(shard=True)` on rank 0 alone would otherwise wait for ever without a word), and raises
    PSPNetError naming them after JOIN_GIVE_UP_AFTER_S. `caller`: what every process must do ("run pspnet eval").
    The store is polled, not waited on: a wait that times out prints two lines of C++ warnings."""
    store.set(str(rank), "1")
    store.add("count", 1)
    start = time.monotonic()
    pause, noted = 0.01, False
    while store.add("count", 0) < world_size:
        waited = time.monotonic() - start
        if waited >= JOIN_GIVE_UP_AFTER_S or (not noted and waited >= JOIN_NOTE_AFTER_S):
            missing = [r for r in range(world_size) if not store.check([str(r)])]
            absent = f"rank{'s' if len(missing) > 1 else ''} {rank_ranges(missing)} (of {world_size} processes)"
            if waited >= JOIN_GIVE_UP_AFTER_S:
                raise PSPNetError(f"{absent} did not join within {waited:.0f} s; every process of the job must "
                                  f"{caller}")
            print(f"note: rank {rank} has waited {waited:.0f} s for {absent} to join; every process of the job must "
                  f"{caller} (giving up after {JOIN_GIVE_UP_AFTER_S:.0f} s)", file=sys.stderr, flush=True)
            noted = True
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def rank_ranges(ranks: list[int]) -> str:
    """Sorted ranks with their runs of three or more shortened: [1, 3, 4, 8, 9, 10, 11] → "1, 3, 4, 8-11" (a node of
    8 GPUs that has not started is one item, not eight)."""
    runs: list[list[int]] = []
    for r in ranks:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in runs)


# torch before 2.8 tears a gloo group down holding Python's lock while it joins the group's worker thread, which may
# still need that lock to free the last collective's tensors: both wait for good (pytorch/pytorch#154976 made the
# teardown release the lock). Sleeping first lets the worker finish: 3 of 4 runs of a script that evaluates with
# shard=True hung with torch 2.7.1 without the pause, none of 8 with it (none of 4 with torch 2.8.0 and no pause).
TEARDOWN_PAUSE_S = 0.05 if torch.__version__ < "2.8" else 0.0


@contextmanager
def processes_of(place: Callable[[], Distributed]) -> Iterator[Distributed]:
    """The processes `place()` joins (`setup` or `join`), and at the end the process group left where it was
    started here; one the caller started stays for the caller (a user's script under torchrun goes on using it)."""
    started = not dist.is_initialized()
    processes = place()
    try:
        yield processes
    finally:
        if started and dist.is_initialized():
            time.sleep(TEARDOWN_PAUSE_S)
            dist.destroy_process_group()


def run_in_processes(device_name: str, command: Callable[[Distributed], int], caller: str = "run this command") -> int:
    """`command(processes)` inside the process group of a torchrun (one process without one)."""
    with processes_of(lambda: setup(device_name, caller=caller)) as processes:
        return command(processes)


def all_reduce_mean(value: torch.Tensor, d: Distributed) -> torch.Tensor:
    if d.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= d.world_size
    return value


def broadcast_from_main(value: torch.Tensor, d: Distributed) -> torch.Tensor:
    """Rank 0's `value` on every rank (in place)."""
    if d.enabled:
        dist.broadcast(value, src=0)
    return value


def barrier(d: Distributed) -> None:
    if d.enabled:
        dist.barrier()


def raise_together(failure: BaseException | None, d: Distributed | None, elsewhere: str) -> None:
    """Every process learns whether any failed at this point (one all-reduce), so that none waits for one that has
    stopped: the one that failed raises `failure`, the others PSPNetError(`elsewhere`). Every process must call it."""
    failed = failure is not None
    if d is not None and d.enabled:
        failed = bool(all_reduce_sum(torch.tensor([int(failed)], device=d.device), d).item())
    if failure is not None:
        raise failure
    if failed:
        raise PSPNetError(elsewhere)


def single_process(device: torch.device) -> Distributed:
    """The one-process place (no process group): for code that takes a `Distributed` outside torchrun."""
    return Distributed(0, 1, 0, device)


def all_reduce_sum(value: torch.Tensor, d: Distributed) -> torch.Tensor:
    """The sum of `value` over all processes, on every process (in place)."""
    if d.enabled:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def gather_lists(items: list[T], d: Distributed) -> list[T]:
    """Every process's `items` (picklable: messages, scores), concatenated in rank order, on every process."""
    if not d.enabled:
        return list(items)
    gathered: list[list[T] | None] = [None] * d.world_size
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in (part or [])]


def all_gather_tensor(value: torch.Tensor, d: Distributed) -> list[torch.Tensor]:
    """Every process's `value` (the same shape and dtype on each, on the process's device), in rank order."""
    if not d.enabled:
        return [value]
    gathered = [torch.empty_like(value) for _ in range(d.world_size)]
    dist.all_gather(gathered, value.contiguous())
    return gathered


def shard_indices(length: int, d: Distributed) -> range:
    """This process's share of `length` items: every world_size-th from its rank on. Together the shards hold each
    index exactly once, whatever the length (shards differ by at most one item; nothing is padded or dropped)."""
    return range(d.rank, length, d.world_size)


def broadcast_buffers(model: torch.nn.Module, d: Distributed) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every process. Without SyncBatchNorm each process last
    updated its statistics from its own batch; DDP copies rank 0's buffers at the next training forward anyway, so
    evaluating with them changes nothing in the run, and the weights saved by rank 0 are the ones evaluated."""
    if d.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
