"""The trainer: the mmtracking DFF recipe (spec 1.1, 1.7, 2.8) on one process or under torchrun (DDP).

Effective batch = world_size * batch_size pairs per step; the learning rate scales linearly from the preset's
`lr_per_8_images`. SGD (momentum, weight decay on every trainable tensor as mmcv's default constructor),
grad-norm clipping, warm-up + step schedule, optional bf16/fp16 autocast. Rank 0 writes `latest.pth` every
`checkpoint_every` iterations and at each epoch end (plus `epoch_{k}.pth`), `log.jsonl` (always), TensorBoard
events under `tb/` (if the `tensorboard` package is installed) and, when done, `model.safetensors`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from dff import checkpoint
from dff.config import DFFConfig
from dff.config import preset as get_preset
from dff.data.train_dataset import build_train_dataset
from dff.errors import CheckpointError, DatasetError, DFFError
from dff.io.atomic import atomic_path
from dff.models.detector import DFF
from dff.training import pretrained
from dff.training.losses import LOSS_NAMES, DFFLoss
from dff.training.run_dir import trim_log
from dff.training.sampler import SeededPairs, ShardSampler
from dff.training.schedule import StepWarmupSchedule
from dff.training.state import (
    Progress,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
)

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainOptions:
    """Everything `dff train` takes; see docs/training.md."""

    preset: str
    ann: Path
    out: Path
    data_root: Path = Path(".")
    det_ann: Path | None = None
    epochs: int | None = None
    resume: Path | None = None
    batch_size: int = 1
    workers: int = 2
    seed: int = 0
    amp: str | None = None
    checkpoint_every: int = 0
    log_every: int = 50
    device: str | None = None
    lr: float | None = None
    backbone_weights: Path | None = None
    flownet_weights: Path | None = None
    max_iters: int | None = None
    progress_bar: bool = True


@dataclass
class TrainResult:
    """What a finished (or max_iters-stopped) run leaves: its progress, last logged losses and files."""

    progress: Progress
    losses: dict[str, float]
    model_path: Path | None
    checkpoint_path: Path


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False  # this call initialised the process group (and so destroys it)


def _init_distributed(device: str | None) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if world <= 1:
        return _Dist(), dev
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, owned), dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _image_prefixes(data_root: Path) -> tuple[Path, Path]:
    """(VID, DET) image folders: `Data/VID` and `Data/DET` of an ILSVRC root, else the root itself."""
    vid, det = data_root / "Data" / "VID", data_root / "Data" / "DET"
    return (vid if vid.is_dir() else data_root), (det if det.is_dir() else data_root)


def _check_classes(dataset, cfg: DFFConfig) -> None:
    for d in getattr(dataset, "datasets", [dataset]):
        if not d.cat2label:
            names = ", ".join(sorted(c.get("name", "?") for c in d.coco.categories)[:8])
            raise DatasetError(
                f"{d.coco.path}: none of its categories ({names}, ...) is a class of preset {cfg.name!r} "
                f"({', '.join(cfg.class_names[:5])}, ...): an annotation file for another class set"
            )
        if len(d) == 0:
            raise DatasetError(
                f"{d.coco.path}: no usable training image (none marked for training with a box "
                f"of the preset's classes and both sides >= {cfg.train.min_img_size})"
            )


class _Failure:
    """A sample that could not be loaded; carried to the main process to be raised there as one line."""

    def __init__(self, message: str) -> None:
        self.message = message


class _SafePairs(SeededPairs):
    def __getitem__(self, item):
        try:
            return super().__getitem__(item)
        except DFFError as e:
            return _Failure(str(e))


def _collate(batch: list) -> list:
    return list(batch)


def _build_loader(opts: TrainOptions, cfg: DFFConfig, d: _Dist, seed: int) -> tuple[DataLoader, ShardSampler]:
    vid_prefix, det_prefix = _image_prefixes(Path(opts.data_root))
    dataset = build_train_dataset(cfg, opts.ann, vid_prefix, opts.det_ann, det_prefix if opts.det_ann else None)
    _check_classes(dataset, cfg)
    sampler = ShardSampler(len(dataset), opts.batch_size, d.world_size, d.rank, seed)
    loader = DataLoader(
        _SafePairs(dataset, seed),
        batch_size=opts.batch_size,
        sampler=sampler,
        num_workers=opts.workers,
        collate_fn=_collate,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, sampler


def _gather_rng(d: _Dist) -> list[dict[str, Any]]:
    mine = rng_state()
    if d.world_size == 1:
        return [mine]
    out: list = [None] * d.world_size
    dist.all_gather_object(out, mine)
    return out


def _reduce_mean(values: dict[str, float], d: _Dist, device: torch.device) -> dict[str, float]:
    if d.world_size == 1:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(values, (t / d.world_size).tolist()))


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


class _Logger:
    """JSONL always, TensorBoard when installed; rank 0 only."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.file = open(out / "log.jsonl", "a") if enabled else None
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.debug("tensorboard not installed: logging to log.jsonl only")
            else:
                self.tb = SummaryWriter(str(out / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, float) and k not in ("epoch", "iter", "global_iter"):
                    self.tb.add_scalar(f"train/{k}", v, record["global_iter"])
            self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


class _Step:
    """One optimisation step: forward (autocast), backward (scaled for fp16), clip, SGD."""

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        clip: float,
        device_type: str,
        amp: str | None,
        checkpoint: Path,
        progress: Progress,
    ) -> None:
        self.params, self.optimizer, self.scaler, self.clip = params, optimizer, scaler, clip
        self.autocast = (lambda: torch.autocast(device_type, dtype=AMP_DTYPES[amp])) if amp else nullcontext
        self.checkpoint, self.progress = checkpoint, progress

    def __call__(self, model: torch.nn.Module, batch: list) -> tuple[dict[str, float], float]:
        """Returns the batch's losses (and their sum as "loss") and the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            losses = model(batch)
        loss = sum(losses[k] for k in LOSS_NAMES)
        if not torch.isfinite(loss):
            kept = (
                f"the last good checkpoint ({self.checkpoint}) is untouched"
                if self.checkpoint.is_file()
                else "no checkpoint was written yet"
            )
            raise DFFError(
                f"non-finite loss at iteration {self.progress.global_iter + 1}; {kept}: lower the lr or disable AMP"
            )
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["loss"] = float(loss.detach())
        return values, grad_norm


def _resume_state(opts: TrainOptions) -> dict[str, Any] | None:
    if opts.resume is None:
        return None
    state = load_state(Path(opts.resume), opts.preset)
    run = state["run"]
    if (run["world_size"], run["batch_size"]) != (int(os.environ.get("WORLD_SIZE", "1")), opts.batch_size):
        raise CheckpointError(
            f"{opts.resume}: saved by {run['world_size']} process(es) x batch {run['batch_size']}; resume with the "
            f"same layout (now {os.environ.get('WORLD_SIZE', '1')} x {opts.batch_size})"
        )
    return state


def train(opts: TrainOptions, loss: Callable[[DFF], DFFLoss] = DFFLoss) -> TrainResult:
    """Run (or resume) training; returns where it ended. Raises DFFError subclasses on bad input.

    `loss` builds the loss module around the model (a DFFLoss subclass may form the features otherwise).
    """
    resumed = _resume_state(opts)  # before anything is written, so a bad --resume touches nothing
    d, device = _init_distributed(opts.device)
    try:
        return _train(opts, d, device, resumed, loss)
    finally:
        if d.owned:
            dist.destroy_process_group()


def _train(
    opts: TrainOptions, d: _Dist, device: torch.device, resumed: dict[str, Any] | None, loss: Callable[[DFF], DFFLoss]
) -> TrainResult:
    out = Path(opts.out)
    cfg = resumed["config"] if resumed else get_preset(opts.preset)
    run = (
        dict(resumed["run"])
        if resumed
        else {
            "seed": opts.seed,
            "world_size": d.world_size,
            "batch_size": opts.batch_size,
            "amp": opts.amp,
            "lr_per_8_images": opts.lr if opts.lr is not None else cfg.train.lr_per_8_images,
        }
    )
    run["epochs"] = opts.epochs or (run.get("epochs") if resumed else None) or cfg.train.epochs
    seed = run["seed"]
    seed_everything(seed + d.rank)
    loader, sampler = _build_loader(opts, cfg, d, seed)

    net = DFF(cfg)
    if resumed:
        net.load_state_dict(resumed["model"])
    else:
        if opts.backbone_weights:
            pretrained.load_backbone(net, Path(opts.backbone_weights))
        if opts.flownet_weights:
            pretrained.load_flownet(net, Path(opts.flownet_weights))
    net.to(device).train()
    module = loss(net).to(device)
    model = DistributedDataParallel(module) if d.world_size > 1 else module
    params = [p for p in net.parameters() if p.requires_grad]
    base_lr = run["lr_per_8_images"] * d.world_size * opts.batch_size / 8
    t = cfg.train
    flow_params = {id(p) for p in net.motion.parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in flow_params]},
        {"params": [p for p in params if id(p) in flow_params], "lr_mult": t.flow_lr_mult},
    ]
    optimizer = torch.optim.SGD(groups, lr=base_lr, momentum=t.momentum, weight_decay=t.weight_decay)
    schedule = StepWarmupSchedule(base_lr, t.lr_steps, t.lr_gamma, t.warmup_iters, t.warmup_ratio)
    amp = run["amp"]
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    progress = Progress()
    if resumed:
        optimizer.load_state_dict(resumed["optimizer"])
        if scaler is not None and resumed["scaler"] is not None:
            scaler.load_state_dict(resumed["scaler"])
        progress = resumed["progress"]
        set_rng_state(resumed["rng"][d.rank])
        log.info("resumed from %s at epoch %d, iteration %d", opts.resume, progress.epoch + 1, progress.iter_in_epoch)

    rank0 = d.rank == 0
    if rank0:
        out.mkdir(parents=True, exist_ok=True)
        if resumed:
            trim_log(out, progress.global_iter)
    logger = _Logger(out, rank0)
    latest = out / "latest.pth"

    def save(path: Path) -> None:
        rng = _gather_rng(d)
        if rank0:
            save_state(
                path, model=net, optimizer=optimizer, scaler=scaler, progress=progress, cfg=cfg, run=run, rng=rng
            )

    epochs, per_epoch = run["epochs"], sampler.batches_per_epoch
    total = epochs * per_epoch if opts.max_iters is None else min(epochs * per_epoch, opts.max_iters)
    bar = tqdm(
        total=total,
        initial=min(progress.global_iter, total),
        disable=not (rank0 and opts.progress_bar),
        dynamic_ncols=True,
        desc="train",
    )
    step = _Step(params, optimizer, scaler, t.grad_clip_norm, device.type, amp, latest, progress)
    window: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    start_time, start_iter = time.time(), progress.global_iter
    try:
        while progress.epoch < epochs and progress.global_iter < total:
            sampler.set_epoch(progress.epoch, progress.iter_in_epoch)
            for batch in loader:
                for item in batch:
                    if isinstance(item, _Failure):
                        raise DatasetError(item.message)
                lr = schedule.apply(optimizer, progress.epoch, progress.global_iter)
                losses, grad_norm = step(model, batch)
                progress.iter_in_epoch += 1
                progress.global_iter += 1
                values = _reduce_mean(losses, d, device)
                for k, v in values.items():
                    window.setdefault(k, []).append(v)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
                end_of_epoch = progress.iter_in_epoch == per_epoch
                if progress.global_iter % opts.log_every == 0 or end_of_epoch or progress.global_iter == total:
                    last = {k: float(np.mean(v)) for k, v in window.items()}
                    window = {}
                    rate = (time.time() - start_time) / max(progress.global_iter - start_iter, 1)
                    logger.write(
                        {
                            "epoch": progress.epoch + 1,
                            "iter": progress.iter_in_epoch,
                            "global_iter": progress.global_iter,
                            "lr": lr,
                            **last,
                            "grad_norm": grad_norm,
                            "time": rate,
                            "eta_s": rate * (total - progress.global_iter),
                        }
                    )
                if opts.checkpoint_every and progress.global_iter % opts.checkpoint_every == 0:
                    save(latest)
                if progress.global_iter >= total:
                    break
            if progress.iter_in_epoch >= per_epoch:
                progress.epoch, progress.iter_in_epoch = progress.epoch + 1, 0
                epoch_file = out / f"epoch_{progress.epoch}.pth"
                save(epoch_file)
                if rank0:
                    _copy_atomic(epoch_file, latest)
            elif progress.global_iter >= total:
                save(latest)
    finally:
        bar.close()
        logger.close()
    model_path = None
    if progress.epoch >= epochs and rank0:
        from dff import __version__

        model_path = out / "model.safetensors"
        checkpoint.save(net, cfg, model_path, __version__)
        log.info("trained model written to %s", model_path)
    return TrainResult(progress, last, model_path, latest)
