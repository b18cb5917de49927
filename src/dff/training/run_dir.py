"""The run folder of `dff train --out RUN`: refusing a folder that is, contains or sits inside one of the run's
inputs, refusing to mix two runs, removing an old one on request, and keeping `log.jsonl` free of iterations a
resume replays.

The input rules (`check_out_folder`), each one line naming `--out`, the input and the option that named it:
- `--out` may not be an input: a file (`--ann`, `--det-ann`, `--init-from`, `--backbone-weights`,
  `--flownet-weights`) or a folder of the training images (under `--data-root`);
- `--out` may not contain an input: `--overwrite` would delete a run's files there, and the run's files would mix
  with the data (`--out DATA_ROOT` contains its `Data/VID/...` image folders);
- `--out` may not sit inside a folder of the training images (the run would be written into the data set).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from dff.errors import DFFError, OutputError
from dff.io.atomic import write_text_atomic

log = logging.getLogger(__name__)

LOG_NAME = "log.jsonl"
RUN_FILES = ("latest.pth", LOG_NAME, "model.safetensors")


def run_files(out: Path) -> list[Path]:
    """The files of a training run in `out`: epoch_*.pth, latest.pth, log.jsonl, model.safetensors."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(out.glob("epoch_*.pth")) + [out / n for n in RUN_FILES if (out / n).is_file()]


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def check_out_folder(out: Path, inputs: Iterable[tuple[str, str | os.PathLike]]) -> None:
    """Raise OutputError if the run folder `out` is, contains or sits inside one of `inputs`, given as (the option
    that names it, its path): files the run reads and folders of its training images."""
    target = _resolved(out)
    above = set(target.parents)
    for option, path in inputs:
        source = _resolved(path)
        if source == target:
            raise OutputError(f"{out}: --out is the input {path} ({option}); choose another folder for the run")
        if target in source.parents:
            raise OutputError(
                f"{out}: --out contains the input {path} ({option}); choose a folder for the run outside it"
            )
        if source in above:
            raise OutputError(
                f"{out}: --out sits inside the input folder {path} ({option}); choose a folder for the run "
                "outside the data set"
            )


def _names(found: list[Path]) -> str:
    return ", ".join(p.name for p in found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds a run unless resuming it or told to overwrite it."""
    found = run_files(out)
    if found and not resume and not overwrite:
        raise DFFError(
            f"{out}: already holds a training run ({_names(found)}); continue it with --resume, "
            "or start again with --overwrite (which deletes it), or choose another --out"
        )


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """`check_run_dir`, then `overwrite` (without `resume`) removes the run the folder holds."""
    check_run_dir(out, resume, overwrite)
    found = run_files(out)
    if not found or resume:
        return
    names = _names(found)
    for path in found:
        path.unlink(missing_ok=True)
    log.info("--overwrite: removed the previous run's %s from %s", names, out)


def trim_log(out: Path, global_iter: int) -> None:
    """Drop the records of `out/log.jsonl` after `global_iter` (logged after the checkpoint a resume starts from,
    so they would be logged twice) and any line cut short by a crash."""
    path = Path(out) / LOG_NAME
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if isinstance(record, dict) and record.get("global_iter", 0) > global_iter:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_text_atomic(path, "".join(f"{line}\n" for line in kept))
        log.info("%s: dropped %d record(s) after iteration %d that the resume replays", path, dropped, global_iter)
