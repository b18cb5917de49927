"""Training pairs (key frame + reference frame) for VID and DET, as mmtracking's DFF recipe draws them
(docs/mmtracking_spec.md §2.2-2.4).

A sample is a :class:`TrainPair`:

- ``img``, ``ref_img``: float32 ``(3, Hp, Wp)`` tensors, resized into ``cfg.preprocess.scale`` (keep ratio,
  cv2 INTER_LINEAR on uint8), horizontally flipped or not (one draw per pair, shared), normalised to RGB with
  ``cfg.preprocess.mean/std`` and zero-padded bottom/right to a multiple of ``cfg.preprocess.size_divisor``;
- ``img_meta``, ``ref_img_meta``: :class:`TrainImageMeta` (:class:`~dff.data.transforms.ImageMeta` plus ``flip``,
  ``filename`` and ``frame_id``, -1 for still images);
- ``gt_boxes``: float32 ``(N, 4)`` xyxy in resized (and flipped) image pixels, clipped to ``img_shape``;
- ``gt_labels``: int64 ``(N,)`` class indices 0..num_classes-1 (position of the category name in
  ``cfg.class_names``); ``gt_instance_ids``: int64 ``(N,)`` (the JSON ``instance_id`` for videos, ``0..N-1`` for DET);
- ``is_video_data``: True for VID pairs, False for DET pairs (whose reference is the key image itself).

Which key images are used: VID frames with ``is_vid_train_frame`` (the 15 per video), DET images with
``is_vid_train_frame`` (the DET_train_30classes list); a missing flag counts as True (a user's own data). Images
without an annotation of a known class, or smaller than ``cfg.train.min_img_size`` on a side, are dropped, and
annotations are filtered as mmtracking's ``_parse_ann_info`` does. A DataLoader needs ``collate_fn=collate_pairs``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from dff.config import DFFConfig
from dff.data.cocovid import CocoVID
from dff.data.sampling import SampleRNG, sample_reference
from dff.data.transforms import ImageMeta, normalize, pad_chw, resize, scale_factor_for
from dff.errors import DatasetError
from dff.io.image import read_image


@dataclass(frozen=True)
class TrainImageMeta(ImageMeta):
    """ImageMeta of a training image plus the shared flip and where the image came from."""

    flip: bool = False
    filename: str = ""
    frame_id: int = -1


@dataclass
class TrainPair:
    """One training sample: a key image with its GT and a reference image (see the module docstring)."""

    img: torch.Tensor
    ref_img: torch.Tensor
    img_meta: TrainImageMeta
    ref_img_meta: TrainImageMeta
    gt_boxes: torch.Tensor
    gt_labels: torch.Tensor
    gt_instance_ids: torch.Tensor
    is_video_data: bool


def collate_pairs(batch: list[TrainPair]) -> list[TrainPair]:
    """DataLoader collate function: keep the pairs as a list (images of a batch may differ in size)."""
    return list(batch)


def parse_annotations(
    anns: list[dict], img: dict, cat2label: dict, use_instance_ids: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mmtracking's ``_parse_ann_info``: float32 xyxy boxes (no +1), int64 labels and instance ids.

    Drops annotations that are ``ignore``d, crowd, of an unknown category, with an empty intersection with the
    image, or with ``area <= 0``, ``w < 1`` or ``h < 1``.
    """
    boxes, labels, ids = [], [], []
    for ann in anns:
        if ann.get("ignore", False) or ann.get("iscrowd", False):
            continue
        x1, y1, w, h = ann["bbox"]
        inter_w = max(0, min(x1 + w, img["width"]) - max(x1, 0))
        inter_h = max(0, min(y1 + h, img["height"]) - max(y1, 0))
        if inter_w * inter_h == 0 or ann.get("area", w * h) <= 0 or w < 1 or h < 1:
            continue
        if ann["category_id"] not in cat2label:
            continue
        boxes.append([x1, y1, x1 + w, y1 + h])
        labels.append(cat2label[ann["category_id"]])
        ids.append(ann.get("instance_id", -1))
    if not use_instance_ids or -1 in ids:
        ids = list(range(len(boxes)))
    return (
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
        np.asarray(ids, dtype=np.int64),
    )


def _finish(
    img: np.ndarray, ori: tuple[int, int], flip: bool, cfg: DFFConfig, filename: str, frame_id: int
) -> tuple[torch.Tensor, TrainImageMeta]:
    """Flip (already-resized uint8), normalise, pad; build the meta."""
    pre = cfg.preprocess
    h, w = ori
    nh, nw = img.shape[:2]
    if flip:
        img = np.ascontiguousarray(img[:, ::-1])
    chw = torch.from_numpy(normalize(img, pre.mean, pre.std)).permute(2, 0, 1)
    padded = pad_chw(chw, pre.size_divisor).contiguous()
    meta = TrainImageMeta(
        ori_shape=(h, w),
        img_shape=(nh, nw),
        pad_shape=(int(padded.shape[1]), int(padded.shape[2])),
        scale_factor=scale_factor_for(w, h, nw, nh),
        flip=flip,
        filename=filename,
        frame_id=frame_id,
    )
    return padded, meta


def transform_pair(
    key_img: np.ndarray,
    ref_img: np.ndarray,
    boxes: np.ndarray,
    cfg: DFFConfig,
    flip: bool,
    key_source: tuple[str, int] = ("", -1),
    ref_source: tuple[str, int] = ("", -1),
) -> tuple[torch.Tensor, torch.Tensor, TrainImageMeta, TrainImageMeta, np.ndarray]:
    """SeqResize + SeqRandomFlip + SeqNormalize + SeqPad with shared parameters (docs/mmtracking_spec.md §2.4).

    ``boxes`` are the key's float32 xyxy boxes in original pixels; they come back scaled by the float32
    ``scale_factor``, clipped to the resized image and flipped (``x1' = w - x2``) when ``flip``.
    ``key_source``/``ref_source`` are the (filename, frame_id) recorded in the metas.
    """
    key_r = resize(key_img, cfg.preprocess.scale)
    ref_r = resize(ref_img, cfg.preprocess.scale)
    img, key_meta = _finish(key_r, key_img.shape[:2], flip, cfg, *key_source)
    ref, ref_meta = _finish(ref_r, ref_img.shape[:2], flip, cfg, *ref_source)
    nh, nw = key_meta.img_shape
    out = (boxes.astype(np.float32) * key_meta.scale_factor).astype(np.float32)
    out[:, 0::2] = np.clip(out[:, 0::2], 0, nw)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, nh)
    if flip:
        out = out.copy()
        out[:, 0], out[:, 2] = nw - out[:, 2], nw - out[:, 0]
    return img, ref, key_meta, ref_meta, out


class PairDataset(Dataset):
    """Key/reference training pairs from one COCO-VID (``load_as_video=True``) or COCO (DET) file.

    ``rng`` draws the reference frame and the flip. Leave it None (the ``random`` module, which PyTorch seeds
    per DataLoader worker) when loading with workers; a ``random.Random`` is for single-process determinism.
    """

    def __init__(
        self,
        coco: CocoVID | Path | str,
        img_prefix: Path | str,
        cfg: DFFConfig,
        load_as_video: bool = True,
        rng: SampleRNG | None = None,
    ) -> None:
        self.coco = coco if isinstance(coco, CocoVID) else CocoVID.load(coco)
        self.img_prefix = Path(img_prefix)
        self.cfg = cfg
        self.load_as_video = load_as_video
        self.frame_range = cfg.train.frame_range if load_as_video else 0
        self.rng: SampleRNG = rng if rng is not None else random  # type: ignore[assignment]
        index = {name: i for i, name in enumerate(cfg.class_names)}
        self.cat2label = {c["id"]: index[c["name"]] for c in self.coco.categories if c.get("name") in index}
        if load_as_video and not self.coco.is_video:
            raise DatasetError(f"{self.coco.path}: load_as_video needs a COCO-VID file with 'videos'")
        self.keys = [img for img in self._candidates() if self._usable(img)]

    def _candidates(self) -> list[dict]:
        if self.load_as_video:
            images = [img for _, frames in self.coco.iter_videos() for img in frames]
        else:
            images = self.coco.images
        return [img for img in images if img.get("is_vid_train_frame", True)]

    def _usable(self, img: dict) -> bool:
        """mmdet ``_filter_imgs``: some annotation of a known class, and both sides >= min_img_size."""
        has_gt = any(a["category_id"] in self.cat2label for a in self.coco.annotations(img["id"]))
        return has_gt and min(img["width"], img["height"]) >= self.cfg.train.min_img_size

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, idx: int) -> TrainPair:
        key = self.keys[idx]
        frames = self.coco.frames(key["video_id"]) if self.load_as_video else None
        ref = sample_reference(key, frames, self.frame_range, self.rng)
        flip = self.rng.random() < self.cfg.train.flip_ratio
        key_path, ref_path = self.img_prefix / key["file_name"], self.img_prefix / ref["file_name"]
        key_img = read_image(key_path, DatasetError)
        ref_img = key_img if ref["id"] == key["id"] else read_image(ref_path, DatasetError)
        boxes, labels, ids = parse_annotations(
            self.coco.annotations(key["id"]), key, self.cat2label, self.load_as_video
        )
        img, ref_t, key_meta, ref_meta, boxes = transform_pair(
            key_img,
            ref_img,
            boxes,
            self.cfg,
            flip,
            key_source=(str(key_path), key.get("frame_id", -1)),
            ref_source=(str(ref_path), ref.get("frame_id", -1)),
        )
        return TrainPair(
            img=img,
            ref_img=ref_t,
            img_meta=key_meta,
            ref_img_meta=ref_meta,
            gt_boxes=torch.from_numpy(boxes),
            gt_labels=torch.from_numpy(labels),
            gt_instance_ids=torch.from_numpy(ids),
            is_video_data=self.load_as_video,
        )


def build_train_dataset(
    cfg: DFFConfig,
    vid_json: Path | str | CocoVID,
    vid_img_prefix: Path | str,
    det_json: Path | str | None = None,
    det_img_prefix: Path | str | None = None,
    rng: SampleRNG | None = None,
) -> Dataset:
    """mmtracking's DFF training set: the VID pairs, concatenated with the DET pairs when ``det_json`` is given."""
    vid = PairDataset(vid_json, vid_img_prefix, cfg, load_as_video=True, rng=rng)
    if det_json is None:
        return vid
    if det_img_prefix is None:
        raise ValueError("det_img_prefix is required with det_json")
    return ConcatDataset([vid, PairDataset(det_json, det_img_prefix, cfg, load_as_video=False, rng=rng)])
