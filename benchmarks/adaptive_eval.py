"""Fixed against adaptive key frames for the bundled tiny model on fresh synthetic val sets (standard and varied).

    python benchmarks/adaptive_eval.py --work runs/adaptive --seeds 2 --splits standard,varied     # the dev seed
    python benchmarks/adaptive_eval.py --work runs/adaptive --seeds 14,15,16 --threads 2           # the report

Per seed and split: a val set made as benchmarks/train_tiny.py makes its val sets (20 videos x 60 frames,
480x272), then COCO AP50 (as `dff test`) of per-frame detection, fixed@10 and Adaptive(budget=10) (and any
--budgets), their key-frame counts, and on the varied split the share of shot cuts with a key frame within one
frame. Writes `<work>/results.json` (kept between runs: a (seed, split, mode) already measured is not redone) and
prints the table. Report only seeds that no tuning looked at (seed 2 is the dev seed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import dff
from dff.cli.demo import MODEL_PATH
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic import load_ground_truth, make_synthetic
from dff.evaluation.evaluate import evaluate
from dff.evaluation.runner import run_video
from dff.keyframes import Adaptive, FixedInterval, KeyFramePolicy

VAL = dict(videos=0, frames=60, width=480, height=272, det_images=0, val_videos=20)


def val_set(work: Path, seed: int, split: str) -> Path:
    root = work / f"val_{split}_seed{seed}"
    if not (root / "annotations" / "imagenet_vid_val.json").is_file():
        make_synthetic(root, seed=seed, overwrite=True, style=split, progress=False, **VAL)
        convert_dataset(root, parts=("vid_val",), progress=False)
    return root


def run_mode(model: dff.DFFModel, root: Path, policy: KeyFramePolicy) -> dict:
    dataset = CocoVID.load(root / "annotations" / "imagenet_vid_val.json")
    run = dff.RunOptions(key_policy=policy, device="cpu")
    records, t0 = [], time.perf_counter()
    for video, frames in dataset.iter_videos():
        records += [rec for rec, _ in run_video(model, video, frames, root / "Data" / "VID", run)]
    seconds = time.perf_counter() - t0
    ap = evaluate(dataset, records, model.class_names, metrics=("coco",))["coco_ap50"].mean
    keys = {(r.video_id, r.frame_index) for r in records if r.is_key_frame}
    names = {v["id"]: v["name"] for v in dataset.videos}
    gt = {v.name: v for v in load_ground_truth(root).videos}
    cuts = [(vid, c) for vid, name in names.items() for c in gt[name].cuts]
    hit = sum(any((vid, c + d) in keys for d in (0, 1)) for vid, c in cuts)
    return {
        "ap50": ap,
        "frames": len(records),
        "key_frames": len(keys),
        "cuts": len(cuts),
        "cuts_keyed": hit,
        "fps": len(records) / seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--seeds", default="2")
    p.add_argument("--splits", default="standard,varied")
    p.add_argument("--budgets", default="10", help="adaptive budgets to run (fixed@10 and per-frame always run)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    out_path = args.work / "results.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    model = dff.load(MODEL_PATH)
    modes = {"per_frame": lambda: FixedInterval(1), "fixed10": lambda: FixedInterval(10)}
    for b in (float(x) for x in args.budgets.split(",")):
        modes[f"adaptive{b:g}"] = lambda b=b: Adaptive(budget=b)
    for seed in (int(s) for s in args.seeds.split(",")):
        for split in args.splits.split(","):
            root = val_set(args.work, seed, split)
            for mode, policy in modes.items():
                key = f"{split}/seed{seed}/{mode}"
                if key not in results:
                    results[key] = run_mode(model, root, policy())
                    out_path.write_text(json.dumps(results, indent=1))
                r = results[key]
                print(
                    f"{key:<32} AP50 {100 * r['ap50']:5.1f}  key frames {r['key_frames']:4d}/{r['frames']}"
                    f"  cuts keyed {r['cuts_keyed']}/{r['cuts']}  {r['fps']:.1f} fps",
                    flush=True,
                )
    for split in args.splits.split(","):
        seeds = [s for s in args.seeds.split(",")]
        for mode in modes:
            aps = [results[f"{split}/seed{s}/{mode}"]["ap50"] for s in seeds]
            print(f"{split:>9} {mode:<14} mean AP50 {100 * statistics.fmean(aps):5.1f}")


if __name__ == "__main__":
    main()
