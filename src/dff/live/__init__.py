"""Live video: a real-time stream sender (tests, benchmarks) and a browser preview of a live run."""
