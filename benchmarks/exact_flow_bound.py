"""How close DFF@10 can come to per-frame detection on the synthetic val sets with a perfect flow.

    python benchmarks/exact_flow_bound.py --work runs/tiny --threads 2     # after train_tiny.py; ~18 min

Trains the `tiny_synthetic` recipe once more, from the same data, pre-trained FlowNet and seed as
`train_tiny.py`, but every video pair warps the reference features by the synthetic generator's exact flow from
the key image to its reference (`ground_truth_flow`: camera, objects, uncovered background; resized and mirrored
with the images) instead of the FlowNet's. The FlowNet stays in the graph at weight 0, so only the detector
learns, and it learns on perfectly warped features. The model is then evaluated per frame and as DFF@10 with the
exact flow on every val set of the work folder: the gap that no better flow network could close.

Writes `<work>/exact_flow/` (the training run, `results.json`, `results.md`); stages already done are skipped.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

import torch

import dff
from dff.data.cocovid import CocoVID
from dff.data.synthetic import load_ground_truth
from dff.data.train_dataset import TrainPair
from dff.evaluation.coco import coco_ap50
from dff.evaluation.runner import run_video
from dff.models.detector import DFF
from dff.training.loop import train
from dff.training.losses import DFFLoss, dff_features
from train_tiny import (
    FLOWNET,
    OFFSETS,
    PRESET,
    Recipe,
    at_offsets_from_key,
    cached,
    oracle_flow,
    run_with_oracle_flow,
    run_workers,
    train_options,
)

log = logging.getLogger("exact_flow_bound")


class ExactFlowLoss(DFFLoss):
    """DFFLoss whose video pairs warp by the generator's exact flow (key image -> reference); the FlowNet's output
    joins at weight 0, so its parameters stay in the graph (DDP) but do not learn."""

    def __init__(self, net: DFF, data: Path) -> None:
        super().__init__(net)
        self.frames = (data / "Data" / "VID").resolve()
        self.videos = {v.name: v for v in load_ground_truth(data).videos}

    def _exact(self, pair: TrainPair) -> torch.Tensor:
        key, ref = pair.img_meta, pair.ref_img_meta
        video = self.videos[Path(key.filename).resolve().parent.relative_to(self.frames).as_posix()]
        return oracle_flow(video, key.frame_id, ref.frame_id, key, self.net.cfg.rpn.stride, flip=key.flip)

    def features(self, group: list[TrainPair], img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        img_shape = group[0].img_meta.img_shape
        flow = self.net.motion(img, ref, img_shape)
        exact = torch.cat([self._exact(p) if p.is_video_data else torch.zeros_like(flow[:1].cpu()) for p in group])
        is_video = torch.tensor([p.is_video_data for p in group], device=img.device)
        return dff_features(self.net, img, ref, img_shape, is_video, exact.to(flow) + 0 * flow)


def train_worker(work: Path, out: Path, r: Recipe, procs: int) -> None:
    """One process of the training run (under torchrun when procs > 1): train_tiny.py's training options, with
    ExactFlowLoss."""
    data = work / "data"
    train(train_options(data, work / FLOWNET, out, r, procs), loss=functools.partial(ExactFlowLoss, data=data))


def stage_train(work: Path, out: Path, procs: int) -> Path:
    model = out / "model.safetensors"
    if not model.is_file():
        run_workers(Path(__file__), work, procs)
    return model


def stage_eval(model_path: Path, val: Path) -> dict:
    """COCO AP50, all frames and by distance to the key frame: per frame, and DFF@10 with the exact flow."""
    dataset = CocoVID.load(val / "annotations" / "imagenet_vid_val.json")
    model = dff.load(model_path, preset=PRESET)
    per_frame = dff.RunOptions(key_policy=dff.FixedInterval(1), device="cpu")
    runs = {
        "per_frame": [
            rec
            for video, frames in dataset.iter_videos()
            for rec, _ in run_video(model, video, frames, val / "Data" / "VID", per_frame)
        ]
    }
    runs["dff_exact_flow"], _ = run_with_oracle_flow(model, dataset, val, {}, interval=10)
    label_of = {c: i for i, c in enumerate(dataset.category_ids(model.class_names))}
    out = {}
    for mode, records in runs.items():
        out[mode] = {
            name: coco_ap50(*at_offsets_from_key(dataset, records, label_of, offsets), len(label_of)).mean
            for name, offsets in {"all": tuple(range(10)), **OFFSETS}.items()
        }
        log.info("%s %s: %s", val.name, mode, out[mode])
    return out


def markdown(results: dict[int, dict]) -> str:
    lines = [
        "| val seed | per-frame | DFF@10, exact flow | gap | per-frame 7-9 | DFF@10 exact flow 7-9 |",
        "|---|---|---|---|---|---|",
    ]
    for seed, row in sorted(results.items()):
        pf, ex = row["per_frame"], row["dff_exact_flow"]
        lines.append(
            f"| {seed} | {100 * pf['all']:.1f} | {100 * ex['all']:.1f} | {100 * (ex['all'] - pf['all']):+.1f}"
            f" | {100 * pf['7-9']:.1f} | {100 * ex['7-9']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="train_tiny.py's working folder")
    p.add_argument("--procs", type=int, default=2, help="training processes, one thread each (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the evaluation (default 1)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.work / "exact_flow"
    if args.worker:
        train_worker(args.work, out, Recipe(), args.procs)
        return 0
    torch.set_num_threads(args.threads)
    model = stage_train(args.work, out, args.procs)
    vals = sorted(args.work.glob("val*/annotations/imagenet_vid_val.json"))
    results = {
        load_ground_truth(v.parents[1]).seed: cached(
            out / f"eval_{v.parents[1].name}.json", functools.partial(stage_eval, model, v.parents[1])
        )
        for v in vals
    }
    (out / "results.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))
    table = markdown(results)
    (out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
