"""The streaming results file of `dff test`: JSON lines, a header then one line per frame, flushed as written.

An interrupted run keeps every line it flushed. On resume, `consolidate` keeps the videos that are complete (every
frame present), drops a partial video, and rewrites the file atomically in dataset order; the videos left are then
run and appended. A distributed run streams each rank to its own part file (`<name>.rank<r>.jsonl`), which
`consolidate` merges into the main file in dataset order (like mmtracking's `collect_results_cpu`).

Each frame line is the project's one record of a frame (`FrameResult.to_record`, the JSONL of `dff detect`) with
the dataset's `video_id` and `image_id`; its floats are the shortest decimals that read back as the same float32,
so a results file holds exactly the detector's float32 outputs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO

from dff.errors import DFFError
from dff.io.atomic import atomic_path
from dff.io.result import FrameResult

log = logging.getLogger(__name__)

FORMAT = "dff-results"
VERSION = 2  # 1: columnar lines of an earlier dff (not read; run again with --overwrite)


def _line(result: FrameResult) -> str:
    if result.video_id is None or result.image_id is None:
        raise DFFError(f"frame {result.frame_index}: a results file needs each frame's video_id and image_id")
    return json.dumps(result.to_record(), separators=(",", ":"))


def make_header(**fields: object) -> dict:
    """The header line: format, version and the settings a resumed run must share (key interval, weights...)."""
    return {"format": FORMAT, "version": VERSION, **fields}


def part_path(path: Path, rank: int) -> Path:
    """The file rank `rank` streams to during a distributed run."""
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def _part_paths(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.stem}.rank*{path.suffix}"))


def _read(path: Path, header: dict) -> Iterator[FrameResult]:
    """Records of one file whose header must equal `header`; an unreadable line (a cut-off write) ends it."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
        if not first.endswith("\n"):
            return  # interrupted before the header was complete: nothing in it
        try:
            found = json.loads(first)
        except json.JSONDecodeError:
            raise DFFError(f"{path}: not a dff results file (bad header line)") from None
        if found != header:
            changed = sorted(k for k in set(found) | set(header) if found.get(k) != header.get(k))
            raise DFFError(
                f"{path}: made with different settings ({', '.join(changed)}); "
                "pass --overwrite to start again or choose another --out"
            )
        for number, line in enumerate(f, start=2):
            if not line.endswith("\n"):
                log.info("%s: dropping a cut-off last line %d", path, number)
                return
            try:
                yield FrameResult.from_record(json.loads(line))
            except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
                log.warning("%s: line %d is unreadable; dropping it and what follows", path, number)
                return


def read_records(path: Path, class_names: tuple[str, ...] = ()) -> list[FrameResult]:
    """Every frame of a finished results file, in file order, as FrameResults with `class_names` (the header is not
    checked beyond its format and version)."""
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        raise DFFError(f"{path}: not a dff results file (bad header line)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DFFError(f"{path}: not a dff results file")
    if header.get("version") != VERSION:
        raise DFFError(f"{path}: results file version {header.get('version')!r}; this dff reads {VERSION}")
    return [replace(r, class_names=tuple(class_names)) for r in _read(path, header)]


def consolidate(path: Path, header: dict, frames_per_video: Mapping[int, int]) -> set[int]:
    """Merge `path` and any part files into `path`: complete videos only, in the order of `frames_per_video`.

    frames_per_video: video id -> number of frames, in dataset order. Returns the ids of the complete videos.
    Part files are removed once merged; the main file is replaced atomically.
    """
    sources = ([path] if path.exists() else []) + _part_paths(path)
    videos: dict[int, dict[int, FrameResult]] = {}
    owner: dict[int, Path] = {}
    for source in sources:
        for r in _read(source, header):
            if owner.setdefault(r.video_id, source) == source:  # a video also complete in an earlier file is skipped
                videos.setdefault(r.video_id, {})[r.frame_index] = r
    complete = {v for v, frames in videos.items() if len(frames) == frames_per_video.get(v, -1)}
    dropped = sorted(set(videos) - complete)
    if dropped:
        log.info("%s: dropping %d incomplete video(s) %s; they will be run again", path, len(dropped), dropped)
    ordered = (videos[v][k] for v in frames_per_video if v in complete for k in sorted(videos[v]))
    _write_atomic(path, header, ordered)
    for part in _part_paths(path):
        part.unlink()
    return complete


def _write_atomic(path: Path, header: dict, records: Iterable[FrameResult]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for r in records:
            f.write(_line(r) + "\n")


def remove_results(path: Path) -> None:
    """Delete a results file and its part files (for --overwrite)."""
    for p in [path, *_part_paths(path)]:
        p.unlink(missing_ok=True)


class ResultsWriter:
    """Appends frames to a results file, one flushed line each; writes the header if the file is new (a
    `dff.io.writers.ResultWriter`)."""

    def __init__(self, path: Path, header: dict) -> None:
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        self._file: IO[str] = open(path, "a", encoding="utf-8")
        if new:
            self._file.write(json.dumps(header) + "\n")
            self._file.flush()

    def write(self, result: FrameResult) -> None:
        """Append one frame (with its video_id and image_id) and flush it to the OS."""
        self._file.write(_line(result) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
