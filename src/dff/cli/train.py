"""`dff train` (placeholder until its issue lands)."""

import argparse

from dff.errors import DFFError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise DFFError("'dff train' is not implemented yet")
