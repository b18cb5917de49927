"""Reading mmtracking `.pth` checkpoints safely and saving/loading our safetensors format.

`.pth` files are opened with `torch.load(weights_only=True)`: a pickle that would run code is refused.
Our format is one `.safetensors` file whose metadata holds a small JSON (format, version, preset, config, classes).
Weights holding NaN or Inf are refused at load, naming the first such tensor.

Spec pitfalls handled here: 22 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as save_bytes
from torch import nn

from dff.config import DFFConfig
from dff.errors import CheckpointError, DFFError
from dff.io.atomic import atomic_path

FORMAT = "deep-feature-flow"
SHOWN_KEYS = 5  # an error lists this many keys of a kind, then how many more there are


def short_list(items: list[str], shown: int = SHOWN_KEYS) -> str:
    """'a, b, c' or, for a long list, its first `shown` items and '... and N more'."""
    if len(items) <= shown:
        return ", ".join(items)
    return f"{', '.join(items[:shown])} ... and {len(items) - shown} more"


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise CheckpointError naming the first floating-point tensor that holds a NaN or an Inf."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        kind = "NaN" if bool(torch.isnan(state[bad[0]]).any()) else "Inf"
        raise CheckpointError(
            f"{path}: weights hold non-finite values ({kind} in {bad[0]}"
            f"{f' and {len(bad) - 1} other tensor(s)' if len(bad) > 1 else ''}); the file is damaged"
        )


def is_safetensors(path: Path) -> bool:
    """True if the file parses as a safetensors header."""
    try:
        with safe_open(str(path), framework="pt"):
            return True
    except (SafetensorError, OSError, ValueError):
        return False


def read_pth(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """An mmcv/mmtracking checkpoint -> (state_dict, meta); plain state dicts are accepted too."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported pickled object"
        raise CheckpointError(
            f"{path}: refusing to load: the file contains pickled objects that could run code ({first})"
        ) from None
    except Exception as e:  # zip/pickle/EOF errors of a file that is not a checkpoint at all
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or safetensors file ({type(e).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, meta = obj["state_dict"], obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = obj, {}
    else:
        raise CheckpointError(f"{path}: a PyTorch file but not a checkpoint (no 'state_dict' of tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    check_finite(state, path)
    return state, meta if isinstance(meta, dict) else {}


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], DFFConfig]:
    """Our format -> (state_dict, config)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    if meta.get("format") != FORMAT or "config" not in meta:
        raise CheckpointError(f"{path}: a safetensors file but not a deep-feature-flow model (no 'config' metadata)")
    try:
        cfg = DFFConfig.from_dict(json.loads(meta["config"]))
    except (TypeError, ValueError, DFFError) as e:
        raise CheckpointError(f"{path}: corrupt config metadata ({e})") from None
    check_finite(state, path)
    return state, cfg


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise CheckpointError naming the missing, unexpected and mis-shaped keys (the first few of each, and a count)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} (file {list(state[k].shape)}, model {list(expected[k].shape)})"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {short_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {short_list(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} mis-shaped: {short_list(wrong)}")
    if problems:
        raise CheckpointError(f"{path}: weights do not fit the model: " + "; ".join(problems))


def save(
    model: nn.Module, cfg: DFFConfig, path: str | os.PathLike, version: str, dtype: torch.dtype | None = None
) -> None:
    """Write the model's state dict and config to `path` (.safetensors) atomically; `dtype` (e.g. torch.float16,
    half the size) stores the floating-point tensors in that type, which loading casts back to the model's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {
        "format": FORMAT,
        "version": version,
        "preset": cfg.name,
        "class_names": json.dumps(list(cfg.class_names)),
        "config": json.dumps(cfg.to_dict()),
    }
    data = save_bytes(tensors, metadata=meta)  # written by Python, so that a full disk is an OSError naming `path`
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
