"""Model zoo: names of the official mmtracking DFF checkpoints, their URLs, and a verified download cache.

Official file names end in `-<first 8 hex digits of the file's SHA-256>.pth` (mmcv's publish_model); a download
is written to a temporary file in the cache folder, checked against that prefix and only then moved into place,
so the cache never holds a partial or corrupted file. While it runs, a tqdm progress bar (bytes, rate, time left)
is drawn on stderr when stderr is a terminal (`progress=None`, the default; True or False to force it on or off)
and stays when done; a log or a pipe gets only the log line naming the URL and the folder, not a bar's redraws.

The zoo's names are read by the command-line parsers (`dff detect --help`), so tqdm and the atomic writer are
imported when a download starts.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dff.errors import CheckpointError

log = logging.getLogger(__name__)

_BASE = "https://download.openmmlab.com/mmtracking/vid/dff"


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint: the preset it fits, its URL and its published box AP@50 on ImageNet VID."""

    preset: str
    url: str
    box_ap50: float

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _official(config: str, stamp: str) -> str:
    return f"{_BASE}/{config}/{config}_{stamp}.pth"


ZOO: dict[str, ZooEntry] = {
    "dff_r50_dc5_imagenetvid": ZooEntry(
        "r50_dc5", _official("dff_faster_rcnn_r50_dc5_1x_imagenetvid", "20201227_213250-548911a4"), 70.3
    ),
    "dff_r101_dc5_imagenetvid": ZooEntry(
        "r101_dc5", _official("dff_faster_rcnn_r101_dc5_1x_imagenetvid", "20201218_172720-ad732e17"), 73.5
    ),
    "dff_x101_dc5_imagenetvid": ZooEntry(
        "x101_dc5", _official("dff_faster_rcnn_x101_dc5_1x_imagenetvid", "20210819_095932-0a9e6cb5"), 75.5
    ),
}

CHUNK = 1 << 20


def cache_dir() -> Path:
    """`$DFF_CACHE` if set, else ~/.cache/dff."""
    env = os.environ.get("DFF_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dff"


def hash_prefix(filename: str) -> str:
    """The SHA-256 prefix in an official file name: the hex digits after the last '-' ('…-548911a4.pth')."""
    m = re.search(r"-([0-9a-fA-F]{8,64})\.[A-Za-z0-9]+$", filename)
    if not m:
        raise CheckpointError(f"{filename}: no SHA-256 prefix ('-<hex>' before the extension) in the file name")
    return m.group(1).lower()


def resolve(weights: str | os.PathLike) -> tuple[Path, str | None]:
    """A weights argument -> (local file, preset or None): an existing file as is, a zoo name downloaded if needed."""
    name = os.fspath(weights)
    entry = ZOO.get(name)
    if entry is None:
        path = Path(name).expanduser()
        if path.is_file():
            return path, None
        raise CheckpointError(f"{name}: no such file, and not a zoo name (known: {', '.join(ZOO)})")
    return download(entry.url), entry.preset


def download(url: str, cache: Path | None = None, progress: bool | None = None) -> Path:
    """The cached file for `url`, downloaded and verified against the SHA-256 prefix in its name if not cached;
    `progress`: a progress bar on stderr (None: when stderr is a terminal)."""
    from dff.io.atomic import atomic_path

    filename = url.rsplit("/", 1)[-1]
    expected = hash_prefix(filename)
    folder = cache or cache_dir()
    target = folder / filename
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"{folder}: cannot create the cache folder ({e.strerror}); set DFF_CACHE") from None
    log.info("downloading %s to %s", url, folder)
    with atomic_path(target, suffix=".part") as tmp:
        with open(tmp, "wb") as out:
            digest = _fetch(url, out, progress, folder)
        if not digest.startswith(expected):
            raise CheckpointError(
                f"{url}: downloaded file is corrupted (SHA-256 {digest[: len(expected)]}…, expected {expected}…); "
                "not cached, try again"
            )
    return target


def _fetch(url: str, out: BinaryIO, progress: bool | None, folder: Path) -> str:
    """Stream `url` into the open file `out`; returns the hex SHA-256 of what was received."""
    from tqdm import tqdm

    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=None if progress is None else not progress,  # None: tqdm's "stderr is not a terminal"
                desc=url.rsplit("/", 1)[-1],
                leave=True,  # the finished bar stays: size, time and rate of the one download
            ) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise CheckpointError(f"{url}: download failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise CheckpointError(
            f"{url}: cannot download ({e.reason}); are you offline? Download the file on a connected machine and "
            f"pass its path to --weights, or copy it into {folder}"
        ) from None
    except (OSError, http.client.HTTPException) as e:  # connection reset, timeout, IncompleteRead
        raise CheckpointError(f"{url}: download interrupted ({type(e).__name__}: {e}); not cached, try again") from None
    if total is not None and received != total:
        raise CheckpointError(f"{url}: download interrupted after {received} of {total} bytes; not cached, try again")
    return sha.hexdigest()
