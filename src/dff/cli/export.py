"""`dff export --weights W --out DIR`: the three DFF stages as ONNX graphs and a manifest (dff.export.onnx)."""

from __future__ import annotations

import argparse

import dff
from dff import zoo
from dff.config import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    from dff.export.onnx import DEFAULT_OPSET, parse_size  # imports torch: dff export --help is not fast yet

    p = sub.add_parser(
        "export",
        help="export a model to ONNX (key_features, propagate, detect graphs and manifest.json)",
        description="Export the three DFF stages to ONNX for onnxruntime and other runtimes. Run the export with "
        "`dff detect SOURCE --weights DIR/manifest.json` or dff.load('DIR/manifest.json'). Needs the onnx extra.",
    )
    p.add_argument(
        "--weights",
        required=True,
        help=f"checkpoint (.pth from mmtracking or our .safetensors) or zoo name: {', '.join(zoo.ZOO)}",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, metavar="N", help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    p.add_argument(
        "--fixed-size",
        type=parse_size,
        metavar="HxW",
        help="a fixed padded input size (multiples of 16, e.g. 608x1008) instead of dynamic sizes",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dff.export.onnx import export_onnx

    model = dff.load(args.weights, preset=args.preset)
    manifest = export_onnx(model, args.out, opset=args.opset, fixed_size=args.fixed_size)
    print(f"wrote {manifest.parent}/{{key_features,propagate,detect}}.onnx and {manifest.name} ({model.config.name})")
    return 0
