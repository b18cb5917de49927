"""Reproduce the bundled `tiny_synthetic` model from scratch and measure it.

    python benchmarks/train_tiny.py --work runs/tiny --threads 2            # everything, ~27 min on 2 idle cores
    python benchmarks/train_tiny.py --work runs/tiny --threads 2 --install  # ... and copy the model + demo clip
                                                                            #     into dff/assets

Stages (each skipped when its output already exists in --work, so an interrupted run continues):

1. data:  `make_synthetic` training set (videos + DET images, seed 0) and its COCO-VID / COCO JSON;
2. flow:  FlowNet pre-training on "flying patches" made from the training frames (dense, known flow), because no
          Flying Chairs FlowNetSimple is available offline -> `flownet_pretrained.pth`;
3. train: the DFF recipe (`dff.training.loop.train`, the same code as `dff train`) from that FlowNet and a
          randomly initialised ResNet-18 -> `train/model.safetensors`, and its float16 copy
          `tiny_synthetic.safetensors` (the file that ships; all numbers are measured on it);
4. val:   *fresh* synthetic val sets (other seeds) -> `val*/annotations/imagenet_vid_val.json`;
5. eval:  COCO AP50 (mmtracking's protocol) per frame (key interval 1), DFF@10 and DFF@10 with zero flow, overall
          and by FGFA motion bucket, and the ILSVRC-devkit numbers, on the first val set; per frame and DFF@10 on
          the others -> `results.json` and a Markdown table.

Timings of every stage are recorded with the machine's load, since other processes may share the cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

import dff
from dff.config import preset
from dff.data.cocovid import CocoVID
from dff.data.convert import convert_dataset
from dff.data.synthetic import SyntheticVideo, ground_truth_flow, load_ground_truth, make_synthetic
from dff.data.transforms import ImageMeta, preprocess
from dff.evaluation.coco import coco_ap50
from dff.evaluation.evaluate import coco_results, evaluate
from dff.evaluation.ilsvrc import MOTION_RANGES
from dff.evaluation.motion import gt_motion_iou
from dff.evaluation.runner import run_video
from dff.io.image import read_image
from dff.io.result import FrameResult
from dff.models.detector import DFF
from dff.models.network import zero_flow
from dff.training.flow_pretrain import FlowPretrainConfig, FlyingPatches, pretrain_flownet, save_flownet, warp_target
from dff.training.loop import train
from dff.training.options import LATEST, TrainOptions

log = logging.getLogger("train_tiny")

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "src" / "dff" / "assets"
PRESET = "tiny_synthetic"
FLOWNET = "flownet_pretrained.pth"  # the pre-trained FlowNet in the work folder


@dataclass(frozen=True)
class Recipe:
    """Every constant of the reproduction (the model's own constants live in the preset)."""

    train_videos: int = 30
    frames: int = 60
    det_images: int = 60
    data_seed: int = 0
    val_videos: int = 20
    val_seed: int = 1  # a fresh val set: never seen while choosing any constant
    more_val_seeds: tuple[int, ...] = (3, 4, 5, 6, 7)  # further fresh val sets: how much the numbers move with the seed
    width: int = 480
    height: int = 272
    flow_iters: int = 20000
    train_seed: int = 0
    batch_size: int = 2
    key_interval: int = 10
    demo_frames: int = 90


MODES = {  # name -> (key interval, use flow)
    "per_frame": (1, True),
    "dff": (10, True),
    "dff_zero_flow": (10, False),
}


def mode_run(interval: int, use_flow: bool) -> dff.RunOptions:
    """The run of an evaluation mode: a key frame every `interval` frames, the FlowNet's flow (or zero flow), on
    the CPU."""
    return dff.RunOptions(
        key_policy=dff.FixedInterval(interval), propagation=None if use_flow else zero_flow, device="cpu"
    )


def _load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


class Timer:
    """Wall time of each stage with the 1-minute load average at its start and end, kept in `path` so that a run
    that is interrupted and started again adds up the time of every attempt (finished stages take ~0 s)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, fn, *args, **kwargs):
        load0, t0 = _load_average(), time.time()
        out = fn(*args, **kwargs)
        seconds = time.time() - t0
        before = self.stages.get(name)
        if before is None or seconds >= 1.0:  # a stage found done (~0 s) keeps its record
            self.stages[name] = {
                "seconds": round(seconds + (before["seconds"] if before else 0.0), 1),
                "load_start": before["load_start"] if before else load0,
                "load_end": _load_average(),
            }
        self.path.write_text(json.dumps(self.stages, indent=1))
        log.info("stage %s: %.1f s", name, seconds)
        return out


def stage_data(work: Path, r: Recipe) -> Path:
    root = work / "data"
    if not (root / "annotations" / "imagenet_det_30plus1cls.json").is_file():
        make_synthetic(
            root,
            videos=r.train_videos,
            frames=r.frames,
            seed=r.data_seed,
            width=r.width,
            height=r.height,
            det_images=r.det_images,
            val_videos=0,
            overwrite=True,
        )
        convert_dataset(root, parts=("vid_train", "det"))
    return root


def stage_flow(work: Path, data: Path, r: Recipe) -> Path:
    path = work / FLOWNET
    if not path.is_file():
        cfg = preset(PRESET)
        torch.manual_seed(r.train_seed)
        net = DFF(cfg)
        coco = CocoVID.load(data / "annotations" / "imagenet_vid_train.json")
        patches = FlyingPatches.from_videos(coco, data / "Data" / "VID", cfg, seed=r.train_seed)
        history = pretrain_flownet(net.motion, patches, FlowPretrainConfig(iters=r.flow_iters), cfg.rpn.stride)
        (work / "flow_history.json").write_text(json.dumps(history))
        save_flownet(net.motion, path)
    return path


def train_options(data: Path, flow: Path, out: Path, r: Recipe, procs: int) -> TrainOptions:
    """The recipe's training options for `procs` processes (resuming when `out` holds a checkpoint); what
    `dff train --preset tiny_synthetic --data-root DATA --ann ... --det-ann ... --out OUT --batch-size B/procs
    --workers 0 --seed S --flownet-weights FLOW --no-progress [--resume]` builds."""
    latest = out / LATEST
    return TrainOptions(
        preset=PRESET,
        data_root=data,
        ann=data / "annotations" / "imagenet_vid_train.json",
        det_ann=data / "annotations" / "imagenet_det_30plus1cls.json",
        out=out,
        batch_size=r.batch_size // procs,
        workers=0,
        seed=r.train_seed,
        flownet_weights=flow,
        progress_bar=False,
        resume=latest if latest.is_file() else None,
    )


def stage_train(work: Path, data: Path, flow: Path, r: Recipe, procs: int) -> Path:
    """`dff.training.loop.train` (the code under `dff train`) in `procs` single-threaded processes (torchrun, gloo)
    of batch_size / procs pairs each: this script again with --worker.

    Processes rather than threads: on a shared machine OpenMP threads of one process wait for each other at every
    operator, which costs far more than gloo's gradient all-reduce.
    """
    model = work / "train" / "model.safetensors"
    if not model.is_file():
        run_workers(Path(__file__), work, procs)
    return model


def run_workers(script: Path, work: Path, procs: int) -> None:
    """`script --work WORK --procs N --worker` in `procs` single-threaded processes (torchrun when more than one)."""
    cmd = [sys.executable, str(script), "--work", str(work), "--procs", str(procs), "--worker"]
    if procs > 1:
        cmd[1:2] = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), str(script)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def train_worker(work: Path, r: Recipe, procs: int) -> None:
    """One process of the training run (under torchrun when procs > 1)."""
    train(train_options(work / "data", work / FLOWNET, work / "train", r, procs))


def stage_ship(work: Path, model: Path) -> Path:
    """The trained model with its weights stored as float16 (half the file, loaded as float32): the file that ships
    and the one every number below is measured on."""
    path = work / "tiny_synthetic.safetensors"
    if not path.is_file():
        dff.load(model, preset=PRESET).save(path, torch.float16)
    return path


def stage_val(work: Path, r: Recipe, seed: int) -> Path:
    root = work / ("val" if seed == r.val_seed else f"val_seed{seed}")
    if not (root / "annotations" / "imagenet_vid_val.json").is_file():
        make_synthetic(
            root,
            videos=0,
            frames=r.frames,
            seed=seed,
            width=r.width,
            height=r.height,
            det_images=0,
            val_videos=r.val_videos,
            overwrite=True,
        )
        convert_dataset(root, parts=("vid_val",))
    return root


def coco_ap50_by_motion(dataset: CocoVID, records, class_names, motion: dict, bucket: str) -> float:
    """COCO AP50 counting only GT boxes of a motion bucket; the others become crowd (ignored) regions,
    so detections on them are neither true nor false positives."""
    lo, hi = MOTION_RANGES[bucket]
    cat_ids = dataset.category_ids(class_names)
    label_of = {c: i for i, c in enumerate(cat_ids)}
    gt = [
        {**a, "category_id": label_of[a["category_id"]] + 1, "iscrowd": not (lo <= motion[a["id"]] <= hi)}
        for a in dataset.all_annotations()
        if a["category_id"] in label_of
    ]
    return coco_ap50(dataset.images, gt, coco_results(records, range(1, len(cat_ids) + 1)), len(cat_ids)).mean


def cached(path: Path, compute) -> dict:
    """`compute()`'s JSON result, kept in `path` so that a second run (e.g. with --install) does not redo it."""
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.write_text(json.dumps(result, indent=1))
    return result


def stage_eval(model_path: Path, val: Path, modes: tuple[str, ...] = tuple(MODES)) -> dict:
    dataset = CocoVID.load(val / "annotations" / "imagenet_vid_val.json")
    motion = gt_motion_iou(dataset)
    model = dff.load(model_path, preset=PRESET)
    out: dict = {}
    for mode in modes:
        run = mode_run(*MODES[mode])
        t0, records = time.time(), []
        for video, frames in dataset.iter_videos():
            records += [rec for rec, _ in run_video(model, video, frames, val / "Data" / "VID", run)]
        seconds = time.time() - t0
        row = {b: coco_ap50_by_motion(dataset, records, model.class_names, motion, b) for b in MOTION_RANGES}
        devkit = evaluate(dataset, records, model.class_names, metrics=("ilsvrc", "motion"))
        row["devkit"] = {k: v.mean for k, v in devkit.items()}
        row["fps"] = len(records) / seconds
        out[mode] = row
        log.info("%s: %s", mode, {k: v for k, v in row.items() if k != "devkit"})
    return out


OFFSETS = {"key (0)": (0,), "1-3": (1, 2, 3), "4-6": (4, 5, 6), "7-9": (7, 8, 9)}
CONFIDENT = 0.5  # score of a confident detection in the error counts of the analysis
LOCALISED = ("per_frame", "dff", "dff_oracle_flow")  # the runs whose errors the analysis also counts
FAST_SHIFT = 0.3  # box widths the centre moved since the key frame: a "fast, far" box of the localisation analysis


def oracle_flow(
    video: SyntheticVideo, t: int, k: int, meta: ImageMeta, stride: int, flip: bool = False
) -> torch.Tensor:
    """(1, 2, Hp, Wp) FlowNet-style flow from frame t to key frame k: the generator's exact flow (`ground_truth_flow`:
    camera, objects, uncovered background), resized to the detector's input (and mirrored with it when `flip`, as
    training pairs may be), plus the ramp DFF's warp needs."""
    h, w = meta.img_shape
    flow = cv2.resize(ground_truth_flow(video, t, k).transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR)
    flow = torch.from_numpy(flow * meta.scale_factor[:2]).permute(2, 0, 1)
    if flip:
        flow = torch.flip(flow, dims=[-1]) * torch.tensor([-1.0, 1.0]).view(2, 1, 1)
    out = torch.zeros(1, 2, *meta.pad_shape)
    out[0, :, :h, :w] = flow
    return warp_target(out, stride)


def run_with_oracle_flow(
    model: dff.DFFModel, dataset: CocoVID, val: Path, fast: dict[int, list], interval: int
) -> tuple[list[FrameResult], list[tuple[float, float]]]:
    """DFF with a key frame every `interval` frames where every non-key frame's flow is the oracle flow instead of
    the FlowNet's, on the reference network; also, for the boxes of `fast`, the FlowNet's error along the object's
    motion (input pixels, inner 60 % of the box; negative = short)."""
    net, stride, records, along = model.net, model.config.rpn.stride, [], []
    synthetic = {v.name: v for v in load_ground_truth(val).videos}
    with torch.inference_mode():
        for video, frames in dataset.iter_videos():
            for im in frames:
                img, meta = preprocess(read_image(val / "Data" / "VID" / im["file_name"]), model.config.preprocess)
                t = im["frame_id"]
                if t % interval == 0:
                    key, state = t, net.key_features(img[None], meta.img_shape)
                    feats = state.feats
                else:  # the DFF step with the oracle's flow in place of the FlowNet's
                    oracle = oracle_flow(synthetic[video["name"]], t, key, meta, stride)
                    feats = net.warp(state.feats, oracle)
                    if im["id"] in fast:
                        error = net.motion(img[None], state.motion, meta.img_shape) - oracle
                        along += [_along_motion(error[0], a, k, meta) for a, k in fast[im["id"]]]
                d = net.detect(feats, [meta])[0]
                records.append(
                    FrameResult(
                        boxes=d.boxes.numpy(),
                        scores=d.scores.numpy(),
                        labels=d.labels.numpy(),
                        frame_index=t,
                        is_key_frame=t % interval == 0,
                        video_id=video["id"],
                        image_id=im["id"],
                    )
                )
    return records, along


def _along_motion(error: torch.Tensor, a: dict, key: dict, meta: ImageMeta) -> tuple[float, float]:
    """Mean of a flow error (2, Hp, Wp) over the inner 60 % of box `a`, along the motion from `a` to `key`, and the
    length of that motion, both in input pixels."""
    s = meta.scale_factor[0]
    (cx, cy), (_, _, w, h) = _centre(a) * s, np.asarray(a["bbox"]) * s
    x1, x2 = int(max(0, cx - 0.3 * w)), int(min(meta.img_shape[1], np.ceil(cx + 0.3 * w)))
    y1, y2 = int(max(0, cy - 0.3 * h)), int(min(meta.img_shape[0], np.ceil(cy + 0.3 * h)))
    motion = _centre(key) - _centre(a)
    length = float(np.linalg.norm(motion))
    return float(error[:, y1:y2, x1:x2].mean((1, 2)).numpy() @ motion) / length, length * s


def stage_analysis(model_path: Path, val: Path) -> dict:
    """COCO AP50 by distance to the key frame, for per-frame, DFF@10 (learned flow), DFF@10 with zero flow and
    DFF@10 with the generator's exact flow (`oracle_flow`): how much of DFF's loss is the flow's fault; and how well
    fast objects far from their key frame are localised, with the FlowNet's error on them."""
    dataset = CocoVID.load(val / "annotations" / "imagenet_vid_val.json")
    model = dff.load(model_path, preset=PRESET)
    runs = {}
    for mode, (interval, use_flow) in MODES.items():
        run = mode_run(interval, use_flow)
        runs[mode] = [
            rec
            for video, frames in dataset.iter_videos()
            for rec, _ in run_video(model, video, frames, val / "Data" / "VID", run)
        ]
    key_of = _key_frame_annotations(dataset)
    fast = _fast_far_boxes(dataset, key_of)
    runs["dff_oracle_flow"], along = run_with_oracle_flow(model, dataset, val, fast, interval=10)
    cat_ids = dataset.category_ids(model.class_names)
    label_of = {c: i for i, c in enumerate(cat_ids)}
    absent, cut = _not_whole_in_key_frame(dataset, key_of)
    out = {}
    for mode, records in runs.items():
        row = {}
        for name, offsets in {"all": tuple(range(10)), **OFFSETS}.items():
            images, gt, results = at_offsets_from_key(dataset, records, label_of, offsets)
            row[name] = coco_ap50(images, gt, results, len(cat_ids)).mean
            if name == "all":  # objects not (wholly) in the key frame become ignored regions
                for column, ignored in (("in key frame", absent), ("whole in key frame", absent | cut)):
                    seen = [{**a, "iscrowd": a["id"] in ignored} for a in gt]
                    row[column] = coco_ap50(images, seen, results, len(cat_ids)).mean
        out[mode] = row
        log.info("analysis %s: %s", mode, row)
    at_offsets = {
        name: [a["id"] for a in dataset.all_annotations() if dataset.image(a["image_id"])["frame_id"] % 10 in offsets]
        for name, offsets in OFFSETS.items()
    }
    for key, ids in (("absent_fraction", absent), ("cut_fraction", cut)):
        out[key] = {name: float(np.mean([i in ids for i in anns])) for name, anns in at_offsets.items()}
    out["fast_far"] = {mode: _localization(runs[mode], fast, label_of) for mode in LOCALISED}
    error, motion = np.asarray(along).T
    out["fast_far_flow"] = {"along_motion_error_px": float(error.mean()), "motion_px": float(motion.mean())}
    out["errors_far"] = {mode: _errors_far_from_key(runs[mode], dataset, key_of, label_of) for mode in LOCALISED}
    return out


def at_offsets_from_key(
    dataset: CocoVID, records: list[FrameResult], label_of: dict[int, int], offsets: tuple[int, ...]
) -> tuple[list[dict], list[dict], list[dict]]:
    """The images `offsets` frames from their key frame (frame_id % 10), their GT boxes (category ids 1..n in
    `label_of`'s order) and `records`' COCO results on them: `coco_ap50`'s arguments."""
    images = [im for im in dataset.images if im["frame_id"] % 10 in offsets]
    ids = {im["id"] for im in images}
    gt = [
        {**a, "category_id": label_of[a["category_id"]] + 1}
        for a in dataset.all_annotations()
        if a["image_id"] in ids and a["category_id"] in label_of
    ]
    return images, gt, coco_results([r for r in records if r.image_id in ids], range(1, len(label_of) + 1))


def _key_frame_annotations(dataset: CocoVID) -> dict[int, dict | None]:
    """Annotation id -> the annotation of the same object in the key frame (frame_id // 10 * 10) of its video, or
    None when the object is not annotated there."""
    frame_of = {im["id"]: (im["video_id"], im["frame_id"]) for im in dataset.images}
    box_at = {(frame_of[a["image_id"]], a["instance_id"]): a for a in dataset.all_annotations()}
    out = {}
    for a in dataset.all_annotations():
        video, t = frame_of[a["image_id"]]
        out[a["id"]] = box_at.get(((video, t - t % 10), a["instance_id"]))
    return out


def _not_whole_in_key_frame(dataset: CocoVID, key_of: dict[int, dict | None]) -> tuple[set[int], set[int]]:
    """Ids of the annotations whose object DFF saw only in part, or not at all, in the key frame of its video
    (absent: not annotated there, it entered or became big enough later; cut: its box there touched the frame
    border and has since grown by 20 % or more)."""
    absent, cut = set(), set()
    for a in dataset.all_annotations():
        key = key_of[a["id"]]
        if key is None:
            absent.add(a["id"])
            continue
        (x, y, w, h), im = key["bbox"], dataset.image(key["image_id"])
        if (x <= 0 or y <= 0 or x + w >= im["width"] or y + h >= im["height"]) and a["area"] >= 1.2 * key["area"]:
            cut.add(a["id"])
    return absent, cut


def _centre(a: dict) -> np.ndarray:
    x, y, w, h = a["bbox"]
    return np.array([x + w / 2, y + h / 2])


def _xyxy(a: dict) -> list[float]:
    x, y, w, h = a["bbox"]
    return [x, y, x + w, y + h]


def _errors_far_from_key(
    records: list[FrameResult], dataset: CocoVID, key_of: dict[int, dict | None], label_of: dict[int, int]
) -> dict[str, int]:
    """Counts at frames 7-9 from the key frame, confident detections (score >= CONFIDENT) matched greedily, highest
    score first, to same-class boxes at IoU >= 0.5: false positives, and those lying where a moved object was in the
    key frame (IoU >= 0.5 with the key-frame box of a same-class object whose box now overlaps that one by < 0.5);
    boxes, missed boxes, those of moved objects, and those of them that a same-class detection of any score >= 0.05
    overlaps by IoU >= 0.5 (found, but not confidently)."""
    counts = {
        k: 0
        for k in ("false_positives", "at_key_position", "boxes", "missed", "missed_moved", "missed_moved_low_score")
    }
    for rec in records:
        anns = [a for a in dataset.annotations(rec.image_id) if a["category_id"] in label_of]
        if rec.frame_index % 10 < 7 or not anns:
            continue
        gt = torch.tensor([_xyxy(a) for a in anns])
        labels = np.array([label_of[a["category_id"]] for a in anns])
        keys = [key_of[a["id"]] for a in anns]
        moved = np.array(
            [
                k is not None and float(box_iou(gt[i : i + 1], torch.tensor([_xyxy(k)]))) < 0.5
                for i, k in enumerate(keys)
            ]
        )
        was_at = torch.tensor([_xyxy(k) for k, m in zip(keys, moved) if m]).reshape(-1, 4)
        boxes = torch.from_numpy(rec.boxes).float().reshape(-1, 4)
        iou = box_iou(boxes, gt) * torch.from_numpy(rec.labels[:, None] == labels[None, :])
        iou_was = box_iou(boxes, was_at) * torch.from_numpy(rec.labels[:, None] == labels[moved][None, :])
        matched = torch.zeros(len(anns), dtype=torch.bool)
        for j in np.argsort(-rec.scores, kind="stable"):
            if rec.scores[j] < CONFIDENT:
                break
            free = iou[j].masked_fill(matched, 0.0)
            if float(free.max()) >= 0.5:
                matched[int(free.argmax())] = True
                continue
            counts["false_positives"] += 1
            counts["at_key_position"] += int(bool((iou_was[j] >= 0.5).any()))
        found = ((iou >= 0.5) & torch.from_numpy(rec.scores >= 0.05)[:, None]).any(0).numpy()
        missed = ~matched.numpy()
        counts["boxes"] += len(anns)
        counts["missed"] += int(missed.sum())
        counts["missed_moved"] += int((missed & moved).sum())
        counts["missed_moved_low_score"] += int((missed & moved & found).sum())
    return counts


def _fast_far_boxes(dataset: CocoVID, key_of: dict[int, dict | None]) -> dict[int, list[tuple[dict, dict]]]:
    """Image id -> (annotation, its key-frame annotation) of the boxes 7-9 frames from the key frame whose centre
    has moved more than FAST_SHIFT box widths since the key frame."""
    out: dict[int, list] = {}
    for a in dataset.all_annotations():
        key = key_of[a["id"]]
        if (
            dataset.image(a["image_id"])["frame_id"] % 10 >= 7
            and key is not None
            and np.linalg.norm(_centre(a) - _centre(key)) > FAST_SHIFT * a["bbox"][2]
        ):
            out.setdefault(a["image_id"], []).append((a, key))
    return out


def _localization(records: list[FrameResult], fast: dict[int, list], label_of: dict[int, int]) -> dict:
    """For the boxes of `fast`: the fraction that a confident detection (score >= 0.3) of their class overlaps by
    IoU >= 0.5, the mean IoU of the best one, and its centre's offset along the object's motion since the key frame
    (box widths; negative = behind, towards the key-frame position) where that IoU is above 0.3."""
    ious, lags = [], []
    for rec in records:
        for a, key in fast.get(rec.image_id, []):
            if a["category_id"] not in label_of:
                continue
            mine = (rec.labels == label_of[a["category_id"]]) & (rec.scores >= 0.3)
            if not mine.any():
                ious.append(0.0)
                continue
            boxes = torch.from_numpy(rec.boxes[mine]).float()
            iou = box_iou(torch.tensor([_xyxy(a)], dtype=torch.float32), boxes)[0]
            best = int(iou.argmax())
            ious.append(float(iou[best]))
            if ious[-1] > 0.3:
                motion = _centre(a) - _centre(key)
                offset = (boxes[best, :2] + boxes[best, 2:]).numpy() / 2 - _centre(a)
                lags.append(float(offset @ motion) / np.linalg.norm(motion) / a["bbox"][2])
    ious = np.asarray(ious)
    return {
        "boxes": len(ious),
        "recall_iou50": float(np.mean(ious >= 0.5)),
        "mean_iou": float(ious.mean()),
        "lag_widths": float(np.mean(lags)),
    }


def write_demo_clip(val: Path, path: Path, frames: int) -> None:
    """The busiest val video (most annotated boxes, fast ones counted twice) as an mp4 (PyAV) for `dff demo`."""
    from dff.io.writers import VideoWriter

    dataset = CocoVID.load(val / "annotations" / "imagenet_vid_val.json")
    motion = gt_motion_iou(dataset)

    def busy(video_frames: list[dict]) -> int:
        anns = [a for im in video_frames for a in dataset.annotations(im["id"])]
        return len(anns) + sum(motion[a["id"]] < MOTION_RANGES["fast"][1] for a in anns)

    images = max((frames_ for _, frames_ in dataset.iter_videos()), key=busy)
    with VideoWriter(path, fps=15) as writer:
        for im in images[:frames]:
            writer.write(read_image(val / "Data" / "VID" / im["file_name"]))


def markdown(results: dict, more: dict, timer: Timer, r: Recipe, threads: int, procs: int) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    names = {"per_frame": "per-frame (key interval 1)", "dff": "DFF@10", "dff_zero_flow": "DFF@10, zero flow"}
    lines = [
        f"| tiny_synthetic, fresh synthetic val (seed {r.val_seed}, {r.val_videos} videos) "
        "| AP50 all | fast | medium | slow | fps (CPU) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, row in results.items():
        lines.append(
            f"| {names[mode]} | {pct(row['all'])} | {pct(row['fast'])} | {pct(row['medium'])} | "
            f"{pct(row['slow'])} | {row['fps']:.1f} |"
        )
    lines += [
        "",
        "ILSVRC devkit protocol (FGFA), same runs:",
        "",
        "| mode | AP50 all | fast | medium | slow |",
        "|---|---|---|---|---|",
    ]
    for mode, row in results.items():
        d = row["devkit"]
        lines.append(
            f"| {names[mode]} | {pct(d.get('ilsvrc_ap50'))} | {pct(d.get('motion_fast'))} | "
            f"{pct(d.get('motion_medium'))} | {pct(d.get('motion_slow'))} |"
        )
    lines += [
        "",
        "Every fresh val set (COCO AP50, all boxes):",
        "",
        "| val seed | per-frame | DFF@10 | DFF@10 - per-frame |",
        "|---|---|---|---|",
    ]
    for seed, rows in {r.val_seed: results, **more}.items():
        lines.append(
            f"| {seed} | {pct(rows['per_frame']['all'])} | {pct(rows['dff']['all'])} | "
            f"{100 * (rows['dff']['all'] - rows['per_frame']['all']):+.1f} |"
        )
    total = sum(s["seconds"] for s in timer.stages.values())
    lines += [
        "",
        f"Stage timings (training: {procs} processes x 1 thread; other stages: {threads} thread(s); "
        f"{platform.machine()}, {os.cpu_count()} logical CPUs; load = 1-minute load average at the stage's "
        "start -> end, other jobs included):",
        "",
        "| stage | seconds | load |",
        "|---|---|---|",
    ]
    for name, s in timer.stages.items():
        lines.append(f"| {name} | {s['seconds']:.0f} | {s['load_start'][:1]} -> {s['load_end'][:1]} |")
    training = sum(timer.stages[k]["seconds"] for k in ("data", "flow", "train") if k in timer.stages)
    lines.append(f"| total | {total:.0f} | |")
    lines.append(f"| of which training (data + flow + train) | {training:.0f} ({training / 60:.1f} min) | |")
    return "\n".join(lines) + "\n"


def analysis_markdown(analysis: dict) -> str:
    names = {
        "per_frame": "per-frame",
        "dff": "DFF@10",
        "dff_zero_flow": "DFF@10, zero flow",
        "dff_oracle_flow": "DFF@10, oracle flow (the generator's exact flow)",
    }
    columns = ("all", *OFFSETS, "in key frame", "whole in key frame")
    lines = [
        "COCO AP50 by distance of the frame to its key frame; the last two columns (all frames) ignore the "
        "boxes of objects that are not in the key frame, and also of those the frame border cut there and that "
        "have grown by 20 % since:",
        "",
        "| mode | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for mode in names:
        lines.append(f"| {names[mode]} | " + " | ".join(f"{100 * analysis[mode][k]:.1f}" for k in columns) + " |")
    for key, what in (("absent_fraction", "not in the key frame"), ("cut_fraction", "cut by the border there")):
        lines += [
            "",
            f"Boxes whose object is {what}: "
            + ", ".join(f"{100 * v:.1f} % at {k} frames" for k, v in analysis[key].items())
            + ".",
        ]
    fast, flow = analysis["fast_far"], analysis["fast_far_flow"]
    lines += [
        "",
        f"Localisation of the {fast['dff']['boxes']} boxes 7-9 frames from the key frame whose centre moved "
        f"more than {FAST_SHIFT} box widths since it (best confident detection of the class, score >= 0.3; "
        "lag: its centre's offset along the motion, box widths, negative = behind):",
        "",
        "| mode | IoU >= 0.5 | mean IoU | lag |",
        "|---|---|---|---|",
    ]
    for mode in fast:
        row = fast[mode]
        lines.append(
            f"| {names[mode]} | {100 * row['recall_iou50']:.1f} % | {row['mean_iou']:.3f} | {row['lag_widths']:+.3f} |"
        )
    lines += [
        "",
        f"The FlowNet's error along these objects' motion (inner 60 % of the box, against the exact flow): "
        f"{flow['along_motion_error_px']:+.1f} px for a mean motion of {flow['motion_px']:.1f} px (input pixels; "
        "negative = too short).",
    ]
    errors = analysis["errors_far"]
    lines += [
        "",
        f"Errors at the {errors['dff']['boxes']} boxes 7-9 frames from the key frame (detections of score >= "
        f"{CONFIDENT} matched to boxes of their class at IoU >= 0.5, highest score first; a moved object's box "
        "overlaps its key-frame box by less than 0.5):",
        "",
        "| mode | false positives | of which at a moved object's key-frame position | missed boxes | of which "
        "of moved objects | of those, found at IoU >= 0.5 with a score under "
        f"{CONFIDENT} |",
        "|---|---|---|---|---|---|",
    ]
    for mode, e in errors.items():
        lines.append(
            f"| {names[mode]} | {e['false_positives']} | {e['at_key_position']} | {e['missed']} | "
            f"{e['missed_moved']} | {e['missed_moved_low_score']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="working folder (data, checkpoints, results)")
    p.add_argument("--procs", type=int, default=2, help="training processes, one thread each (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the other stages (default 1)")
    p.add_argument("--install", action="store_true", help="copy the model and a demo clip into src/dff/assets")
    p.add_argument("--docs", type=Path, help="also write the Markdown results table to this file")
    p.add_argument(
        "--analysis",
        action="store_true",
        help="also measure AP by distance to the key frame, with the generator's exact flow as an oracle, "
        "and how well fast objects far from the key frame are localised (not timed)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.worker:
        train_worker(args.work, Recipe(), args.procs)
        return 0
    torch.set_num_threads(args.threads)
    random.seed(0)
    np.random.seed(0)
    r = Recipe()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    timer = Timer(work / "timings.json")
    data = timer.run("data", stage_data, work, r)
    flow = timer.run("flow", stage_flow, work, data, r)
    model = stage_ship(work, timer.run("train", stage_train, work, data, flow, r, args.procs))
    val = timer.run("val", stage_val, work, r, r.val_seed)
    results = timer.run("eval", cached, work / "eval.json", lambda: stage_eval(model, val))
    more = {
        seed: timer.run(
            f"eval seed {seed}",
            cached,
            work / f"eval_seed{seed}.json",
            lambda seed=seed: stage_eval(model, stage_val(work, r, seed), ("per_frame", "dff")),
        )
        for seed in r.more_val_seeds
    }
    summary = {
        "recipe": asdict(r),
        "preset": preset(PRESET).to_dict(),
        "results": results,
        "more_val_sets": more,
        "timings": timer.stages,
        "threads": args.threads,
        "procs": args.procs,
        "torch": torch.__version__,
        "dff": dff.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    (work / "results.json").write_text(json.dumps(summary, indent=1))
    table = markdown(results, more, timer, r, args.threads, args.procs)
    if args.analysis:
        summary["analysis"] = cached(work / "analysis.json", lambda: stage_analysis(model, val))
        (work / "results.json").write_text(json.dumps(summary, indent=1))
        table += "\n" + analysis_markdown(summary["analysis"])
    (work / "results.md").write_text(table)
    print(table)
    if args.docs:
        args.docs.write_text(table)
    if args.install:
        ASSETS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, ASSETS / "tiny_synthetic.safetensors")
        write_demo_clip(val, ASSETS / "demo_clip.mp4", r.demo_frames)
        for asset in ("tiny_synthetic.safetensors", "demo_clip.mp4"):
            os.chmod(ASSETS / asset, 0o644)
        log.info("installed %s and %s", ASSETS / "tiny_synthetic.safetensors", ASSETS / "demo_clip.mp4")
    return 0


if __name__ == "__main__":
    sys.exit(main())
