"""What `--dtype bf16` / `fp16` costs in accuracy: the bundled `tiny_synthetic` model's COCO AP50 in fp32, bf16 and
fp16, per frame and DFF@10, on a fresh synthetic val set.

    python benchmarks/precision_ap.py --work runs/precision --threads 1    # seed 50: 20 min, 1 thread, shared machine

The val set is made as `benchmarks/train_tiny.py`'s val stage makes its own (20 videos x 60 frames, 480x272, the
synthetic generator) with a seed no experiment had used (50: now spent, see ARCHITECTURE.md), and evaluated as its
eval stage and `dff test` do (mmtracking's COCO AP50, also the ILSVRC-devkit AP50). Prints a Markdown table and
writes it with the raw numbers to --work.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import torch

import dff
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.evaluation.evaluate import evaluate
from dff.evaluation.runner import run_video

MODEL = Path(dff.__file__).resolve().parent / "assets" / "tiny_synthetic.safetensors"
DTYPES = ("fp32", "bf16", "fp16")
MODES = {"per-frame": 1, "DFF@10": 10}  # name -> key interval


def make_val(root: Path, seed: int, videos: int = 20, frames: int = 60) -> Path:
    """A fresh synthetic val set as train_tiny's stage_val writes one (kept when it is already there)."""
    ann = root / "annotations" / "imagenet_vid_val.json"
    if not ann.is_file():
        make_synthetic(root, videos=0, frames=frames, seed=seed, det_images=0, val_videos=videos, overwrite=True)
        convert_dataset(root, parts=("vid_val",))
    return ann


def ap50(model: dff.DFFModel, dataset: CocoVID, img_root: Path, run: dff.RunOptions) -> dict[str, float]:
    """COCO AP50 (mmtracking's number) and ILSVRC-devkit AP50 of `model` run as `run` over every video of
    `dataset`."""
    records = []
    for video, images in dataset.iter_videos():
        records += [rec for rec, _ in run_video(model, video, images, img_root, run)]
    result = evaluate(dataset, records, model.class_names, metrics=("coco", "ilsvrc"))
    return {k: v.mean for k, v in result.items()}


def markdown(results: dict, seed: int, threads: int, command: str) -> str:
    lines = [
        f"| tiny_synthetic, fresh synthetic val (seed {seed}, 20 videos x 60 frames) | "
        + " | ".join(f"{d} COCO AP50" for d in DTYPES)
        + " | bf16 - fp32 | fp16 - fp32 |",
        "|---|" + "---:|" * (len(DTYPES) + 2),
    ]
    for mode in MODES:
        row = [100 * results[d][mode]["coco_ap50"] for d in DTYPES]
        lines.append(
            f"| {mode} | "
            + " | ".join(f"{v:.1f}" for v in row)
            + f" | {row[1] - row[0]:+.2f} | {row[2] - row[0]:+.2f} |"
        )
    lines += [
        "",
        "ILSVRC-devkit AP50 (fp32 / bf16 / fp16): "
        + "; ".join(
            f"{mode} " + " / ".join(f"{100 * results[d][mode]['ilsvrc_ap50']:.1f}" for d in DTYPES) for mode in MODES
        )
        + ".",
        "",
        f"`{command}`; torch {torch.__version__}, CPU ({platform.processor() or platform.machine()}), "
        f"{threads} thread(s), {date.today().isoformat()}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="working folder (the val set and the results)")
    p.add_argument("--seed", type=int, default=50, help="val-set seed (default 50; pick a fresh one for a new run)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = args.work / f"val_seed{args.seed}"
    dataset = CocoVID.load(make_val(root, args.seed))
    model = dff.load(MODEL, preset="tiny_synthetic")
    results: dict = {}
    for dtype in DTYPES:
        for mode, interval in MODES.items():
            run = dff.RunOptions(key_policy=dff.FixedInterval(interval), dtype=dtype, device="cpu")
            results.setdefault(dtype, {})[mode] = ap50(model, dataset, root / "Data" / "VID", run)
            print(dtype, mode, results[dtype][mode], flush=True)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    table = markdown(results, args.seed, args.threads, command)
    (args.work / "precision_ap.json").write_text(json.dumps({"seed": args.seed, "results": results}, indent=1))
    (args.work / "precision_ap.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
