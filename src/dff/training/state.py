"""Resumable training state: model, optimizer, AMP scaler, position in the data, and every RNG.

The file is a plain `torch.save` of tensors, numbers, strings, lists and dicts only, so it loads with
`torch.load(weights_only=True)`. It is written to a temporary file in the same folder and moved into place
with `os.replace`, so a crash never leaves a half-written or overwritten last good checkpoint.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from dff.checkpoint import TRAIN_FORMAT as FORMAT
from dff.checkpoint import config_from_json
from dff.config import DFFConfig
from dff.errors import CheckpointError
from dff.io.atomic import atomic_path


@dataclass
class Progress:
    """Where training stands: `iter_in_epoch` batches of `epoch` (0-based) are done, `global_iter` in total."""

    epoch: int = 0
    iter_in_epoch: int = 0
    global_iter: int = 0


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _KeepsWriteErrors:
    """A binary file that keeps the OS error of a failed write: torch.save reports one as a RuntimeError
    ("enforce fail at inline_container.cc"), and this lets the caller raise the OSError itself (a full disk)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as e:
            self.error = e
            raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file next to `path`, then os.replace it into place; a failed write (a full disk)
    raises its OSError under `path`'s name and leaves `path` as it was."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        out = _KeepsWriteErrors(f)
        try:
            torch.save(obj, out)
        except RuntimeError:
            if out.error is None:
                raise
            raise out.error from None


def save_state(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    progress: Progress,
    cfg: DFFConfig,
    run: dict[str, Any],
    rng: dict[str, Any],
) -> None:
    """Write a resumable checkpoint atomically; `run` holds the settings a resume must match (seed, batch...)."""
    atomic_torch_save(
        {
            "format": FORMAT,
            "preset": cfg.name,
            "config": json.dumps(cfg.to_dict()),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "progress": asdict(progress),
            "run": json.dumps(run),
            "rng": rng,
        },
        path,
    )


def load_state(path: Path, preset: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_state` for `preset`; CheckpointError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, not a torch file at all
        raise CheckpointError(f"{path}: unreadable training checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a 'dff train' checkpoint (model-only files cannot be resumed)")
    if state["preset"] != preset:
        raise CheckpointError(f"{path}: checkpoint is for preset {state['preset']!r}, not {preset!r}")
    state["config"] = config_from_json(state["config"], path, "run config")
    state["progress"] = Progress(**state["progress"])
    state["run"] = json.loads(state["run"])
    return state
