"""`dff detect --inputs`: the detection pipeline over a whole collection of videos, sharded by torchrun, resumable.

Every video gets its own folder `DIR/<name>/` (`output_name`: the file's stem plus a hash of its absolute path, so
two `clip.mp4` in different folders never collide) holding the outputs `Outputs.in_folder` names (`detections.jsonl`
always; on request `detections.mp4`, `coco_results.json`, `tracks.txt`, `flow/`) and, once it is finished,
`done.json`, its record, written atomically. Under torchrun rank 0 decides which videos are still to run (a video is
complete when its record says ok, was made with the same settings — the weights file's SHA-256 among them — and its
files exist) and spreads them over the ranks by frame count (`assign`); each rank runs only its own; at the end
rank 0 writes `DIR/index.jsonl` from every video's record. Rank 0 holds a lock on DIR for the whole run, so a second
run into the same folder is refused at once instead of racing the first one's files.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import statistics
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import av
import torch.distributed as dist
from tqdm import tqdm

from dff.api import DFFModel
from dff.distributed import current
from dff.errors import DFFError, InputError, OutputError
from dff.io.atomic import write_json_atomic, write_text_atomic
from dff.io.sources import IMAGE_SUFFIXES, natural_key, open_source
from dff.io.writers import Outputs
from dff.pipeline import DetectOptions, StopOnInterrupt, detect_source
from dff.run import RunOptions

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".avi", ".webm", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv")
RECORD = "done.json"
INDEX = "index.jsonl"
LOCK = ".dff-collection.lock"


@dataclass(frozen=True)
class CollectionOptions:
    """What a collection writes for every video (the JSONL always, plus `save`: kinds of `Outputs`), the detection
    options shared by all of them, the frame rate of frame folders, and the settings recorded with each result."""

    save: tuple[str, ...] = ()  # extra outputs per video: "video", "coco", "mot", "flow"
    detect: DetectOptions = field(default_factory=DetectOptions)
    fps: float | None = None  # frame rate of frame folders, or override of the videos' own
    settings: Mapping[str, object] = field(default_factory=dict)  # what made the outputs (weights and their hash...)

    def outputs(self, folder: Path) -> Outputs:
        """The outputs of one video, in its folder."""
        return Outputs.in_folder(folder, ("json", *self.save))

    def files(self) -> list[str]:
        """The outputs every finished video must have, relative to its folder."""
        return [Outputs.IN_FOLDER[k] for k in ("json", *self.save)]


@dataclass
class VideoRecord:
    """One line of `index.jsonl`: a video, its folder (relative to DIR) and how its run went."""

    video: str
    out: str
    status: str  # ok, failed, or pending (not run: the run was stopped first)
    frames: int = 0
    key_frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    rank: int | None = None  # the process that ran it
    skipped: bool = False  # complete before this run (not written to the index)


@dataclass(frozen=True)
class CollectionResult:
    """Every video's record in input order, the path of the index, and whether the run was stopped early."""

    records: list[VideoRecord]
    index: Path
    interrupted: bool = False
    terminated: bool = False

    @property
    def failed(self) -> list[VideoRecord]:
        return [r for r in self.records if r.status == "failed"]

    def describe(self) -> str:
        """The final summary line."""
        n = len(self.records)
        ok = sum(r.status == "ok" for r in self.records)
        skipped = sum(r.skipped for r in self.records)
        pending = sum(r.status == "pending" for r in self.records)
        ran = [r for r in self.records if not r.skipped]
        frames, keys = sum(r.frames for r in ran), sum(r.key_frames for r in ran)
        stopped = f", {pending} not run (interrupted)" if pending else ""
        return (
            f"{n} video{'s' * (n != 1)}: {ok} ok ({skipped} already done), {len(self.failed)} failed{stopped}; "
            f"{frames} frames ({keys} key frames) run now; index: {self.index}"
        )


def list_inputs(spec: str | os.PathLike) -> list[str]:
    """The sources named by `spec`: a text file (one source per line; blank lines and lines starting with `#`
    skipped; relative paths from the file's folder), a folder (its video files, recursively, in natural order), a
    glob (its matches, sorted) or one video file."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return [str(path)]
    if path.is_file():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, ValueError):
            raise InputError(f"{path}: --inputs is not a text list of sources (one per line)") from None
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        sources = [_from_list(e, path.parent) for e in entries]
        if not sources:
            raise InputError(f"{path}: the list names no source")
        return sources
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        if not found:
            raise InputError(f"{path}: folder has no videos ({', '.join(VIDEO_SUFFIXES)})")
        return [str(p) for p in sorted(found, key=lambda p: [natural_key(Path(part)) for part in p.parts])]
    if glob.has_magic(text):
        matches = sorted(glob.glob(os.path.expanduser(text), recursive=True))
        if not matches:
            raise InputError(f"{text}: pattern matches nothing")
        return matches
    raise InputError(f"{text}: --inputs is no list file, folder or pattern")


def _from_list(entry: str, folder: Path) -> str:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", entry):
        return entry
    p = Path(entry).expanduser()
    return str(p if p.is_absolute() else folder / p)


def output_name(source: str) -> str:
    """`<stem>-<10 hex digits of the SHA-1 of the absolute path or URL>`: stable across runs and lists, unique."""
    is_url = "://" in source
    key = source if is_url else str(Path(source).expanduser().resolve())
    stem = Path(source.rstrip("/")).stem or "source"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "source"
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def probe(source: str, fps: float | None = None) -> tuple[float | None, int | None]:
    """(frames the container declares, or duration x frame rate; None if it says neither, file size or None)."""
    if "://" in source:
        return None, None
    path = Path(source).expanduser()
    if path.is_dir():
        return float(sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)), None
    size = path.stat().st_size if path.is_file() else None
    if size is None:
        return None, None
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            if s.frames:
                return float(s.frames), size
            rate = fps or (float(s.average_rate) if s.average_rate else None)
            duration = float(s.duration * s.time_base) if s.duration and s.time_base else None
            duration = duration or (c.duration / 1e6 if c.duration else None)
            return (duration * rate if duration and rate else None), size
    except (av.error.FFmpegError, IndexError, OSError):
        return None, size


def video_weights(sources: Sequence[str], fps: float | None = None, max_frames: int | None = None) -> list[float]:
    """Each video's expected frames (declared, from its duration, or from its file size at the collection's
    median bytes per frame; 1 when nothing is known), capped at `max_frames`."""
    probes = [probe(s, fps) for s in sources]
    per_frame = [size / frames for frames, size in probes if frames and size]
    bytes_per_frame = statistics.median(per_frame) if per_frame else None
    weights = []
    for frames, size in probes:
        if not frames:
            frames = size / bytes_per_frame if size and bytes_per_frame else float(size or 1)
        weights.append(min(frames, max_frames) if max_frames is not None else frames)
    return weights


def assign(weights: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of whole videos per rank, balanced by weight (largest first to the least loaded rank), each rank's
    in input order."""
    load = [0.0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        shares[rank].append(i)
        load[rank] += weights[i]
    return [sorted(s) for s in shares]


def read_record(folder: Path) -> dict | None:
    """A video folder's `done.json`, or None when it is missing or unreadable."""
    try:
        return json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, opts: CollectionOptions) -> bool:
    """Whether the video's record says ok, was made with the same settings and every output it needs exists."""
    record = read_record(folder)
    if record is None or record.get("status") != "ok" or record.get("settings") != json_safe(opts.settings):
        return False
    return all((folder / f).exists() for f in opts.files())


def json_safe(obj: object) -> object:
    """`obj` as it reads back from JSON (tuples as lists), so that stored settings compare equal."""
    return json.loads(json.dumps(obj))


def _clear(folder: Path, opts: CollectionOptions) -> None:
    """Remove a partial run's record, outputs and temporary files before the video is run again."""
    (folder / RECORD).unlink(missing_ok=True)
    for p in folder.glob(".*.tmp*"):
        p.unlink(missing_ok=True)
    if "flow" in opts.save and (folder / Outputs.IN_FOLDER["flow"]).is_dir():
        shutil.rmtree(folder / Outputs.IN_FOLDER["flow"])


def run_video(
    model: DFFModel, source: str, folder: Path, opts: CollectionOptions, run: RunOptions
) -> tuple[VideoRecord | None, bool]:
    """Detect in one video into `folder`; returns its record, or None and whether SIGTERM (else Ctrl-C) stopped it
    (then no record is written, so the next run redoes it). Errors of the video itself make a failed record."""
    folder.mkdir(parents=True, exist_ok=True)
    _clear(folder, opts)
    start = time.perf_counter()
    record = VideoRecord(video=source, out=folder.name, status="ok", rank=current()[0])
    try:
        with open_source(source, fps=opts.fps) as src:
            detect = replace(opts.detect, keep_bar=False)
            summary = detect_source(model, src, opts.outputs(folder), detect, run)
    except DFFError as e:
        record.status, record.error = "failed", str(e).splitlines()[0] if str(e) else type(e).__name__
        log.debug("failed: %s", record.error)
    else:
        if summary.interrupted:
            return None, summary.terminated
        record.frames, record.key_frames = summary.frames, summary.key_frames
    record.seconds = round(time.perf_counter() - start, 3)
    write_json_atomic({**asdict(record), "settings": json_safe(opts.settings)}, folder / RECORD)
    return record, False


def _record_of(source: str, folder: Path) -> VideoRecord:
    r = read_record(folder)
    if r is None:
        return VideoRecord(video=source, out=folder.name, status="pending")
    fields = ("frames", "key_frames", "seconds", "error", "rank")
    return VideoRecord(video=source, out=folder.name, status=r["status"], skipped=True, **{k: r[k] for k in fields})


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (what a result was made from, recorded with it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (a lock file in it); OutputError at once when another run holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OutputError(
                f"{folder}: in use by another dff detect run ({holder}); wait for it or use another --out-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)


def detect_collection(
    model: DFFModel,
    inputs: Sequence[str],
    out_dir: str | os.PathLike,
    opts: CollectionOptions,
    run: RunOptions | None = None,
) -> CollectionResult:
    """Run `model` over every source in `inputs` not yet complete in `out_dir`; the outputs of video `s` go to
    `out_dir / output_name(s)`. Call on every rank of an initialised process group (or without one): rank 0
    plans (holding `out_dir`'s lock), each rank runs its share, rank 0 writes `index.jsonl`. Returns every video's
    record in input order on rank 0; the other ranks get the records of the videos run in this session, by every
    rank."""
    rank, _ = current()
    with folder_lock(Path(out_dir)) if rank == 0 else nullcontext():
        return _detect_collection(model, inputs, Path(out_dir), opts, run or RunOptions())


def _detect_collection(
    model: DFFModel, inputs: Sequence[str], out: Path, opts: CollectionOptions, run: RunOptions
) -> CollectionResult:
    rank, world = current()
    names = [output_name(s) for s in inputs]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        first = [s for s, n in zip(inputs, names, strict=True) if n in clash][:2]
        raise InputError(f"{first[0]}: listed twice in the inputs (also as {first[1]})")
    plan: list = [None]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        todo = [i for i, n in enumerate(names) if not is_complete(out / n, opts)]
        if len(todo) < len(names):
            log.info("%s: %d of %d videos already done", out, len(names) - len(todo), len(names))
        weights = video_weights([inputs[i] for i in todo], opts.fps, opts.detect.max_frames)
        plan = [[[todo[j] for j in share] for share in assign(weights, world)]]
    if world > 1:
        dist.broadcast_object_list(plan, src=0)
    mine = plan[0][rank]
    records: dict[int, VideoRecord] = {}
    stopped: bool | None = None  # None: not stopped; else whether by SIGTERM
    bar = tqdm(
        total=len(mine),
        unit="video",
        desc=f"rank {rank}/{world}" if world > 1 else "videos",
        disable=not opts.detect.progress,
        dynamic_ncols=True,
    )
    with bar, StopOnInterrupt() as stop:  # a signal between two videos: no next video
        for i in mine:
            if stop.requested:
                stopped = stop.signum == signal.SIGTERM
                break
            record, terminated = run_video(model, inputs[i], out / names[i], opts, run)
            if record is None:
                stopped = terminated
                break
            records[i] = record
            bar.update(1)
    gathered = [(records, stopped)]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, (records, stopped))
    done = {i: r for part, _ in gathered for i, r in part.items()}
    stops = [s for _, s in gathered if s is not None]
    index = out / INDEX
    if rank != 0:
        return CollectionResult([done[i] for i in sorted(done)], index, bool(stops), any(stops))
    result = [done.get(i) or _record_of(s, out / n) for i, (s, n) in enumerate(zip(inputs, names, strict=True))]
    lines = [json.dumps({k: v for k, v in asdict(r).items() if k != "skipped"}) + "\n" for r in result]
    write_text_atomic(index, "".join(lines))
    return CollectionResult(result, index, bool(stops), any(stops))
