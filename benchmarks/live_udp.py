"""The live loop on a real UDP stream: bikes.mp4 (looped) sent at 25 fps over UDP on 127.0.0.1 by
`python -m dff.live.sender` (a separate process), received with `dff.io.live.open_live` and run through
`dff.live.LiveLoop` (what `dff detect udp://...` runs), each key mode in turn, rounds alternating.

    python benchmarks/live_udp.py --weights golden --preset r50_dc5 --seconds 60 --rounds 2 --threads 2 \
        --json benchmarks/results/live_udp_r50.json

Per mode: frames processed and dropped, key frames (backbone passes), latency p50 / p95 / max (the frame's arrival
at the receiver to its result) and the lag (a result's time minus when its frame was SENT, from the sender's
start time on this machine's monotonic clock): the last result's lag and the largest. The receiver listens before
the sender starts, so the receiver's frame times count from the sender's first frame. `--weights golden` is the
golden recipe's deterministic weights (the cost of trained ones); any checkpoint or zoo name works too. Run it on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as dff detect sets it for live runs, before torch starts

import torch  # noqa: E402

import dff  # noqa: E402
from dff.golden import deterministic_state_dict
from dff.io.live import open_live
from dff.live.loop import LiveLoop, LiveOptions
from dff.run import RunOptions

BIKES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "videos" / "bikes.mp4"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(model: dff.DFFModel, run: RunOptions, mode: str, seconds: float, source: Path, idle: int | None) -> dict:
    """Listen, start the sender, run the live loop for `seconds` of results, stop both; the figures."""
    url = f"udp://127.0.0.1:{free_udp_port()}"
    opened: dict = {}

    def listen() -> None:
        try:
            opened["source"] = open_live(url)
        except Exception as e:  # noqa: BLE001 - reported in the main thread
            opened["error"] = e

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(0.5)  # the receiver is listening before the first datagram
    sender = subprocess.Popen(
        [sys.executable, "-m", "dff.live.sender", str(source), url, "--fps", "25", "--loop"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        start = json.loads(sender.stdout.readline())["start_monotonic"]
        listener.join(timeout=60)
        if "error" in opened:
            raise opened["error"]
        live = opened["source"]
        loop = LiveLoop(model, run, LiveOptions(mode, loop_threads=idle))
        results = []
        with live:
            stream = loop.results(live)
            try:
                for r in stream:
                    results.append(r)
                    if r.ready_s >= seconds:
                        break
            finally:
                stream.close()
    finally:
        sender.terminate()
        sender.wait(timeout=10)
    lags = [loop.start + r.ready_s - (start + r.time_s) for r in results]
    s = loop.summary
    return {
        "mode": mode,
        "loop_threads": idle,
        **s.to_dict(),
        "received": live.received,
        "dropped": live.dropped,
        "dropped_share": live.dropped / max(live.received, 1),
        "lag_last_s": round(lags[-1], 4),
        "lag_max_s": round(max(lags), 4),
        "lag_first_half_median_s": round(statistics.median(lags[: len(lags) // 2]), 4),
        "lag_second_half_median_s": round(statistics.median(lags[len(lags) // 2 :]), 4),
        "p95_over_p50": round(s.latency(95) / s.latency(50), 3),
        "period_s": 1 / 25,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="golden", help="'golden' (deterministic weights) or a checkpoint / zoo name")
    p.add_argument("--preset", default="r50_dc5")
    p.add_argument("--source", type=Path, default=BIKES)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--modes", default="sync,async")
    p.add_argument("--key-interval", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--loop-threads",
        default="",
        help="async: comma-separated threads of the loop, one run per value ('': the default, half the cores)",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.weights == "golden":
        model = dff.build(args.preset, device="cpu")
        model.net.load_state_dict(deterministic_state_dict(model.net.state_dict(), seed=0))
    else:
        model = dff.load(args.weights, preset=args.preset)
    run = RunOptions(device="cpu", key_policy=dff.FixedInterval(args.key_interval))
    model.network(run)  # built before the clock starts
    idles = [int(t) if t else None for t in args.loop_threads.split(",")]
    settings = [(m, i) for m in args.modes.split(",") for i in (idles if m == "async" else [None])]
    out = []
    for k in range(args.rounds):
        for mode, idle in settings if k % 2 == 0 else settings[::-1]:
            figures = one_run(model, run, mode, args.seconds, args.source, idle)
            out.append(figures)
            print(json.dumps(figures), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "preset": args.preset,
        "weights": args.weights,
        "threads": args.threads,
        "runs": out,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
