"""Live video: a real-time stream sender (tests, benchmarks) and a browser preview of a live run."""

KEY_MODES = ("sync", "async")
DEFAULT_KEY_MODE = "sync"  # the better streaming AP on this project's CPU (BENCHMARKS.md, "Live video")
