"""Optional FlowNet pre-training for models trained without a pretrained FlowNetSimple file.

mmtracking starts DFF's FlowNet from weights trained on Flying Chairs. Offline (the tiny preset), a FlowNet
can instead be pre-trained here on "flying patches": pairs made from real training frames, where the second
image is the first one shifted (the camera) with rectangular patches of another frame pasted at known positions
in both images (the objects). The flow is known at every pixel, large displacements included, which a FlowNet
learns far faster than from box tracks or a photometric loss. Two choices make it the flow DFF needs rather than
the true flow: the background a patch uncovered takes the patch's displacement (the true flow there points at
the patch in the key frame, so the warp would copy the object's features to where it no longer is: a ghost), and
the target includes the ramp that mmtracking's warp grid needs (`warp_target`). The loss is FlowNet's
multi-scale end-point error (the full-resolution output plus the coarser decoder levels), in feature cells
(pixels / stride). The result is a FlowNetSimple state-dict file for `dff train --flownet-weights`; the
end-to-end DFF recipe then fine-tunes it as usual.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dff.config import DFFConfig
from dff.data.cocovid import CocoVID
from dff.data.transforms import preprocess
from dff.errors import DatasetError
from dff.io.image import read_image
from dff.models.flownet import FlowNetSimple
from dff.training.state import atomic_torch_save

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowPretrainConfig:
    """Adam with a x0.1 step at 80% of the iterations; the error is measured every `grid_stride` pixels."""

    iters: int = 3000
    batch_size: int = 4
    lr: float = 1e-3
    grid_stride: int = 4
    grad_clip_norm: float = 35.0
    compensate_warp: bool = True  # learn the flow that mmtracking's warp needs (see `warp_target`)
    level_weights: tuple[float, ...] = (0.25, 0.25, 0.25, 0.5)  # coarse decoder levels flow6..flow3 (see below)


@dataclass(frozen=True)
class PatchMotion:
    """Ranges (pixels of the resized image) of the flying-patches pairs."""

    max_camera_shift: int = 12
    max_shift: int = 48  # per-patch shift in x; y uses half of it
    small_fraction: float = 0.3  # patches that move at most `small_shift` (slow objects)
    small_shift: int = 8
    patches: tuple[int, int] = (2, 6)
    min_size: int = 24
    max_size: tuple[int, int] = (160, 100)  # (w, h)
    object_fraction: float = 0.5  # patches cut around an annotated object (with `object_margin`) when there is one
    object_margin: float = 0.15
    relative_shift: float = 0.7  # large shifts go up to max(max_shift, relative_shift * patch size)
    fill_uncovered: bool = True  # uncovered background takes the displacement of the patch that hides it in ref


@dataclass
class PatchSource:
    """A preprocessed frame (3, Hp, Wp), its unpadded size and its annotated boxes (K, 4) in resized pixels."""

    image: torch.Tensor
    img_shape: tuple[int, int]
    boxes: np.ndarray


def shift_image(img: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """(C, H, W) translated by an integer (dx, dy) with edge replication: out(p + d) = img(p)."""
    _, h, w = img.shape
    p = max(abs(dx), abs(dy))
    if p == 0:
        return img.clone()
    padded = F.pad(img[None], (p, p, p, p), mode="replicate")[0]
    return padded[:, p - dy : p - dy + h, p - dx : p - dx + w].clone()


def _paste(dst: torch.Tensor, patch: torch.Tensor, x: int, y: int) -> tuple[int, int, int, int] | None:
    """Copy patch into dst with its top-left at (x, y), clipped; returns the covered box of dst or None."""
    _, ph, pw = patch.shape
    _, h, w = dst.shape
    x1, y1, x2, y2 = max(0, x), max(0, y), min(w, x + pw), min(h, y + ph)
    if x2 <= x1 or y2 <= y1:
        return None
    dst[:, y1:y2, x1:x2] = patch[:, y1 - y : y2 - y, x1 - x : x2 - x]
    return x1, y1, x2, y2


class FlyingPatches:
    """Random pairs (img, ref, flow, valid) with known flow, built from preprocessed frames (see module doc)."""

    def __init__(self, frames: list[PatchSource], seed: int = 0, motion: PatchMotion = PatchMotion()) -> None:
        self.groups: dict[tuple, list[PatchSource]] = defaultdict(list)
        for f in frames:
            self.groups[(tuple(f.image.shape), f.img_shape)].append(f)
        self.keys = list(self.groups)
        self.weights = [len(self.groups[k]) for k in self.keys]
        self.rng = random.Random(seed)
        self.motion = motion

    @classmethod
    def from_videos(
        cls,
        coco: CocoVID,
        img_prefix: Path,
        cfg: DFFConfig,
        seed: int = 0,
        num_frames: int = 120,
        motion: PatchMotion = PatchMotion(),
    ) -> FlyingPatches:
        """Preprocess `num_frames` random frames of the videos of a COCO-VID file, with their boxes."""
        images = [im for _, frames in coco.iter_videos() for im in frames]
        rng = random.Random(seed)
        picked = rng.sample(images, min(num_frames, len(images)))
        frames = []
        for im in picked:
            t, meta = preprocess(read_image(Path(img_prefix) / im["file_name"], DatasetError), cfg.preprocess)
            boxes = [[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in coco.annotations(im["id"]))]
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4) * meta.scale_factor
            frames.append(PatchSource(t, meta.img_shape, boxes))
        return cls(frames, seed, motion)

    def _patch_box(self, src: PatchSource) -> tuple[int, int, int, int]:
        """(x, y, w, h) of a patch in `src`: around a random annotated object, or a random rectangle."""
        m, rng = self.motion, self.rng
        h, w = src.img_shape
        if len(src.boxes) and rng.random() < m.object_fraction:
            x1, y1, x2, y2 = src.boxes[rng.randrange(len(src.boxes))]
            mx, my = m.object_margin * (x2 - x1), m.object_margin * (y2 - y1)
            x1, y1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
            x2, y2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
            if x2 - x1 >= 4 and y2 - y1 >= 4:
                return x1, y1, x2 - x1, y2 - y1
        pw = rng.randint(m.min_size, max(m.min_size, min(m.max_size[0], w - 2)))
        ph = rng.randint(m.min_size, max(m.min_size, min(m.max_size[1], h - 2)))
        return rng.randint(0, max(0, w - pw)), rng.randint(0, max(0, h - ph)), pw, ph

    def pair(self, group: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pair of a same-size group: img, ref (3, Hp, Wp), flow (2, Hp, Wp) from img to ref, valid (Hp, Wp)."""
        m, rng = self.motion, self.rng
        first, second = rng.choice(group), rng.choice(group)
        a, b, (h, w) = first.image, second.image, first.img_shape
        img, ref = a.clone(), a.clone()
        cx, cy = (
            rng.randint(-m.max_camera_shift, m.max_camera_shift),
            rng.randint(-m.max_camera_shift, m.max_camera_shift),
        )
        ref[:, :h, :w] = shift_image(a[:, :h, :w], cx, cy)
        flow = torch.zeros(2, *a.shape[1:])
        flow[0, :h, :w], flow[1, :h, :w] = float(cx), float(cy)
        in_img = torch.zeros(a.shape[1:], dtype=torch.bool)
        ref_owner = torch.full((1, *a.shape[1:]), -1.0)
        shifts = []
        for j in range(rng.randint(*m.patches)):
            sx, sy, pw, ph = self._patch_box(second)
            patch = b[:, sy : sy + ph, sx : sx + pw]
            x, y = rng.randint(-pw // 3, w - 2 * pw // 3), rng.randint(-ph // 3, h - 2 * ph // 3)
            if rng.random() < m.small_fraction:
                lx = ly = m.small_shift
            else:
                lx = max(m.max_shift, int(m.relative_shift * pw))
                ly = max(m.max_shift // 2, int(m.relative_shift * ph / 2))
            dx, dy = rng.randint(-lx, lx), rng.randint(-ly, ly)
            covered = _paste(img[:, :h, :w], patch, x, y)
            _paste(ref[:, :h, :w], patch, x + dx, y + dy)
            _paste(ref_owner[:, :h, :w], torch.full((1, ph, pw), float(j)), x + dx, y + dy)
            shifts.append((dx, dy))
            if covered is not None:
                x1, y1, x2, y2 = covered
                flow[0, y1:y2, x1:x2], flow[1, y1:y2, x1:x2] = float(dx), float(dy)
                in_img[y1:y2, x1:x2] = True
        if m.fill_uncovered and shifts:
            self._fill_uncovered(flow, in_img, ref_owner, shifts, (cx, cy), (h, w))
        valid = torch.zeros(a.shape[1:], dtype=torch.bool)
        valid[:h, :w] = True
        return img, ref, flow, valid

    @staticmethod
    def _fill_uncovered(
        flow: torch.Tensor,
        in_img: torch.Tensor,
        ref_owner: torch.Tensor,
        shifts: list[tuple[int, int]],
        camera: tuple[int, int],
        img_shape: tuple[int, int],
    ) -> None:
        """Background of img whose camera-shifted place in ref is hidden by patch j gets patch j's displacement.

        Its true flow would read the patch's pixels in ref, and DFF's warp would copy the object's features there
        (a ghost at the place the object left); read through the patch's displacement, it lands on background.
        """
        h, w = img_shape
        owner = shift_image(ref_owner[:, :h, :w], -camera[0], -camera[1])[0].long()  # owner(p) = ref_owner(p + c)
        hidden = (owner >= 0) & ~in_img[:h, :w]
        table = torch.tensor(shifts, dtype=flow.dtype)
        flow[:, :h, :w][:, hidden] = table[owner[hidden]].T

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """`size` pairs of one frame size, stacked, and that size's img_shape."""
        key = self.rng.choices(self.keys, weights=self.weights)[0]
        pairs = [self.pair(self.groups[key]) for _ in range(size)]
        img, ref, flow, valid = (torch.stack(x) for x in zip(*pairs))
        return img, ref, flow, valid, key[1]


def warp_target(flow: torch.Tensor, stride: int) -> torch.Tensor:
    """The FlowNet output (N, 2, Hp, Wp) that makes DFF's warp move stride-`stride` features by `flow` (pixels).

    mmtracking's warp normalises the sampling grid by W and H but samples with `align_corners=True` (docs/pitfalls.md,
    pitfall
    17): feature column x + f is read at (x + f)(W - 1)/W. To read x + d it needs f = d W/(W-1) + x/(W-1), a ramp
    of up to one feature cell; the warp's 1/stride resize reads the flow of column x at pixel stride*x + (stride-1)/2.
    """
    _, _, hp, wp = flow.shape
    h, w = hp // stride, wp // stride
    c = (stride - 1) / 2
    xs = (torch.arange(wp, dtype=flow.dtype) - c) / (w - 1)
    ys = (torch.arange(hp, dtype=flow.dtype) - c) / (h - 1)
    return torch.stack([flow[:, 0] * w / (w - 1) + xs, flow[:, 1] * h / (h - 1) + ys[:, None]], dim=1)


def end_point_error(flow: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, grid_stride: int) -> torch.Tensor:
    """Mean |flow - target| (pixels) over valid pixels of a grid with step `grid_stride` (offset half a step)."""
    s0, s = grid_stride // 2, grid_stride
    err = (flow[:, :, s0::s, s0::s] - target[:, :, s0::s, s0::s]).norm(dim=1)
    mask = valid[:, s0::s, s0::s]
    return (err * mask).sum() / mask.sum().clamp(min=1)


def multiscale_error(
    levels: list[torch.Tensor], unit: float, target: torch.Tensor, valid: torch.Tensor, weights: tuple[float, ...]
) -> torch.Tensor:
    """FlowNet's multi-scale loss on the coarse decoder levels: sum of weight x mean end-point error (pixels)
    against the target area-averaged to each level's grid (cells at least half valid), `unit` pixels per unit."""
    total = target.new_zeros(())
    for flow, weight in zip(levels, weights):
        size = flow.shape[-2:]
        t = F.interpolate(target, size=size, mode="area")
        v = F.interpolate(valid[:, None].float(), size=size, mode="area")[:, 0] >= 0.5
        err = (flow * unit - t).norm(dim=1)
        total = total + weight * (err * v).sum() / v.sum().clamp(min=1)
    return total


def pretrain_flownet(
    motion: FlowNetSimple, data: FlyingPatches, cfg: FlowPretrainConfig, stride: int, progress: bool = True
) -> list[dict[str, float]]:
    """Train `motion` in place on flying patches; returns the mean end-point error (pixels) every 100 iterations."""
    motion.train()
    optimizer = torch.optim.Adam(motion.parameters(), lr=cfg.lr)
    history, window = [], []
    bar = tqdm(range(cfg.iters), desc="flow pre-training", disable=not progress, dynamic_ncols=True)
    for it in bar:
        lr = cfg.lr * (0.1 if it >= int(0.8 * cfg.iters) else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        img, ref, target, valid, img_shape = data.batch(cfg.batch_size)
        if cfg.compensate_warp:
            target = warp_target(target, stride)
        levels = motion.predictions(torch.cat([img, ref], dim=1), img_shape)
        epe = end_point_error(motion.upsample(levels[-1]), target, valid, cfg.grid_stride)
        coarse = multiscale_error(levels[:-1], motion.unit, target, valid, cfg.level_weights)
        optimizer.zero_grad(set_to_none=True)
        ((epe + coarse) / stride).backward()
        torch.nn.utils.clip_grad_norm_(motion.parameters(), cfg.grad_clip_norm)
        optimizer.step()
        window.append(float(epe.detach()))
        bar.set_postfix(epe=f"{window[-1]:.2f}")
        if (it + 1) % 100 == 0 or it + 1 == cfg.iters:
            history.append({"iter": it + 1, "lr": lr, "epe_px": float(np.mean(window))})
            log.debug("flow pre-training %s", history[-1])
            window = []
    return history


def save_flownet(motion: FlowNetSimple, path: Path) -> None:
    """Write the FlowNetSimple state dict (keys as mmtracking's `flownet_simple.pth`) atomically."""
    atomic_torch_save({"state_dict": {k: v.detach().cpu() for k, v in motion.state_dict().items()}}, Path(path))
