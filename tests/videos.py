"""Small H.264 videos for the tests (PyAV; a test that needs one is skipped without it)."""

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest


def write_video(path: Path, frames: Iterable[np.ndarray], rate: int = 5, container: str | None = None) -> Path:
    """An H.264 video (MP4 unless `container` names another format) of RGB uint8 H×W×3 frames, all of one size (even
    sides, as yuv420p needs)."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w", format=container) as c:
        stream = None
        for frame in frames:
            if stream is None:
                stream = c.add_stream("libx264", rate=rate)
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return path
