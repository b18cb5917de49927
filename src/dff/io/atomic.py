"""Writing an output file: a regular file atomically, a device, FIFO or /dev/stdout as a stream.

:class:`OutputFile` is the one primitive every writer of the project uses; :func:`atomic_path`,
:func:`atomic_open`, :func:`write_text_atomic` and :func:`write_json_atomic` are its context-manager forms.

- A regular file (or a new one) is written to a temporary file beside it (``.NAME.XXXXXXXX.tmp.EXT``), which
  replaces it (mode 0644) on ``commit()``: a reader never sees a half-written file, and a failed or interrupted
  write (``discard()``) leaves the previous file untouched.
- A *stream* (:func:`is_stream`: a character or block device, a FIFO, a socket, /dev/stdout, /dev/stderr,
  /dev/fd/N or /proc/.../fd/N, also through symlinks) is never renamed over, truncated or replaced:
  ``open()`` writes into it directly (text appears as it is written: a FIFO's reader sees each JSONL line as it
  comes), and what is written by name (``name``: writers that need a file name or a seekable file, e.g. the mp4
  muxer, matplotlib, torch.save) goes to a temporary file in the system's temporary folder that is copied into
  the stream on ``commit()``.

An OS error while writing (a full disk) is re-raised under the target's name, not the temporary file's.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dff.errors import OutputError

_STREAM_PATHS = ("/dev/stdout", "/dev/stderr", "/dev/stdin")
_STREAM_FOLDERS = ("/dev/fd", "/proc")


def _names_a_stream(path: Path) -> bool:
    """True for /dev/stdout and the like by name, also where such a name is reached through symlinks."""
    seen = 0
    while seen < 40:  # the kernel's own limit on symlinks followed
        absolute = Path(os.path.abspath(path))
        text = absolute.as_posix()
        if text in _STREAM_PATHS or any(text.startswith(f"{folder}/") for folder in _STREAM_FOLDERS):
            return True
        if not absolute.is_symlink():
            return False
        path = absolute.parent / os.readlink(absolute)
        seen += 1
    return False


def is_stream(path: str | os.PathLike) -> bool:
    """True when `path` must be written to as a stream, never replaced: a character or block device, a FIFO or a
    socket (also through symlinks), or a process's own file descriptor (/dev/stdout, /dev/fd/N, /proc/self/fd/N;
    these may lead to a regular file that the shell opened, which must be appended to, not replaced)."""
    path = Path(path)
    if _names_a_stream(path):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _named(error: OSError, path: Path) -> OSError:
    """`error` under the output's own name (not its temporary one), e.g. ENOSPC while writing it."""
    return OSError(error.errno, error.strerror or str(error), str(path))


class OutputFile:
    """One output file being written; see the module docstring for regular files versus streams.

    Write either through ``open(mode)`` (the temporary file, or the stream itself) or by name through ``name``
    (a temporary file either way), then ``commit()`` (or ``discard()`` on failure). `suffix` ends the temporary
    file's name (default ``.tmp`` plus the target's extension, so that writers that choose a format from the
    extension see the right one); `make_parents` False refuses a missing folder (OutputError) instead of making it.
    """

    def __init__(self, path: str | os.PathLike, suffix: str | None = None, make_parents: bool = True) -> None:
        self.path = Path(path)
        self.stream = is_stream(self.path)
        self._suffix = suffix if suffix is not None else f".tmp{self.path.suffix}"
        self._tmp: Path | None = None
        if self.stream:
            return
        if not self.path.parent.is_dir():
            if not make_parents:
                raise OutputError(f"{self.path}: output folder {self.path.parent} does not exist")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self._temporary(self.path.parent)

    def _temporary(self, folder: Path | None) -> Path:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self._suffix, dir=folder)
        except OSError as e:
            raise _named(e, self.path) from None
        os.close(fd)
        return Path(name)

    @property
    def name(self) -> Path:
        """The temporary file to write by name (beside a regular target; in the temporary folder for a stream)."""
        if self._tmp is None:
            self._tmp = self._temporary(None)
        return self._tmp

    def open(self, mode: str = "w", encoding: str | None = "utf-8") -> IO[Any]:
        """The file to write: the temporary file of a regular target, the stream itself (appended to) for a stream."""
        binary = "b" in mode
        if not self.stream:
            return open(self.name, mode, encoding=None if binary else encoding)
        try:
            return open(self.path, "ab" if binary else "a", encoding=None if binary else encoding)
        except OSError as e:
            raise _named(e, self.path) from None

    def commit(self) -> None:
        """Move the temporary file onto a regular target; copy what was written by name into a stream."""
        tmp = self._tmp
        if tmp is None:
            return
        try:
            if self.stream:
                with open(tmp, "rb") as src, open(self.path, "ab") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
        except OSError as e:
            self.discard()
            if e.filename is None or Path(e.filename) in (tmp, self.path):
                raise _named(e, self.path) from None
            raise
        if self.stream:
            self.discard()
        self._tmp = None

    def discard(self) -> None:
        """Remove the temporary file; the target stays as it was (a stream keeps what was already written to it)."""
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to by name; on success it replaces `path` (mode 0644) or,
    for a stream, is copied into it; on failure it is removed.

    `suffix` ends the temporary name (default ``.tmp`` plus `path`'s extension; matplotlib and PyAV choose a
    format from it).
    """
    out = OutputFile(path, suffix)
    with _committed(out, (out.name,)):
        yield out.name


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield an open file (UTF-8 for text) whose content replaces `path` when the block ends without an error;
    a stream is written to as the block runs."""
    out = OutputFile(path)
    with _committed(out, (out._tmp, out.path)), out.open(mode) as f:
        yield f


@contextmanager
def _committed(out: OutputFile, own: tuple[Path | None, ...]) -> Iterator[None]:
    """Commit `out` when the block ends without an error, else discard it; an OSError about one of the `own` names
    (or about no file) is raised under `out`'s own name."""
    try:
        yield
    except OSError as e:
        out.discard()
        if e.filename is None or Path(e.filename) in own:
            raise _named(e, out.path) from None
        raise
    except BaseException:
        out.discard()
        raise
    out.commit()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically (streamed into a stream)."""
    with atomic_open(path) as f:
        f.write(text)


def write_json_atomic(obj: object, path: str | os.PathLike) -> None:
    """``json.dump`` with default settings (as mmcv.dump) to `path` atomically (streamed into a stream)."""
    with atomic_open(path) as f:
        json.dump(obj, f)
