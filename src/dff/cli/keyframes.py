"""The key-frame options shared by `dff detect` and `dff test` (--key-interval, --key-policy, --key-budget,
--key-min-interval, --key-max-interval), turned into a policy by the one constructor `dff.keyframes.make_policy`
(which `dff benchmark`'s settings use too)."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(p: argparse.ArgumentParser, interval_help: str | None = None) -> None:
    """--key-interval (unless the command has its own), --key-policy, --key-budget, --key-min-interval,
    --key-max-interval."""
    if interval_help is not None:
        p.add_argument("--key-interval", type=int, metavar="N", help=interval_help)
    p.add_argument(
        "--key-policy",
        default="fixed",
        metavar="POLICY",
        help="fixed (a key frame every --key-interval frames, mmtracking's rule; the default) or adaptive (key "
        "frames where the video needs them: shot cuts, flow residual, new content; one per --key-budget frames "
        "in the long run)",
    )
    p.add_argument(
        "--key-budget",
        type=float,
        metavar="N",
        help="adaptive: frames per key frame in the long run (default: --key-interval, or the preset's)",
    )
    p.add_argument("--key-min-interval", type=int, metavar="N", help="adaptive: no key frame by score sooner (2)")
    p.add_argument("--key-max-interval", type=int, metavar="N", help="adaptive: a key frame at the latest (3 x budget)")


def make_policy(*args: Any) -> Any:
    """`dff.keyframes.make_policy`, imported when a command runs (torch is not needed for --help)."""
    from dff.keyframes.choose import make_policy as make

    return make(*args)


def key_policy(args: argparse.Namespace) -> object | None:
    """The policy the options ask for; None for fixed without --key-interval (the preset's schedule)."""
    return make_policy(
        args.key_policy, args.key_interval, args.key_budget, args.key_min_interval, args.key_max_interval
    )


def adaptive_with(args: argparse.Namespace, budget: float) -> object:
    """An adaptive policy at `budget` with the command line's other adaptive settings (sweeps of budgets)."""
    return make_policy("adaptive", None, budget, args.key_min_interval, args.key_max_interval)
