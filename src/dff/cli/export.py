"""`dff export --weights W --out DIR`: the three DFF stages as ONNX graphs and a manifest (dff.export.onnx)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dff import zoo
from dff.config import PRESETS


def register(sub: argparse._SubParsersAction) -> None:
    from dff.export.manifest import DEFAULT_OPSET, parse_size

    p = sub.add_parser(
        "export",
        help="export a model to ONNX (key_features, propagate, detect graphs and manifest.json)",
        description="Export the three DFF stages to ONNX for onnxruntime and other runtimes, with a batch axis. Run "
        "the export with `dff detect SOURCE --weights DIR/manifest.json` or dff.load('DIR/manifest.json'). DIR is "
        "written beside itself and swapped in whole: it must be new, empty or an earlier export. Needs the onnx extra.",
    )
    p.add_argument(
        "--weights",
        required=True,
        help=f"checkpoint (.pth from mmtracking or our .safetensors) or zoo name: {', '.join(zoo.ZOO)}",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), help="architecture of a .pth checkpoint (default r50_dc5)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or an earlier export)")
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        metavar="N",
        help=f"ONNX opset (default {DEFAULT_OPSET}; 16 up to what the installed torch exporter writes)",
    )
    p.add_argument(
        "--fixed-size",
        type=parse_size,
        metavar="HxW",
        help="a fixed padded input size (multiples of 16 that the preset's preprocessing makes, e.g. 608x1008) "
        "instead of dynamic sizes; the batch axis stays dynamic",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def _progress(line: str) -> None:
    print(f"dff export: {line}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    import dff
    from dff.errors import DFFError
    from dff.export.onnx import check_fixed_size, check_opset, check_out_dir, export_onnx
    from dff.io.outputs import Output, check_outputs

    check_opset(args.opset)
    check_outputs([Output(args.out, "--out", folder=True)], inputs=[args.weights])
    check_out_dir(Path(args.out).expanduser().resolve())
    if args.weights.lower().endswith(".json"):
        raise DFFError(f"{args.weights}: already an ONNX export; export from PyTorch weights (.pth, .safetensors, zoo)")
    model = dff.load(args.weights, preset=args.preset)
    if args.fixed_size is not None:
        check_fixed_size(args.fixed_size, model.config)
    progress = None if args.no_progress else _progress
    manifest = export_onnx(model, args.out, opset=args.opset, fixed_size=args.fixed_size, progress=progress)
    print(f"wrote {manifest.parent}/{{key_features,propagate,detect}}.onnx and {manifest.name} ({model.config.name})")
    return 0
