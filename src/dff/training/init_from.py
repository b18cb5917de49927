"""`dff train --init-from`: a trained DFF's weights into a freshly built network whose class set may differ.

The source is an official mmtracking `.pth`, a zoo name (the cached file `dff.zoo` keeps; downloaded and verified
once if not cached), our `.safetensors` or a `dff train` checkpoint, read by `dff.checkpoint.read_weights` (module
names equal mmtracking's keys, so no renaming). Every tensor outside the class-dependent layers (`CLASS_LAYERS`: the
box head's `fc_cls` and `fc_reg`) must be in the file with the network's shape, else CheckpointError: the file is of
another architecture. In the class-dependent layers the rows of each class of the new set that the source also has
(matched by name) are copied from the source's row of that class, and the background row (the last of `fc_cls`,
mmdet's order) from the source's background row; the rows of a new class keep the values the fresh head drew
(`BBoxHead`'s own initialisation). The source's class names are those of the config our files save, an mmtracking
checkpoint's `meta.CLASSES`, else mmtracking's 30 VID classes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dff import checkpoint, zoo
from dff.classes import VID_CLASSES
from dff.errors import CheckpointError
from dff.models.detector import DFF

log = logging.getLogger(__name__)

HEAD = "detector.roi_head.bbox_head"
CLS, REG = f"{HEAD}.fc_cls", f"{HEAD}.fc_reg"
CLASS_LAYERS = (CLS, REG)
"""The layers with one row (fc_cls, plus the background's, last) or four rows (fc_reg) per class."""
SHOWN = 3  # tensors an architecture error names


@dataclass(frozen=True)
class InitReport:
    """What `init_from` did: tensors copied whole, and what became of each class's rows."""

    source: str  # the file read (a zoo name resolved to its cached file)
    loaded: int  # tensors outside the class-dependent layers, copied whole
    unused: tuple[str, ...]  # tensors of the file the network has no place for
    kept: tuple[str, ...]  # classes whose rows were copied to the same index
    remapped: tuple[tuple[str, int, int], ...]  # (class, source index, new index): rows copied to another index
    reinitialised: tuple[str, ...]  # classes the source lacks: rows as the fresh head drew them
    dropped: tuple[str, ...]  # source classes the new set lacks
    background: tuple[int, int]  # (source row, new row) of the background class in fc_cls

    def lines(self) -> list[str]:
        """The report as a few human-readable lines."""
        unused = f", {len(self.unused)} of the file unused ({checkpoint.short_list(list(self.unused))})"
        out = [f"init from {self.source}: {self.loaded} tensors loaded{unused if self.unused else ''}"]
        out.append(f"  classes kept (same rows): {', '.join(self.kept) or '(none)'}")
        if self.remapped:
            out.append("  classes remapped: " + ", ".join(f"{n}: {s} -> {d}" for n, s, d in self.remapped))
        out.append(f"  classes re-initialised (fresh head rows): {', '.join(self.reinitialised) or '(none)'}")
        if self.dropped:
            out.append(f"  source classes not in the new set: {checkpoint.short_list(list(self.dropped))}")
        out.append(f"  background row: {self.background[0]} -> {self.background[1]}")
        return out

    def to_dict(self) -> dict:
        """A JSON-ready dict (the `init_from` record of log.jsonl)."""
        d = asdict(self)
        d["remapped"] = [{"class": n, "from": s, "to": t} for n, s, t in self.remapped]
        return d


def read_source(weights: str | os.PathLike, preset: str) -> tuple[Path, dict[str, torch.Tensor], tuple[str, ...]]:
    """(file, state dict, class names) of an `--init-from` argument; a zoo name must be of `preset`."""
    name = os.fspath(weights)
    entry = zoo.ZOO.get(name)
    if entry is not None and entry.preset != preset:
        raise CheckpointError(f"{name}: the official {entry.preset} checkpoint, not one of preset {preset!r}")
    path, _ = zoo.resolve(name)
    state, _, classes = checkpoint.read_weights(path)
    return path, state, classes or VID_CLASSES


def _architecture_problems(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """(missing, mis-shaped) tensors: outside the class layers exact shapes; inside them the per-row shape and
    fc_cls / fc_reg agreeing on one number of classes."""
    missing, wrong = [], []
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            continue  # a BN counter, unused with the backbone's BN in eval mode
        if k not in state:
            missing.append(k)
        elif k.startswith(CLASS_LAYERS):
            if tuple(state[k].shape[1:]) != tuple(v.shape[1:]):
                wrong.append(f"{k} (file {list(state[k].shape)}, model {list(v.shape)})")
        elif tuple(state[k].shape) != tuple(v.shape):
            wrong.append(f"{k} (file {list(state[k].shape)}, model {list(v.shape)})")
    if not missing and not wrong:
        rows = {k: state[k].shape[0] for k in own if k.startswith(CLASS_LAYERS)}
        n = rows[f"{CLS}.weight"] - 1
        if rows[f"{CLS}.bias"] != n + 1 or rows[f"{REG}.weight"] != 4 * n or rows[f"{REG}.bias"] != 4 * n:
            shapes = ", ".join(f"{k[len(HEAD) + 1 :]} {r} rows" for k, r in rows.items())
            wrong.append(f"{HEAD} ({shapes}: not one number of classes)")
    return missing, wrong


def _rows(index: int, layer: str) -> slice:
    """The rows of class `index` in `layer` (fc_cls: one, fc_reg: four)."""
    per = 1 if layer == CLS else 4
    return slice(per * index, per * (index + 1))


def remap_class_rows(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], src: Sequence[str], dst: Sequence[str]
) -> dict[str, torch.Tensor]:
    """The class layers' tensors for classes `dst`: the fresh ones of `own` with the rows of every class also in
    `src` (and the background row) replaced by the source's."""
    out = {}
    index = {n: i for i, n in enumerate(src)}
    for k in own:
        if not k.startswith(CLASS_LAYERS):
            continue
        layer = CLS if k.startswith(CLS) else REG
        t = own[k].clone()
        s = state[k].to(t.dtype)
        for j, name in enumerate(dst):
            if name in index:
                t[_rows(j, layer)] = s[_rows(index[name], layer)]
        if layer == CLS:
            t[len(dst)] = s[len(src)]
        out[k] = t
    return out


def init_from(net: DFF, weights: str | os.PathLike) -> InitReport:
    """Load `weights` (file or zoo name) into `net` (freshly built) as the module docstring says; CheckpointError
    for a file of another architecture or whose class names do not match its box head."""
    cfg = net.cfg
    path, state, src = read_source(weights, cfg.name)
    own = net.state_dict()
    missing, wrong = _architecture_problems(own, state)
    if missing or wrong:
        raise CheckpointError(
            f"{path}: not a checkpoint of the {cfg.name} preset's architecture: {len(missing)} missing, "
            f"{len(wrong)} mis-shaped ({checkpoint.short_list(missing + wrong, SHOWN)})"
        )
    n_src = state[f"{CLS}.weight"].shape[0] - 1
    if len(src) != n_src:
        raise CheckpointError(f"{path}: its box head has {n_src} classes but the file names {len(src)}")
    dst = tuple(cfg.class_names)
    new = {k: state[k] if k in state else v for k, v in own.items()}
    new.update(remap_class_rows(own, state, src, dst))
    net.load_state_dict(new, strict=True)
    at = {n: i for i, n in enumerate(src)}
    return InitReport(
        source=str(path),
        loaded=sum(1 for k in own if k in state and not k.startswith(CLASS_LAYERS)),
        unused=tuple(sorted(set(state) - set(own))),
        kept=tuple(n for j, n in enumerate(dst) if at.get(n) == j),
        remapped=tuple((n, at[n], j) for j, n in enumerate(dst) if n in at and at[n] != j),
        reinitialised=tuple(n for n in dst if n not in at),
        dropped=tuple(n for n in src if n not in set(dst)),
        background=(n_src, len(dst)),
    )
