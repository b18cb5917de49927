"""Entry point of the `dff` command and its one error boundary.

Every failure ends as one line on stderr: `DFFError` -> `dff: error: <message>` (exit 2); an OS error ->
`dff: error: <path>: <what happened>` (exit 2, ENOSPC named "disk full"); Ctrl-C at any moment, start-up included
-> `dff: interrupted` (exit 130); SIGTERM is handled like Ctrl-C (the commands finalise their outputs) and exits 143;
a closed stdout (`dff detect ... | head -1`) ends the run quietly (exit 141, as a command killed by SIGPIPE).
The subcommands (and with them torch) are imported inside the boundary, so an early Ctrl-C prints no traceback;
run as the program (`argv` None), a Ctrl-C or SIGTERM after the command has finished is ignored, so that the
interpreter's exit handlers are not interrupted either.

Start-up: `COMMANDS` names every subcommand with its module and one-line help, so `dff --help` and `dff --version`
import no command module; only the command being run is imported (and its modules import torch, numpy, OpenCV and
the like inside the functions that need them, so that `dff COMMAND --help` stays fast too). Words the command does not
take that are all existing paths (`dff detect frames/*.jpg` unquoted, expanded by the shell) get a hint to quote the
glob instead of argparse's list of every path; a system library that OpenCV loads being missing (libGL on a minimal
container image) is one line naming the package to install.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from dff.errors import DFFError, Terminated
from dff.version import __version__

EXIT_ERROR, EXIT_PIPE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 141, 130, 143


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the module whose `register(sub)` adds its parser, and its one-line help (the same
    as that parser's, shown by `dff --help` without importing the module)."""

    name: str
    module: str
    help: str


COMMANDS: tuple[Command, ...] = (
    Command("demo", "dff.cli.demo", "run the bundled tiny model on the bundled clip"),
    Command("detect", "dff.cli.detect", "detect objects in a video, frame folder, glob, image or stream"),
    Command(
        "test", "dff.cli.test", "evaluate on a COCO-VID val set (COCO AP50, ILSVRC devkit AP, motion buckets, fps)"
    ),
    Command("train", "dff.cli.train", "train a DFF model on ImageNet VID (+DET) style data"),
    Command("benchmark", "dff.cli.benchmark", "time DFF (per frame, per stage, key vs non-key) and compare settings"),
    Command(
        "convert-checkpoint",
        "dff.cli.convert_checkpoint",
        "convert an mmtracking DFF .pth or a dff train checkpoint to a .safetensors model file",
    ),
    Command(
        "convert-dataset",
        "dff.cli.convert_dataset",
        "convert an ILSVRC2015 root to mmtracking's COCO-VID / COCO JSON files",
    ),
    Command("make-synthetic", "dff.cli.make_synthetic", "write a synthetic ILSVRC2015-format video dataset"),
    Command(
        "convert-annotations",
        "dff.cli.convert_annotations",
        "convert CVAT video XML, MOTChallenge or YOLO labels to a COCO-VID JSON",
    ),
    Command("check-dataset", "dff.cli.check_dataset", "check a COCO-VID file and its images before training"),
    Command(
        "export", "dff.cli.export", "export a model to ONNX (key_features, propagate, detect graphs and manifest.json)"
    ),
)

# A shared library that OpenCV's cv2 (opencv-python) loads from the system, named in the ImportError when missing.
_OPENCV_SYSTEM_LIBRARY = re.compile(r"lib(GL|GLX|GLdispatch|glib-2\.0|gthread-2\.0|xcb|X11|Xau|Xdmcp)\.so")


def build_parser(full: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The `dff` parser: the commands named in `full` (default: all) with their arguments, which imports their
    modules; every other command with its name and help only."""
    parser = argparse.ArgumentParser(prog="dff", description="Deep Feature Flow video object detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        if full is None or command.name in full:
            importlib.import_module(command.module).register(sub)
        else:
            sub.add_parser(command.name, help=command.help)
    return parser


def command_named(argv: Sequence[str]) -> Command | None:
    """The command `argv` runs: its first word that is not an option (the options before it take no value)."""
    word = next((w for w in argv if not w.startswith("-")), None)
    return next((c for c in COMMANDS if c.name == word), None)


def unrecognized(words: Sequence[str]) -> str:
    """argparse's message for words no argument takes; when they are all existing paths, the hint that the shell
    expanded a glob, which dff expands itself when it is quoted."""
    if not all(not w.startswith("-") and os.path.lexists(w) for w in words):
        return f"unrecognized arguments: {' '.join(words)}"
    paths = [Path(w) for w in words]
    folders = {p.parent for p in paths}
    suffixes = {p.suffix for p in paths}
    pattern = "*" + (suffixes.pop() if len(suffixes) == 1 else "")
    glob = str(folders.pop() / pattern) if len(folders) == 1 else f"DIR/{pattern}"
    listed = words[0] if len(words) == 1 else f"{words[0]} ... {words[-1]}"
    return (
        f"{len(words)} more path{'s' if len(words) > 1 else ''} than the command takes ({listed}): "
        f"if the shell expanded a glob, quote it so that dff expands it, e.g. '{glob}'"
    )


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line (argparse's usage error and exit 2 on a bad one); imports only the command run."""
    command = command_named(argv)
    parser = build_parser(full=() if command is None else (command.name,))
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(unrecognized(extra))
    return args


def describe_os_error(e: OSError) -> str:
    """`<path>: <what happened>` of an OS error; ENOSPC reads "disk full"."""
    what = "disk full (no space left on the device)" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else what


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so that Python's own flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    handle_signals = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handle_signals else None
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
        return int(args.func(args) or 0)
    except DFFError as e:
        print(f"dff: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as e:
        if not _OPENCV_SYSTEM_LIBRARY.search(str(e)):
            raise
        print(
            f"dff: error: {e} (OpenCV needs the system's OpenGL and GLib libraries; "
            "on Debian or Ubuntu: apt-get install libgl1 libglib2.0-0)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE
    except OSError as e:
        print(f"dff: error: {describe_os_error(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated:
        print("dff: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("dff: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if handle_signals:
            signal.signal(signal.SIGTERM, previous)
        if handle_signals and argv is None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
