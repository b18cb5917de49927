"""`dff convert-dataset` (placeholder until its issue lands)."""

import argparse

from dff.errors import DFFError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-dataset", help="(not yet available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise DFFError("'dff convert-dataset' is not implemented yet")
