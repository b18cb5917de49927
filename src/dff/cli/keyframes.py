"""The key-frame options shared by `dff detect`, `dff test` and `dff benchmark`: --key-policy and --key-budget."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dff.errors import DFFError

if TYPE_CHECKING:
    from dff.keyframes import KeyFramePolicy

POLICIES = ("fixed", "adaptive")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--key-policy, --key-budget, --key-min-interval, --key-max-interval (--key-interval is the command's own)."""
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
        help="adaptive: frames per key frame in the long run (default: --key-interval, or 10)",
    )
    p.add_argument("--key-min-interval", type=int, metavar="N", help="adaptive: no key frame by score sooner (2)")
    p.add_argument("--key-max-interval", type=int, metavar="N", help="adaptive: a key frame at the latest (3 x budget)")


def key_policy(args: argparse.Namespace) -> KeyFramePolicy | None:
    """The policy the options ask for; None for fixed without --key-interval (the model's default)."""
    from dff.keyframes import Adaptive, FixedInterval

    if args.key_policy not in POLICIES:
        raise DFFError(f"--key-policy must be one of {', '.join(POLICIES)}, got {args.key_policy!r}")
    adaptive_only = {"--key-budget": args.key_budget, "--key-min-interval": args.key_min_interval}
    adaptive_only["--key-max-interval"] = args.key_max_interval
    if args.key_policy == "fixed":
        given = [k for k, v in adaptive_only.items() if v is not None]
        if given:
            raise DFFError(f"{', '.join(given)} needs --key-policy adaptive")
        return None if args.key_interval is None else FixedInterval(args.key_interval)
    budget = args.key_budget if args.key_budget is not None else (args.key_interval or 10)
    extra = {"min_interval": args.key_min_interval, "max_interval": args.key_max_interval}
    return Adaptive(budget=budget, **{k: v for k, v in extra.items() if v is not None})
