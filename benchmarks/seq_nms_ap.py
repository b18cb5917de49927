"""Seq-NMS and online tracking measured on the bundled tiny model, on fresh synthetic val sets.

    OMP_NUM_THREADS=1 python benchmarks/seq_nms_ap.py --work runs/seq_nms --seeds 2 --sweep iou        # dev seed
    OMP_NUM_THREADS=1 python benchmarks/seq_nms_ap.py --work runs/seq_nms --seeds 2 --sweep min-score  # dev seed
    OMP_NUM_THREADS=1 python benchmarks/seq_nms_ap.py --work runs/seq_nms --seeds 2 --sweep smooth     # dev seed
    OMP_NUM_THREADS=1 python benchmarks/seq_nms_ap.py --work runs/seq_nms --seeds 23 24 25             # report

For each seed, a val set made as `train_tiny.py`'s `stage_val` makes it (20 videos x 60 frames, 480x272) is run by
the shipped `tiny_synthetic.safetensors` per frame (key interval 1), with DFF@10 and with Adaptive(budget=10). Per
run: COCO AP50 (as
`dff test` computes it) without and with Seq-NMS (per video, over that video's results), Seq-NMS's cost in ms per
frame, and HOTA / MOTA / IDF1 (overall) of `OnlineTracker` (ByteTrack, library defaults) over the raw detections.
The detections of each run are kept in --work (JSON lines), so a second run or a sweep does not rerun the model.
`--sweep` evaluates a grid of Seq-NMS settings instead of one (only for the dev seed, 2); `--detect-only` makes the
val sets and runs the model, measuring nothing (so report seeds can run while the dev seed chooses the settings).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

import dff
from dff.cli.demo import MODEL_PATH
from dff.data.cocovid import CocoVID
from dff.evaluation.evaluate import evaluate
from dff.evaluation.runner import run_video
from dff.io.result import FrameResult
from dff.keyframes import Adaptive, FixedInterval
from dff.tracking import (
    BENCHMARKED,
    FrameTracks,
    OnlineTracker,
    SeqNMSConfig,
    TrackerConfig,
    evaluate_tracking,
    seq_nms_results,
)
from train_tiny import PRESET, Recipe, stage_val

log = logging.getLogger("seq_nms_ap")

MODES = {"per_frame": lambda: FixedInterval(1), "dff": lambda: FixedInterval(10), "adaptive": lambda: Adaptive(10)}
"""name -> the key-frame policy of the run (a fresh one per run)."""
NAMES = {"per_frame": "per-frame", "dff": "DFF@10", "adaptive": "adaptive@10"}
DEV_SEED = 2


def label(config: SeqNMSConfig) -> str:
    """A setting's name in the results and tables."""
    c = config
    text = f"{c.rescore}, link {c.link_iou}, suppress {c.suppress_iou}, min score {c.min_score}"
    return text + (f", own weight {c.own_weight}, smooth {c.smooth}" if c.own_weight or c.smooth else "")


CHOSEN = BENCHMARKED
"""The settings reported on the report seeds: the best mean gain of per-frame and DFF@10 on the dev seed over the
grids (BENCHMARKS.md, "Objects over time"), which `--seq-nms` uses by default."""
GRIDS = {
    "iou": [
        SeqNMSConfig(link_iou=link, suppress_iou=suppress, rescore=rescore)
        for rescore, link, suppress in itertools.product(("avg", "max"), (0.3, 0.5, 0.7), (0.3, 0.5))
    ],
    "min-score": [
        SeqNMSConfig(link_iou=0.5, suppress_iou=suppress, rescore="avg", min_score=min_score)
        for suppress, min_score in itertools.product((0.3, 0.5), (0.01, 0.05, 0.1, 0.2))
    ],
    "smooth": [
        SeqNMSConfig(link_iou=link, suppress_iou=0.5, min_score=0.01, own_weight=own, smooth=smooth)
        for link, own, smooth in [
            (0.5, 0.0, 0),
            (0.5, 0.5, 0),
            (0.5, 0.0, 1),
            (0.5, 0.0, 2),
            (0.5, 0.0, 3),
            (0.5, 0.0, 4),
            (0.5, 0.5, 2),
            (0.5, 0.5, 3),
            (0.5, 0.4, 2),
            (0.5, 0.25, 2),
            (0.4, 0.25, 2),
            (0.6, 0.25, 2),
            (0.5, 0.25, 3),
            (0.4, 0.25, 3),
        ]
    ],
}


def detections(model: dff.DFFModel, dataset: CocoVID, img_root: Path, path: Path, mode: str) -> list[list[FrameResult]]:
    """Every video's frame results (dataset order) of the run of `mode`, read from `path` when a previous run wrote
    it (one `FrameResult.to_record` per line)."""
    if not path.is_file():
        run = dff.RunOptions(key_policy=MODES[mode](), device="cpu")
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for video, frames in dataset.iter_videos():
                for rec, _ in run_video(model, video, frames, img_root, run):
                    f.write(json.dumps(rec.to_record()) + "\n")
        os.replace(tmp, path)
    videos: dict[int, list[FrameResult]] = {}
    for line in path.read_text().splitlines():
        try:
            rec = FrameResult.from_record(json.loads(line), model.class_names)
        except (KeyError, ValueError, TypeError):
            raise SystemExit(
                f"{path}: not FrameResult records (an earlier version's file?); delete it to rerun"
            ) from None
        videos.setdefault(rec.video_id, []).append(rec)
    return list(videos.values())


def ap50(dataset: CocoVID, videos: list[list[FrameResult]], class_names: tuple[str, ...]) -> float:
    """COCO AP50 (mmtracking's protocol, as `dff test` reports it) of all frames."""
    records = [rec for video in videos for rec in video]
    return evaluate(dataset, records, class_names, metrics=("coco",))["coco_ap50"].mean


def rescored(videos: list[list[FrameResult]], config: SeqNMSConfig) -> tuple[list[list[FrameResult]], dict]:
    """The records after Seq-NMS per video, and its cost in ms per frame: wall time and this process's CPU time
    (Seq-NMS alone; on a shared machine the CPU time is the steadier of the two)."""
    out, wall, cpu, frames = [], 0.0, 0.0, 0
    for video in videos:
        start, start_cpu = time.perf_counter(), time.process_time()
        out.append(seq_nms_results(video, config))
        wall, cpu = wall + time.perf_counter() - start, cpu + time.process_time() - start_cpu
        frames += len(video)
    return out, {"ms_per_frame": 1000 * wall / frames, "cpu_ms_per_frame": 1000 * cpu / frames}


def tracking(dataset: CocoVID, videos: list[list[FrameResult]], class_names: tuple[str, ...]) -> dict:
    """Overall HOTA / MOTA / IDF1 of ByteTrack (library defaults, one tracker per video) over the detections."""
    tracker = OnlineTracker(TrackerConfig(tracker="bytetrack"))
    tracks = {}
    for video in videos:
        tracker.reset()
        for r in video:
            tracks[r.image_id] = FrameTracks(r.boxes, r.labels, tracker.update(r.boxes, r.scores, r.labels))
    o = evaluate_tracking(dataset, tracks, class_names).overall
    return {"hota": o.hota, "mota": o.mota, "idf1": o.idf1, "id_switches": o.id_switches}


def measure_seed(model: dff.DFFModel, work: Path, seed: int, settings: list[SeqNMSConfig], track: bool) -> dict:
    r = Recipe()
    val = stage_val(work, r, seed)
    dataset = CocoVID.load(val / "annotations" / "imagenet_vid_val.json")
    out: dict = {}
    for mode in MODES:
        videos = detections(model, dataset, val / "Data" / "VID", work / f"detections_seed{seed}_{mode}.jsonl", mode)
        row: dict = {"ap50": ap50(dataset, videos, model.class_names), "seq_nms": {}}
        for setting in settings:
            after, cost = rescored(videos, setting)
            row["seq_nms"][label(setting)] = {"ap50": ap50(dataset, after, model.class_names), **cost}
        if track:
            row["tracking"] = tracking(dataset, videos, model.class_names)
        out[mode] = row
        log.info("seed %d %s: %s", seed, mode, json.dumps(row))
    return out


def markdown(results: dict[int, dict], setting: SeqNMSConfig) -> str:
    key = label(setting)
    lines = [
        f"Seq-NMS ({key}); COCO AP50, all boxes; Seq-NMS's own cost in ms per frame, wall / CPU time, one thread, "
        "on a loaded machine:",
        "",
        "| val seed | "
        + " | ".join(f"{NAMES[m]} | + Seq-NMS | gain" for m in MODES)
        + " | "
        + " | ".join(f"Seq-NMS ms/frame ({NAMES[m]})" for m in MODES)
        + " |",
        "|---" * (1 + 4 * len(MODES)) + "|",
    ]
    gains: dict[str, list[float]] = {m: [] for m in MODES}
    cells: dict[str, list[list[float]]] = {m: [] for m in MODES}
    for seed, rows in results.items():
        row = []
        for mode in MODES:
            before, after = rows[mode]["ap50"], rows[mode]["seq_nms"][key]["ap50"]
            gains[mode].append(100 * (after - before))
            cells[mode].append([100 * before, 100 * after])
            row += [f"{100 * before:.1f}", f"{100 * after:.1f}", f"{100 * (after - before):+.1f}"]
        for mode in MODES:
            cost = rows[mode]["seq_nms"][key]
            row.append(f"{cost['ms_per_frame']:.1f} / {cost['cpu_ms_per_frame']:.1f}")
        lines.append(f"| {seed} | " + " | ".join(row) + " |")
    if len(results) > 1:
        row = []
        for mode in MODES:
            n = len(cells[mode])
            before, after = (sum(c[i] for c in cells[mode]) / n for i in (0, 1))
            row += [f"{before:.1f}", f"{after:.1f}", f"{sum(gains[mode]) / n:+.1f}"]
        lines.append("| mean | " + " | ".join(row) + " |" + " |" * len(MODES))
    tracked = [(seed, rows) for seed, rows in results.items() if "tracking" in rows["per_frame"]]
    if tracked:
        lines += [
            "",
            "OnlineTracker (ByteTrack, library defaults) over the raw detections; overall (classes pooled), percent:",
            "",
            "| val seed | mode | HOTA | MOTA | IDF1 | id switches |",
            "|---|---|---|---|---|---|",
        ]
        for mode in MODES:
            for seed, rows in tracked:
                t = rows[mode]["tracking"]
                lines.append(
                    f"| {seed} | {NAMES[mode]} | {100 * t['hota']:.1f} | {100 * t['mota']:.1f} | "
                    f"{100 * t['idf1']:.1f} | {t['id_switches']} |"
                )
            if len(tracked) > 1:
                mean = {
                    k: sum(rows[mode]["tracking"][k] for _, rows in tracked) / len(tracked)
                    for k in ("hota", "mota", "idf1")
                }
                lines.append(
                    f"| mean | {NAMES[mode]} | {100 * mean['hota']:.1f} | {100 * mean['mota']:.1f} | "
                    f"{100 * mean['idf1']:.1f} | |"
                )
    return "\n".join(lines) + "\n"


def sweep_markdown(results: dict[int, dict]) -> str:
    lines = [
        "| seed | Seq-NMS setting | " + " | ".join(f"{NAMES[m]} gain" for m in MODES) + " | ms/frame (per-frame) |",
        "|---" * (3 + len(MODES)) + "|",
    ]
    for seed, rows in results.items():
        for key in rows["per_frame"]["seq_nms"]:
            gains = [100 * (rows[m]["seq_nms"][key]["ap50"] - rows[m]["ap50"]) for m in MODES]
            ms = rows["per_frame"]["seq_nms"][key]["ms_per_frame"]
            lines.append(f"| {seed} | {key} | " + " | ".join(f"{g:+.2f}" for g in gains) + f" | {ms:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="working folder (val sets, detections, results)")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="val set seeds")
    p.add_argument(
        "--sweep", choices=tuple(GRIDS), help=f"evaluate this grid of settings instead (dev seed {DEV_SEED} only)"
    )
    p.add_argument("--no-track", action="store_true", help="skip the tracking metrics")
    p.add_argument("--detect-only", action="store_true", help="only make the val sets and the detections")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.sweep and args.seeds != [DEV_SEED]:
        p.error(f"--sweep chooses the settings: only on the dev seed {DEV_SEED}")
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    model = dff.load(MODEL_PATH, preset=PRESET)
    if args.detect_only:
        for seed in args.seeds:
            val = stage_val(args.work, Recipe(), seed)
            dataset = CocoVID.load(val / "annotations" / "imagenet_vid_val.json")
            for mode in MODES:
                path = args.work / f"detections_seed{seed}_{mode}.jsonl"
                detections(model, dataset, val / "Data" / "VID", path, mode)
        return 0
    settings = GRIDS[args.sweep] if args.sweep else [CHOSEN]
    results = {seed: measure_seed(model, args.work, seed, settings, not args.no_track) for seed in args.seeds}
    name = f"sweep_{args.sweep}" if args.sweep else "seeds_" + "_".join(map(str, args.seeds))
    table = sweep_markdown(results) if args.sweep else markdown(results, CHOSEN)
    summary = {
        "results": results,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, load {os.getloadavg()[0]:.1f}",
        "torch": torch.__version__,
    }
    (args.work / f"{name}.json").write_text(json.dumps(summary, indent=1))
    (args.work / f"{name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
