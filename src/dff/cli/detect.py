"""`dff detect` (placeholder until its issue lands)."""

import argparse

from dff.errors import DFFError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise DFFError("'dff detect' is not implemented yet")
