"""The run options shared by the commands that run a model (`dff detect`, `dff test`, `dff demo`): --device,
--dtype, --backend, turned into a `dff.RunOptions` by `run_options`."""

from __future__ import annotations

import argparse
from typing import Any

BACKEND_CHOICES = ("auto", "reference", "fast", "onnx")
DTYPE_CHOICES = ("fp32", "bf16", "fp16")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--device (default auto: CUDA when this machine has it, else the CPU), --dtype, --backend."""
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when this machine has it, else the CPU; the default), cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=DTYPE_CHOICES,
        help="precision of the fast backend: fp32 (the default; mmtracking's numbers), bf16 or fp16 (faster where "
        "the hardware has them; the numbers change, see docs/detect.md)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKEND_CHOICES,
        help="auto (fast, or onnx for an export's manifest.json; the default), reference (mmtracking's ops one by "
        "one), fast, onnx",
    )


def run_options(args: argparse.Namespace, **fields: Any) -> Any:
    """The `RunOptions` of the command line (device, dtype, backend) with `fields` (key policy, score threshold...)."""
    from dff.run import RunOptions

    return RunOptions(**{"backend": args.backend, "dtype": args.dtype, "device": args.device, **fields})
