"""Training checkpoints: model, optimiser and progress, written atomically, the last K kept, loaded without pickle.

The random state needs no saving: every iteration reseeds from (seed, rank, iteration), and the data order is a
function of (seed, epoch), so the iteration count is enough to continue exactly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from pspnet.checkpoint import TRAINING_FORMAT, model_weights, unwrap
from pspnet.errors import PSPNetError
from pspnet.files import file_kind, read_torch_file, write_atomically
from pspnet.run_folder import checkpoint_path, list_checkpoints
from pspnet.train.outdir import COMMAND, RunOptions


def save_training_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, iteration: int,
    progress: dict[str, Any], keep_last: int,
) -> Path:
    """Write `iter_N.pt` atomically (a kill mid-write leaves the previous files intact), then prune to `keep_last`."""
    net = unwrap(model)
    payload = {
        "format": TRAINING_FORMAT,
        "iteration": iteration,
        "model": model_weights(net),
        "optimizer": optimizer.state_dict(),
        "progress": json.dumps(progress),
        "model_config": json.dumps(net.config.to_dict()),
        "info": json.dumps(net.info.to_dict()),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = checkpoint_path(directory, iteration)
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()))
    for old in list_checkpoints(directory)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def check_resume_file(path: Path, names: RunOptions = COMMAND, out_dir: Path | None = None) -> None:
    """What can be told of a --resume file before the run spends anything (the data check, the model): that it
    exists, is not a weights-only .safetensors file and (given the run's `out_dir`) is one of the run's checkpoints."""
    if file_kind(path) == "safetensors":
        raise PSPNetError(f"{path}: holds the weights only (no optimiser state, no iteration), so a run cannot resume "
                          f"from it; {names.resume} takes a run's checkpoints/iter_N.pt. To start a new run from these "
                          f"weights, set train.init={path}")
    own = out_dir / "checkpoints" if out_dir is not None else None
    if own is not None and path.resolve().parent != own.resolve():  # another run's: continued into this folder, the
        # two runs' checkpoints and logs would mix (or, in a new folder, a run would have no config.yaml)
        raise PSPNetError(f"{path}: not one of the checkpoints of the run in train.out_dir ({own}); {names.resume} "
                          "continues a run in its own folder (set train.out_dir to the run the checkpoint belongs "
                          f"to), and train.init={path} starts a new run from its weights")


def load_training_checkpoint(path: Path, names: RunOptions = COMMAND) -> dict[str, Any]:
    """The content of `iter_N.pt`, for --resume; any other file is an error that says what --resume takes."""
    check_resume_file(path, names)
    obj = read_torch_file(path)
    if not isinstance(obj, dict) or obj.get("format") != TRAINING_FORMAT:
        raise PSPNetError(f"{path}: not a pspnet training checkpoint (expected checkpoints/iter_N.pt written by "
                          "`pspnet train`)")
    obj["progress"] = json.loads(obj["progress"])
    obj["model_config"] = json.loads(obj["model_config"])
    return obj
