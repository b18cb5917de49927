"""Live video: a real-time stream sender (tests, benchmarks) and a browser preview of a live run."""

import os

KEY_MODES = ("sync", "async")
DEFAULT_KEY_MODE = "sync"  # the better streaming AP on this project's CPU (BENCHMARKS.md, "Live video")


def let_idle_threads_sleep() -> None:
    """Make idle OpenMP thread teams sleep instead of spin, so that async key frames and the frame loop can share
    the cores (docs/live.md); read once when torch starts, so call it before torch is imported. A value the user
    set is kept."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
