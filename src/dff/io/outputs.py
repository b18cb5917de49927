"""Output-path checks that every command runs before any work, so that a bad path fails before anything is written.

An output may not be one of the command's inputs, two outputs may not share a path, a file output may not be a
folder (nor a folder output a file), and the place must be writable: its nearest existing folder must be a folder
(not a regular file) that this process may write into.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dff.errors import OutputError


@dataclass(frozen=True)
class Output:
    """One output of a command: its path, the option that named it (for messages) and whether it is a folder."""

    path: str | os.PathLike
    option: str
    folder: bool = False
    make_parents: bool = True  # False: the parent folder must already exist


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _writable_place(out: Output) -> None:
    path = Path(out.path).expanduser()
    parent = path if out.folder else path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{path}: {out.option}: cannot write there, {existing} is a file, not a folder")
    if not out.make_parents and existing != parent:
        raise OutputError(f"{path}: {out.option}: output folder {parent} does not exist")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: {out.option}: cannot write there, {existing} is not writable")


def check_outputs(outputs: Iterable[Output | None], inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Raise OutputError for the first output that would destroy an input, clash with another output or not work.

    `None` outputs and `-` (stdout) are skipped; `inputs` are files or folders the command reads.
    """
    seen: list[tuple[Path, Output]] = []
    for out in outputs:
        if out is None or os.fspath(out.path) == "-":
            continue
        path = Path(out.path).expanduser()
        resolved = _resolved(path)
        for source in inputs:
            if _same(resolved, _resolved(source)):
                raise OutputError(f"{path}: {out.option} is the input {source}; refusing to overwrite it")
        for other_path, other in seen:
            if _same(resolved, other_path):
                raise OutputError(f"{path}: {out.option} and {other.option} name the same file")
        if out.folder and path.exists() and not path.is_dir():
            raise OutputError(f"{path}: {out.option} needs a folder, but this is a file")
        if not out.folder and path.is_dir():
            raise OutputError(f"{path}: {out.option} is a folder, not a file")
        _writable_place(out)
        seen.append((resolved, out))
