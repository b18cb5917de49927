"""Peak training memory of one short `dff train` run per preset, as mmtracking's README reports it ("Mem (GB)":
`torch.cuda.max_memory_allocated`, in units of 2**30 bytes; mmtracking: 2.50 / 3.25 / 4.95 for R-50 / R-101 / X-101).

    python benchmarks/train_memory.py --work runs/train_memory --device cuda            # all three presets
    python benchmarks/train_memory.py --work runs/mem --device cpu --preset tiny_synthetic --iters 1 --size 320x192

The training set is synthetic (2 videos and 2 DET images at 1280x720, like the ILSVRC frames; resized by the train
pipeline to 1000x563 as ImageNet VID is), the weights random: neither changes the memory. One pair per step
(mmtracking's samples_per_gpu=1), fp32. Prints one line per preset; on a CPU device the peak is not measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dff.data.convert import convert_dataset
from dff.data.synthetic import make_synthetic
from dff.training.loop import TrainOptions, train

MMTRACKING_GB = {"r50_dc5": 2.50, "r101_dc5": 3.25, "x101_dc5": 4.95}


def make_data(root: Path, width: int, height: int) -> Path:
    """A small synthetic VID + DET training set (kept when it is already there)."""
    if not (root / "annotations" / "imagenet_det_30plus1cls.json").is_file():
        make_synthetic(root, videos=2, frames=20, width=width, height=height, det_images=2, val_videos=0,
                       overwrite=True, progress=False)  # fmt: skip
        convert_dataset(root, parts=("vid_train", "det"), progress=False)
    return root


def peak_memory(preset: str, data: Path, out: Path, iters: int, device: str) -> float | None:
    """GB (2**30 bytes) of `torch.cuda.max_memory_allocated` over `iters` training steps; None on CPU."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    opts = TrainOptions(
        preset=preset,
        ann=data / "annotations" / "imagenet_vid_train.json",
        det_ann=data / "annotations" / "imagenet_det_30plus1cls.json",
        data_root=data,
        out=out,
        max_iters=iters,
        device=device,
        workers=0,
        log_every=iters,
        progress_bar=False,
    )
    train(opts)
    return torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="working folder (the data set and the runs)")
    p.add_argument("--preset", action="append", help="preset to measure (repeatable; default: the three of mmtracking)")
    p.add_argument("--iters", type=int, default=20, help="training steps per preset (default 20)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--size", default="1280x720", help="WxH of the synthetic frames (default 1280x720)")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    data = make_data(args.work / f"data_{width}x{height}", width, height)
    for preset in args.preset or list(MMTRACKING_GB):
        out = args.work / f"run_{preset}"
        if (out / "latest.pth").exists():
            (out / "latest.pth").unlink()  # a fresh run, never a resume
        gb = peak_memory(preset, data, out, args.iters, args.device)
        ref = MMTRACKING_GB.get(preset)
        measured = "not measured on CPU" if gb is None else f"{gb:.2f} GB"
        print(
            f"train memory {preset}: torch.cuda.max_memory_allocated {measured} after {args.iters} steps"
            + (f" (mmtracking: {ref:.2f} GB)" if ref else ""),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
