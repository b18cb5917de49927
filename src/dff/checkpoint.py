"""Reading every weights file the project takes, safely, and saving our safetensors format.

`read_model` (what `dff.load` and every `--weights` use) reads any of: our `.safetensors` (metadata: format,
version, preset, config, classes), a `dff train` checkpoint (`latest.pth`, `epoch_K.pth`: the model's weights and
the run's config, classes included) or an mmtracking `.pth` (or a plain state dict; the architecture is the
caller's preset). `.pth` files are opened with `torch.load(weights_only=True)`: a pickle that would run code is
refused. A config read from a file is checked against `DFFConfig.from_dict`'s schema, a state dict must map names
to tensors, and weights holding NaN or Inf are refused, each as one line naming the file.

Spec pitfalls handled here: 22 (docs/pitfalls.md maps each to its code and tests).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as save_bytes
from torch import nn

from dff.config import DFFConfig
from dff.config import preset as get_preset
from dff.errors import CheckpointError, DFFError
from dff.io.atomic import atomic_path

FORMAT = "deep-feature-flow"
TRAIN_FORMAT = "deep-feature-flow-train-state"
"""The `format` of a `dff train` checkpoint (dff.training.state writes it)."""
DEFAULT_PRESET = "r50_dc5"  # the architecture of an mmtracking .pth when the caller names none
CLS_WEIGHT = "detector.roi_head.bbox_head.fc_cls.weight"  # one row per class, and the background's
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


class Weights(NamedTuple):
    """What a weights file holds: its state dict, the config saved with it (None for an mmtracking `.pth`, whose
    architecture is the caller's preset) and the class names it records (None: none recorded)."""

    state: dict[str, torch.Tensor]
    config: DFFConfig | None
    class_names: tuple[str, ...] | None


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported pickled object"
        raise CheckpointError(
            f"{path}: refusing to load: the file contains pickled objects that could run code ({first})"
        ) from None
    except Exception as e:  # zip/pickle/EOF errors of a file that is not a checkpoint at all
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or safetensors file ({type(e).__name__})") from None


def _tensors(state: dict, path: Path, where: str) -> dict[str, torch.Tensor]:
    """`state` if it maps names to tensors, else CheckpointError naming the first entry that does not."""
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(
                f"{path}: {where} entry {str(k)[:80]!r} is {type(v).__name__}, not a tensor; the file is damaged"
            )
    return state


def config_from_json(text: object, path: Path, where: str) -> DFFConfig:
    """The DFFConfig a file stores as JSON text under `where`, checked against the schema; CheckpointError else."""
    try:
        d = json.loads(text) if isinstance(text, str) else text
        return DFFConfig.from_dict(d)
    except (json.JSONDecodeError, TypeError, DFFError) as e:
        raise CheckpointError(f"{path}: corrupt {where} ({e})") from None


def is_train_checkpoint(obj: object) -> bool:
    """True for what `torch.load` gives of a `dff train` checkpoint."""
    return isinstance(obj, dict) and obj.get("format") == TRAIN_FORMAT


def _mmtracking(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    if is_train_checkpoint(obj):
        raise CheckpointError(f"{path}: a 'dff train' checkpoint, not a state dict file")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state, meta = _tensors(obj["state_dict"], path, "state_dict"), obj.get("meta") or {}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, meta = _tensors(obj, path, "state dict"), {}
    else:
        raise CheckpointError(f"{path}: a PyTorch file but not a checkpoint (no 'state_dict' of tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    check_finite(state, path)
    return state, meta if isinstance(meta, dict) else {}


def read_pth(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """An mmcv/mmtracking checkpoint -> (state_dict, meta); plain state dicts are accepted too."""
    return _mmtracking(_torch_load(path), path)


def _train_checkpoint(obj: dict, path: Path) -> Weights:
    """The model of a `dff train` checkpoint (dff.training.state's format) and the run's config."""
    cfg = config_from_json(obj.get("config"), path, "run config")
    model = obj.get("model")
    if not isinstance(model, dict) or not model:
        raise CheckpointError(f"{path}: a 'dff train' checkpoint without the model's weights; the file is damaged")
    state = _tensors(model, path, "model")
    check_finite(state, path)
    return Weights(state, cfg, cfg.class_names)


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
    cfg = config_from_json(meta["config"], path, "config metadata")
    check_finite(state, path)
    return state, cfg


def read_weights(path: Path) -> Weights:
    """Any weights file: our `.safetensors`, a `dff train` checkpoint or an mmtracking `.pth` (plain state dicts
    too); CheckpointError (one line naming the file) for anything else or anything damaged, a saved config
    included (the schema, and one class name per classifier row)."""
    path = Path(path)
    if is_safetensors(path):
        state, cfg = read_safetensors(path)
        check_class_count(state, cfg, path)
        return Weights(state, cfg, cfg.class_names)
    obj = _torch_load(path)
    if is_train_checkpoint(obj):
        weights = _train_checkpoint(obj, path)
        check_class_count(weights.state, weights.config, path)
        return weights
    state, meta = _mmtracking(obj, path)
    classes = meta.get("CLASSES")
    if classes is not None and not isinstance(classes, (list, tuple)):
        raise CheckpointError(f"{path}: meta CLASSES is {type(classes).__name__}, not a list of class names")
    return Weights(state, None, None if classes is None else tuple(str(c) for c in classes))


def check_class_count(state: dict[str, torch.Tensor], cfg: DFFConfig, path: Path) -> None:
    """A saved config must name one class per row of the box head's classifier (its background row aside)."""
    rows = state.get(CLS_WEIGHT)
    if rows is not None and rows.dim() >= 1 and rows.shape[0] - 1 != cfg.num_classes:
        raise CheckpointError(
            f"{path}: config field class_names names {cfg.num_classes} classes, but the weights have "
            f"{rows.shape[0] - 1} ({CLS_WEIGHT} rows, background aside)"
        )


def read_model(path: Path, preset: DFFConfig | None = None) -> tuple[dict[str, torch.Tensor], DFFConfig]:
    """(state dict, config) of any weights file (see `read_weights`). A file that saved its config (ours, a
    `dff train` checkpoint) is loaded with it, and a `preset` of another name is an error; an mmtracking `.pth`
    takes `preset` (default r50_dc5) with the class names of its meta if there are as many."""
    path = Path(path)
    state, saved, classes = read_weights(path)
    if saved is not None:
        if preset is not None and preset.name != saved.name:
            raise CheckpointError(f"{path}: saved for preset {saved.name!r}, not {preset.name!r}")
        return state, saved
    cfg = preset or get_preset(DEFAULT_PRESET)
    if classes is not None and len(classes) == cfg.num_classes and classes != cfg.class_names:
        cfg = replace(cfg, class_names=classes)
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
