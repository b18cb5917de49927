"""`dff test` (placeholder until its issue lands)."""

import argparse

from dff.errors import DFFError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise DFFError("'dff test' is not implemented yet")
