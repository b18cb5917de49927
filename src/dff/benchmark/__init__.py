"""`dff benchmark`: the timing engine (interleaved settings, stage timers, FLOPs, matmul peak, memory) and its
report."""

from dff.benchmark.engine import PATHS, FrameTiming, Setting, StageTimer, parse_settings, run_benchmark, summarize
from dff.benchmark.report import STAGES, BenchmarkReport, format_report

__all__ = [
    "PATHS",
    "STAGES",
    "BenchmarkReport",
    "FrameTiming",
    "Setting",
    "StageTimer",
    "format_report",
    "parse_settings",
    "run_benchmark",
    "summarize",
]
