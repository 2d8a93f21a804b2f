"""Processes meeting before a process group starts (`pspnet.distributed.wait_for_everyone`): in torchrun's store, a
real TCPStore here, the processes played by threads. A process that waits for one that never comes says which, then
stops in a line naming it (torchrun itself: tests/train/test_distributed.py)."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
import torch.distributed as dist

import pspnet.distributed as distributed
from pspnet.errors import PSPNetError

CALLER = "call pspnet.evaluate(shard=True)"


@pytest.fixture
def store() -> dist.Store:
    """A fresh TCPStore on a free port, under a prefix as `join` uses one."""
    server = dist.TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=30), wait_for_workers=False)
    return dist.PrefixStore("pspnet/0/arrived", server)


def limits(monkeypatch, note: float, give_up: float) -> None:
    """The note after `note` seconds of waiting, the error after `give_up` (60 s and 30 minutes for users)."""
    monkeypatch.setattr(distributed, "JOIN_NOTE_AFTER_S", note)
    monkeypatch.setattr(distributed, "JOIN_GIVE_UP_AFTER_S", give_up)


def arrive(store: dist.Store, ranks: list[int], world_size: int, delay: float = 0.0,
           errors: list[str] | None = None) -> list[threading.Thread]:
    """Ranks `ranks` call wait_for_everyone, each in a thread, after `delay` seconds; `errors` gets what they
    raise."""
    def one(rank: int) -> None:
        time.sleep(delay)
        try:
            distributed.wait_for_everyone(store, rank, world_size, CALLER)
        except PSPNetError as e:
            if errors is not None:
                errors.append(f"rank {rank}: {e}")

    threads = [threading.Thread(target=one, args=(rank,), daemon=True) for rank in ranks]
    for thread in threads:
        thread.start()
    return threads


def test_processes_that_all_come_go_on_without_a_word(store, monkeypatch, capsys) -> None:
    limits(monkeypatch, 5, 20)
    others = arrive(store, [1, 2, 3], 4, delay=0.1)
    distributed.wait_for_everyone(store, 0, 4, CALLER)
    for thread in others:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in others)
    assert capsys.readouterr().err == ""


def test_a_process_that_never_comes_is_named_in_a_note_then_in_the_error(store, monkeypatch, capsys) -> None:
    """Ranks 0 and 2 of 4 call it, 1 and 3 never do (a script that calls `pspnet.evaluate(shard=True)` on some
    ranks only): each waiting process says once whom it waits for, then stops with a PSPNetError naming them."""
    limits(monkeypatch, 0.3, 1.2)
    errors: list[str] = []
    [other] = arrive(store, [2], 4, errors=errors)
    start = time.monotonic()
    with pytest.raises(PSPNetError) as e:
        distributed.wait_for_everyone(store, 0, 4, CALLER)
    assert 1.2 <= time.monotonic() - start < 5
    other.join(timeout=5)
    said = (r"ranks 1, 3 \(of 4 processes\) did not join within \d+ s; every process of the job must call "
            r"pspnet\.evaluate\(shard=True\)")  # the seconds as waited: 1 here, if the machine keeps time
    assert re.fullmatch(said, str(e.value))
    assert len(errors) == 1 and re.fullmatch(f"rank 2: {said}", errors[0])
    notes = sorted(capsys.readouterr().err.splitlines())
    assert len(notes) == 2
    for rank, note in zip((0, 2), notes, strict=True):
        assert re.fullmatch(rf"note: rank {rank} has waited \d+ s for ranks 1, 3 \(of 4 processes\) to join; every "
                            r"process of the job must call pspnet\.evaluate\(shard=True\) \(giving up after 1 s\)",
                            note)


def test_a_late_process_is_waited_for_after_the_note(store, monkeypatch, capsys) -> None:
    """A process that comes after the note but before the limit: the others go on with it."""
    limits(monkeypatch, 0.3, 20)
    late = arrive(store, [1], 2, delay=0.6)
    distributed.wait_for_everyone(store, 0, 2, CALLER)
    late[0].join(timeout=5)
    assert not late[0].is_alive()
    assert capsys.readouterr().err.count("for rank 1 (of 2 processes) to join") == 1


def test_missing_ranks_are_named_in_runs():
    """A node of eight processes that has not started is one item of the line, not eight."""
    assert distributed.rank_ranges([1]) == "1"
    assert distributed.rank_ranges([1, 3]) == "1, 3"
    assert distributed.rank_ranges([0, 1, 3, 8, 9, 10, 11, 15]) == "0, 1, 3, 8-11, 15"
