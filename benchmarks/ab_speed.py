"""A/B speed of two source trees of this project: `dff benchmark` run alternately from each, on one machine.

    python benchmarks/ab_speed.py --old ../old --new . --rounds 3 -- --preset r50_dc5 \
        --source ../shared/data/real/ILSVRC2015_val_00007010 --frames 40 --warmup 5 --key-interval 1,10 \
        --threads 2 --device cpu

Each round runs the benchmark once per tree (the order alternates between rounds, so a drift of machine load
hits both alike), each in its own process with `PYTHONPATH=<tree>/src`. The trees' default (fast) path is timed:
`--compare <setting>` is given per tree (`--old-setting`, `--new-setting`, since its name may differ between
versions; both default to `fast`, trees older than that name call it `optimized`). Give `--device` explicitly:
its default differs between versions (cpu in trees before `dff.RunOptions`, auto since). Prints, per key interval,
the median over rounds of each tree's fps(med) and fps, and new / old. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_once(tree: Path, setting: str, bench_args: list[str], out: Path) -> dict[int, dict]:
    """fps(med) and fps of each key interval of one `dff benchmark` run from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve() / "src")}
    cmd = [sys.executable, "-m", "dff", "benchmark", *bench_args, "--compare", setting, "--json", str(out)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    return {
        s["setting"]["key_interval"]: {"fps_median": s["fps_median"], "fps": s["fps"]}
        for s in report["settings"].values()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, required=True, help="source tree of the previous version")
    p.add_argument("--new", type=Path, required=True, help="source tree of the new version")
    p.add_argument("--old-setting", default="fast", help="the old tree's name of its default path (default fast)")
    p.add_argument("--new-setting", default="fast", help="the new tree's name of its default path (default fast)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("bench", nargs=argparse.REMAINDER, help="-- then the dff benchmark arguments")
    args = p.parse_args()
    bench = [a for a in args.bench if a != "--"]
    runs: dict[str, list[dict[int, dict]]] = {"old": [], "new": []}
    trees = {"old": (args.old, args.old_setting), "new": (args.new, args.new_setting)}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                tree, setting = trees[name]
                result = run_once(tree, setting, bench, Path(tmp) / f"{name}{r}.json")
                runs[name].append(result)
                print(
                    f"round {r + 1} {name}: "
                    + ", ".join(f"@{k} fps(med) {v['fps_median']:.3f}" for k, v in sorted(result.items())),
                    flush=True,
                )
    print(
        f"\n{'key interval':>12}{'old fps(med)':>14}{'new fps(med)':>14}{'new/old':>9}{'old fps':>9}{'new fps':>9}"
        f"{'new/old':>9}"
    )
    for k in sorted(runs["old"][0]):
        med = {n: statistics.median(x[k]["fps_median"] for x in runs[n]) for n in runs}
        fps = {n: statistics.median(x[k]["fps"] for x in runs[n]) for n in runs}
        print(
            f"{k:>12}{med['old']:>14.3f}{med['new']:>14.3f}{med['new'] / med['old']:>9.3f}"
            f"{fps['old']:>9.3f}{fps['new']:>9.3f}{fps['new'] / fps['old']:>9.3f}"
        )


if __name__ == "__main__":
    main()
