"""Resumable HTTP(S) downloads: `.part` files continued with Range requests, progress bar, sha256, atomic rename."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pspnet.errors import PSPNetError
from pspnet.progress import progress_bar

CHUNK = 1 << 20
TIMEOUT_S = 60


class UnreachableError(PSPNetError):
    """No connection to the server (no network, a wrong host, a firewall)."""


class NotFoundError(PSPNetError):
    """The server answered 404/410: the file is not there (callers may treat it as optional)."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, sha256: str | None, url: str) -> None:
    """`sha256`: the whole hex digest, or its first characters (torch hub file names carry the first 8)."""
    if sha256 is None:
        return
    got = file_digest(path)
    if not got.startswith(sha256.lower()):
        path.unlink()
        raise PSPNetError(f"{url}: downloaded file has sha256 {got}, expected {sha256}{'…' if len(sha256) < 64 else ''}"
                          "; deleted it — run again, or check that the source serves the right file")


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `lock` (created if missing) while the block runs: the processes of one
    `torchrun` (or several runs sharing a cache) download a file once, one after the other, not into one `.part`."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def download(url: str, dest: Path, sha256: str | None = None, progress: bool = True) -> Path:
    """Fetch `url` to `dest` and return `dest`. An existing `dest` is kept (and checked when `sha256` is given).

    Bytes go to `dest.part` first; an interrupted download continues from there on the next call (Range request;
    a server that ignores Range makes it start over). `dest` appears only when complete and verified. Processes that
    ask for the same `dest` at once take turns (a lock file beside it): the first downloads, the others find it."""
    dest = Path(dest)
    if dest.exists():
        _verify(dest, sha256, str(dest))
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest.with_name(dest.name + ".lock")):
        if dest.exists():  # another process finished it while this one waited
            return dest
        return _fetch(url, dest, sha256, progress)


def _fetch(url: str, dest: Path, sha256: str | None, progress: bool) -> Path:
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "pspnet"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is complete
            response = None
        elif e.code in (404, 410):
            raise NotFoundError(f"{url}: not found on the server (HTTP {e.code})") from None
        else:
            raise PSPNetError(f"{url}: the server answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise UnreachableError(f"{url}: cannot download ({reason}); check the address and your connection, then run "
                          "again (finished bytes are kept)") from None
    if response is not None:
        with response:
            if have and response.status != 206:
                have = 0  # the server sent the whole file
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with open(part, "ab" if have else "wb") as f, progress_bar(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                disable=not progress, leave=False,
            ) as bar:
                try:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                except OSError as e:
                    raise PSPNetError(f"{url}: download interrupted ({e}); run again to resume from "
                                      f"{part.stat().st_size} bytes") from None
            if total is not None and part.stat().st_size != total:
                raise PSPNetError(f"{url}: got {part.stat().st_size} of {total} bytes; run again to resume")
    _verify(part, sha256, url)
    os.replace(part, dest)
    return dest
