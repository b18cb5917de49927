"""Entry point of the `dff` command: builds the subcommands and turns DFFError into one line + exit 2."""

from __future__ import annotations

import argparse
import logging
import sys

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
from dff.errors import DFFError

COMMANDS = (demo, detect, test, train, benchmark, convert_checkpoint, convert_dataset, make_synthetic)
COMMANDS += (convert_annotations, check_dataset)
COMMANDS += (export,)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="dff", description="Deep Feature Flow video object detection")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except DFFError as e:
        print(f"dff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
