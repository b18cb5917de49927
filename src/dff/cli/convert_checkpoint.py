"""`dff convert-checkpoint IN.pth OUT.safetensors`: an mmtracking checkpoint or a `dff train` checkpoint
(`latest.pth`, `epoch_K.pth`) to our safetensors format."""

from __future__ import annotations

import argparse

from dff.cli.checks import check_weights_path
from dff.config import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-checkpoint",
        help="convert an mmtracking DFF .pth or a dff train checkpoint to a .safetensors model file",
    )
    p.add_argument("src", help="mmtracking checkpoint (.pth), or a dff train checkpoint (latest.pth, epoch_K.pth)")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="architecture of an mmtracking checkpoint (default r50_dc5; a dff train checkpoint names its own)",
    )
    p.add_argument(
        "--half", action="store_true", help="store the weights as float16 (half the file; loaded as float32)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from dff.api import load
    from dff.io.outputs import Output, check_outputs

    check_weights_path(args.src, "SRC")
    check_outputs([Output(args.dst, "DST")], inputs=[args.src])
    model = load(args.src, preset=args.preset)
    model.save(args.dst, torch.float16 if args.half else None)
    millions = sum(p.numel() for p in model.net.parameters()) / 1e6
    print(f"wrote {args.dst} ({model.config.name}, {millions:.1f} M parameters)")
    return 0
