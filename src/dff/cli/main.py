"""Entry point of the `dff` command and its one error boundary.

Every failure ends as one line on stderr: `DFFError` -> `dff: error: <message>` (exit 2); an OS error ->
`dff: error: <path>: <what happened>` (exit 2, ENOSPC named "disk full"); Ctrl-C at any moment, start-up included
-> `dff: interrupted` (exit 130); SIGTERM is handled like Ctrl-C (the commands finalise their outputs) and exits 143;
a closed stdout (`dff detect ... | head -1`) ends the run quietly (exit 141, as a command killed by SIGPIPE).
The subcommands (and with them torch) are imported inside the boundary, so an early Ctrl-C prints no traceback;
run as the program (`argv` None), a Ctrl-C or SIGTERM after the command has finished is ignored, so that the
interpreter's exit handlers are not interrupted either.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading

from dff.errors import DFFError, Terminated

EXIT_ERROR, EXIT_PIPE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 141, 130, 143


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    from dff.cli import (
        benchmark,
        check_dataset,
        convert_annotations,
        convert_checkpoint,
        convert_dataset,
        demo,
        detect,
        export,
        make_synthetic,
        test,
        train,
    )

    parser = argparse.ArgumentParser(prog="dff", description="Deep Feature Flow video object detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (demo, detect, test, train, benchmark, convert_checkpoint, convert_dataset, make_synthetic)
    for command in (*commands, convert_annotations, check_dataset, export):
        command.register(sub)
    return parser


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
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
        return int(args.func(args) or 0)
    except DFFError as e:
        print(f"dff: error: {e}", file=sys.stderr)
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
