"""`dff benchmark`: per-frame and per-stage timings, FLOPs, matmul peak and memory; settings compared interleaved."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from dff.cli.checks import check_device, check_weights_path
from dff.config import PRESETS
from dff.errors import DFFError, InputError
from dff.io.atomic import write_text_atomic
from dff.io.outputs import Output, check_outputs

if TYPE_CHECKING:
    import dff


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="time DFF (per frame, per stage, key vs non-key) and compare settings",
        description="Time DFF on the first --frames frames of SOURCE (decoded before timing, as mmtracking's "
        "benchmark excludes data loading): warm-up, then per-frame timings split into key / non-key "
        "frames and into stages, fps, GFLOPs per frame, the fraction of the measured matmul peak and "
        "peak memory. Several settings (--compare x --key-interval) run interleaved in one process.",
    )
    p.add_argument("--preset", default="r50_dc5", choices=sorted(PRESETS), help="architecture (default r50_dc5)")
    p.add_argument(
        "--weights",
        help="checkpoint or zoo name; default: the deterministic golden weights (seed 0), "
        "which cost the same as trained ones",
    )
    p.add_argument("--source", required=True, help="video file, frame folder or glob")
    p.add_argument("--frames", type=int, default=200, help="frames to time (default 200, or all the source has)")
    p.add_argument("--warmup", type=int, default=10, help="frames run before timing, per setting (default 10)")
    p.add_argument("--key-interval", default="1,10", help="comma-separated key-frame intervals (default 1,10)")
    p.add_argument(
        "--compare",
        default="fast",
        help="comma-separated settings: reference (mmtracking's ops, fp32, NCHW, no fusion, serial "
        "preprocessing), fast (the default path), fast:bf16, fast:fp16, onnx (the stages exported to ONNX, on "
        "onnxruntime) (default: fast)",
    )
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="dtype of a bare 'fast' setting (default fp32)",
    )
    p.add_argument(
        "--key-policy",
        default="fixed",
        help="comma-separated key-frame policies: fixed (every --key-interval frames), adaptive (each interval > 1 "
        "as the budget: one key frame per that many frames in the long run) (default fixed)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when this machine has it, else the CPU; the default), cpu, cuda[:N]",
    )
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    p.add_argument(
        "--matmul-size",
        type=int,
        metavar="N",
        help="size of the square matmul that measures the peak (default 4096 on CPU, 8192 on GPU)",
    )
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the full report as JSON")
    live = p.add_argument_group(
        "live mode",
        "--live runs the live loop over SOURCE paced at its frame rate (the newest frame each turn, drops counted), "
        "each key mode in turn, and reports processed / dropped frames and latency p50 / p95 / max per mode; "
        "--key-interval and --key-policy then take one value.",
    )
    live.add_argument("--live", action="store_true", help="measure the live loop instead of per-frame timings")
    live.add_argument("--key-mode", default="sync,async", help="live: comma-separated key modes (default sync,async)")
    live.add_argument("--seconds", type=float, default=30.0, help="live: seconds per mode and round (default 30)")
    live.add_argument("--rounds", type=int, default=2, help="live: rounds, the modes alternating (default 2)")
    live.add_argument("--fps", type=float, help="live: pace SOURCE at this rate (default: its own, 25 for folders)")
    live.add_argument(
        "--profile-out",
        metavar="PATH",
        type=Path,
        help="live: write the runtime profile measured (stage times of each key mode) for dff test --streaming "
        "--clock simulated",
    )
    p.set_defaults(func=run)


def _intervals(text: str) -> list[int]:
    from dff.evaluation.sweep import parse_intervals

    try:
        return sorted(parse_intervals(text))
    except ValueError as e:
        raise DFFError(f"--key-interval: {e}") from None


def _model(args: argparse.Namespace) -> tuple[dff.DFFModel, str]:
    import dff
    from dff.golden import deterministic_state_dict
    from dff.models.network import resolve_device

    device = resolve_device(args.device)
    if args.weights:
        return dff.load(args.weights, preset=args.preset, device=device), args.weights
    model = dff.build(args.preset, device=device)
    model.net.load_state_dict(deterministic_state_dict(model.net.state_dict(), seed=0))
    return model, "deterministic (golden recipe, seed 0)"


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (every option explicit)."""
    import torch

    parts = [
        "dff benchmark",
        f"--preset {args.preset}",
        f"--source {shlex.quote(str(args.source))}",
        f"--frames {args.frames}",
        f"--warmup {args.warmup}",
        f"--key-interval {args.key_interval}",
        f"--key-policy {args.key_policy}",
        f"--compare {args.compare}",
        f"--dtype {args.dtype}",
        f"--device {args.device}",
        f"--threads {torch.get_num_threads()}",
    ]
    if args.weights:
        parts.append(f"--weights {shlex.quote(args.weights)}")
    if args.matmul_size:
        parts.append(f"--matmul-size {args.matmul_size}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    if args.live:
        from dff.live import let_idle_threads_sleep

        let_idle_threads_sleep()
    import torch

    from dff.benchmark import format_report, parse_settings, run_benchmark

    if args.live:
        return run_live(args)
    if args.profile_out is not None:
        raise DFFError("--profile-out needs --live")
    if args.frames < 2:
        raise DFFError(f"--frames must be >= 2, got {args.frames}")
    if args.warmup < 0:
        raise DFFError(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads is not None:
        if args.threads < 1:
            raise DFFError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        settings = parse_settings(
            args.compare.split(","), _intervals(args.key_interval), args.dtype, args.key_policy.split(",")
        )
    except ValueError as e:
        raise DFFError(f"--compare: {e}") from None
    check_device(args.device)
    if args.weights:
        check_weights_path(args.weights)
    outputs = [Output(args.json, "--json", make_parents=False)] if args.json is not None else []
    check_outputs(outputs, inputs=[args.source] + ([args.weights] if args.weights else []))
    from dff.io.sources import open_source

    with open_source(args.source) as source:
        frames = [f.image for f in islice(source, args.frames)]
    if len(frames) < 2:
        raise InputError(f"{args.source}: need at least 2 frames, found {len(frames)}")
    if len(frames) < args.frames:
        print(f"dff benchmark: {args.source} has {len(frames)} frames; timing all of them", file=sys.stderr)
    model, weights = _model(args)
    report = run_benchmark(
        model.net,
        model.device,
        frames,
        settings,
        warmup=args.warmup,
        weights=weights,
        source=args.source,
        progress=lambda msg: print(f"dff benchmark: {msg}", file=sys.stderr, flush=True),
        matmul_size=args.matmul_size,
    )
    report.command = _command(args)
    print(format_report(report), flush=True)
    if args.json is not None:
        _write_json(args.json, report.to_dict())
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def run_live(args: argparse.Namespace) -> int:
    """`dff benchmark --live`: the live loop in each key mode over a paced source (dff.benchmark.live)."""
    import torch

    from dff.benchmark.live import run_live_benchmark
    from dff.keyframes import make_policy
    from dff.live.loop import KEY_MODES
    from dff.run import RunOptions

    modes = [m.strip() for m in args.key_mode.split(",") if m.strip()]
    if not modes or any(m not in KEY_MODES for m in modes) or len(set(modes)) != len(modes):
        raise DFFError(f"--key-mode: comma-separated, distinct, from {', '.join(KEY_MODES)}; got {args.key_mode!r}")
    try:
        interval = int(args.key_interval)
    except ValueError:
        raise DFFError(f"--live takes one --key-interval, got {args.key_interval!r}") from None
    if args.key_policy not in ("fixed", "adaptive"):
        raise DFFError(f"--live takes one --key-policy (fixed or adaptive), got {args.key_policy!r}")
    policy = make_policy(args.key_policy, interval, interval if args.key_policy == "adaptive" else None)
    if not (math.isfinite(args.seconds) and 1 <= args.seconds <= 3600):
        raise DFFError(f"--seconds must be in [1, 3600], got {args.seconds}")
    if not 1 <= args.rounds <= 100:
        raise DFFError(f"--rounds must be in [1, 100], got {args.rounds}")
    if args.fps is not None and not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise DFFError(f"--fps must be in (0, 1000], got {args.fps}")
    if args.threads is not None:
        if args.threads < 1:
            raise DFFError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    check_device(args.device)
    outputs = [
        Output(p, o, make_parents=False) for p, o in ((args.json, "--json"), (args.profile_out, "--profile-out"))
    ]
    check_outputs(
        [o for o in outputs if o.path is not None], inputs=[args.source] + ([args.weights] if args.weights else [])
    )
    model, weights = _model(args)
    run = RunOptions(device=args.device, dtype=args.dtype, key_policy=policy)
    report = run_live_benchmark(
        model,
        args.source,
        run,
        modes,
        seconds=args.seconds,
        rounds=args.rounds,
        fps=args.fps,
        progress=lambda msg: print(f"dff benchmark: {msg}", file=sys.stderr, flush=True),
    )
    print(f"live loop: {model.config.name} ({weights}), {report.key_policy}, {report.threads} threads, {args.source}")
    print(report.table(), flush=True)
    if args.json is not None:
        _write_json(args.json, report.to_dict())
        print(f"wrote {args.json}", file=sys.stderr)
    if args.profile_out is not None:
        report.profile().save(args.profile_out)
        print(f"wrote {args.profile_out}", file=sys.stderr)
    return 0
