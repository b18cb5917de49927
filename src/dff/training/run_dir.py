"""The run folder of `dff train --out RUN`: refusing to mix two runs, removing an old one on request, and keeping
`log.jsonl` free of iterations a resume replays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from dff.errors import DFFError
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


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds a run unless resuming it or told to overwrite it; `overwrite` removes that run."""
    found = run_files(out)
    if not found or resume:
        return
    names = ", ".join(p.name for p in found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    if not overwrite:
        raise DFFError(
            f"{out}: already holds a training run ({names}); continue it with --resume, "
            "or start again with --overwrite (which deletes it), or choose another --out"
        )
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
