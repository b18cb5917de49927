"""Output-path checks that every command runs before any work, so that a bad path fails before anything is written.

One call per command, before it reads or writes anything::

    check_outputs(
        [Output(args.out, "--out"), Output(args.out_dir, "--out-dir", folder=True)],
        inputs=[args.ann, args.weights, args.img_root],
    )

`outputs` are what the command writes (`Output`: the path, the option that named it, for messages, and whether it
is a folder); `inputs` are every file and folder it reads. A folder input stands for everything under it, so name
the narrowest folders the command reads (an ILSVRC root's `Lists`, `Annotations` and `Data`, not the root that
also holds the default output folder `annotations/`). The rules, each refused with one line (OutputError):

- an output may not be an input, contain an input (an output folder holding a file or folder the command reads)
  or sit inside an input folder; inputs that do not exist (a zoo name, a URL, a glob) are only compared by name;
- two outputs may not share a path (character devices such as /dev/null excepted);
- a file output may not be a folder, nor a folder output a file;
- the place must be writable: a file's nearest existing folder must be a folder (not a regular file) that this
  process may write into; a stream (a device, a FIFO, /dev/stdout: `dff.io.atomic.is_stream`) must itself be
  writable, as it is written in place, never replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dff.errors import OutputError
from dff.io.atomic import is_stream


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


def _inside(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def _writable_place(out: Output) -> None:
    path = Path(out.path).expanduser()
    if not out.folder and is_stream(path):
        if path.exists() and not os.access(path, os.W_OK):
            raise OutputError(f"{path}: {out.option}: cannot write there, it is not writable")
        return
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


def _check_against_input(path: Path, resolved: Path, out: Output, source: str | os.PathLike) -> None:
    """OutputError when the output is the input `source`, contains it or sits inside it (a folder)."""
    source_path = _resolved(source)
    if _same(resolved, source_path):
        raise OutputError(f"{path}: {out.option} is the input {source}; refusing to overwrite it")
    if not source_path.exists() or is_stream(path):
        return
    if out.folder and _inside(source_path, resolved):
        raise OutputError(f"{path}: {out.option} contains the input {source}; write outside what the command reads")
    if source_path.is_dir() and _inside(resolved, source_path):
        raise OutputError(
            f"{path}: {out.option} is inside the input folder {source}; write outside what the command reads"
        )


def check_outputs(outputs: Iterable[Output | None], inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """Raise OutputError for the first output that would touch an input, clash with another output or not work
    (the rules are in the module docstring).

    `None` outputs and inputs, and `-` (stdout / stdin), are skipped; `inputs` are the files and folders the command
    reads, a folder standing for everything under it.
    """
    sources = [s for s in inputs if s is not None and os.fspath(s) != "-"]
    seen: list[tuple[Path, Output]] = []
    for out in outputs:
        if out is None or os.fspath(out.path) == "-":
            continue
        path = Path(out.path).expanduser()
        resolved = _resolved(path)
        for source in sources:
            _check_against_input(path, resolved, out, source)
        sink = path.is_char_device()
        for other_path, other in seen:
            if _same(resolved, other_path) and not sink:
                raise OutputError(f"{path}: {out.option} and {other.option} name the same file")
        if out.folder and path.exists() and not path.is_dir():
            raise OutputError(f"{path}: {out.option} needs a folder, but this is a file")
        if not out.folder and path.is_dir():
            raise OutputError(f"{path}: {out.option} is a folder, not a file")
        _writable_place(out)
        seen.append((resolved, out))
