"""The trainer: the mmtracking DFF recipe (docs/mmtracking_spec.md §1.1, 1.7, 2.8) on one process or under torchrun
(DDP).

Effective batch = world_size * batch_size pairs per step; the learning rate scales linearly from the preset's
`lr_per_8_images`. SGD (momentum, weight decay on every trainable tensor as mmcv's default constructor),
grad-norm clipping, warm-up + step schedule, optional bf16/fp16 autocast. Rank 0 writes `latest.pth` every
`checkpoint_every` iterations and at each epoch end (plus `epoch_{k}.pth`), `log.jsonl` (always), TensorBoard
events under `tb/` (if the `tensorboard` package is installed) and, when done, `model.safetensors`.

The pieces: `_settings` (config and run settings, fresh or resumed), `_build_loader`, `_setup` (network, loss
module, optimiser, schedule, resumed state), `_Step` (one optimisation step), `_Checkpoints` and `_LossLog`;
`_train` is the loop over them.
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
from dataclasses import dataclass, replace
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
from dff.data.cocovid import CocoVID
from dff.data.train_dataset import build_train_dataset
from dff.distributed import DistContext, distributed, launch_world_size
from dff.errors import CheckpointError, DatasetError, DFFError
from dff.io.atomic import atomic_path
from dff.models.detector import DFF
from dff.training import pretrained
from dff.training.bounds import check_batch
from dff.training.class_set import resolve_classes
from dff.training.init_from import InitReport, init_from
from dff.training.losses import LOSS_NAMES, DFFLoss
from dff.training.options import AMP_DTYPES, LATEST, TrainOptions
from dff.training.run_dir import check_out_folder, prepare_run_dir, trim_log
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


@dataclass
class TrainResult:
    """What a finished (or max_iters-stopped) run leaves: its progress, last logged losses and files."""

    progress: Progress
    losses: dict[str, float]
    model_path: Path | None
    checkpoint_path: Path


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _image_prefixes(data_root: Path) -> tuple[Path, Path]:
    """(VID, DET) image folders: `Data/VID` and `Data/DET` of an ILSVRC root, else the root itself."""
    vid, det = data_root / "Data" / "VID", data_root / "Data" / "DET"
    return (vid if vid.is_dir() else data_root), (det if det.is_dir() else data_root)


def _check_usable(dataset, cfg: DFFConfig) -> None:
    for d in getattr(dataset, "datasets", [dataset]):
        if len(d) == 0:
            raise DatasetError(
                f"{d.coco.path}: no usable training image (none marked for training with a box of the model's "
                f"classes ({', '.join(cfg.class_names[:5])}{', ...' if cfg.num_classes > 5 else ''}) and both "
                f"sides >= {cfg.train.min_img_size})"
            )


def _class_set(opts: TrainOptions, cfg: DFFConfig, coco: CocoVID, resumed: bool) -> DFFConfig:
    """`cfg` with the classes to train (dff.training.class_set); a resumed run must keep its checkpoint's."""
    names = resolve_classes(coco, cfg.class_names, opts.classes)
    if resumed and names != cfg.class_names:
        shown = ", ".join(cfg.class_names[:5]) + (", ..." if cfg.num_classes > 5 else "")
        raise DatasetError(
            f"{coco.path}: an annotation file for another class set ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}) than the run being resumed ({opts.resume}: {shown})"
        )
    return cfg if names == cfg.class_names else replace(cfg, class_names=names)


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


def _file_inputs(opts: TrainOptions) -> list[tuple[str, Path]]:
    """(option, path) of the files a run reads (a zoo name given to --init-from is no path here)."""
    init = Path(opts.init_from) if opts.init_from is not None and Path(opts.init_from).is_file() else None
    named = [
        ("--ann", opts.ann),
        ("--det-ann", opts.det_ann),
        ("--init-from", init),
        ("--backbone-weights", opts.backbone_weights),
        ("--flownet-weights", opts.flownet_weights),
    ]
    return [(option, Path(path)) for option, path in named if path is not None]


def _image_folders(data_root: Path, dataset) -> list[tuple[str, Path]]:
    """(option, folder) of the folders the training images are read from: an ILSVRC root's `Data/VID` and
    `Data/DET` trees whole, else every folder that holds a training image."""
    folders = []
    for d in getattr(dataset, "datasets", [dataset]):
        if d.img_prefix != data_root:
            folders.append(("training images under --data-root", d.img_prefix))
            continue
        names = {os.path.dirname(img["file_name"]) for img in d.coco.images}
        folders += [("training images under --data-root", d.img_prefix / name) for name in sorted(names)]
    return folders


def _build_loader(
    opts: TrainOptions, cfg: DFFConfig, coco: CocoVID, d: DistContext, seed: int
) -> tuple[DataLoader, ShardSampler]:
    """The loader and its sampler, once the run folder is checked against the image folders and the batch against
    the training set and the memory (dff.training.bounds)."""
    vid_prefix, det_prefix = _image_prefixes(Path(opts.data_root))
    dataset = build_train_dataset(cfg, coco, vid_prefix, opts.det_ann, det_prefix if opts.det_ann else None)
    _check_usable(dataset, cfg)
    check_out_folder(Path(opts.out), _image_folders(Path(opts.data_root), dataset))
    check_batch(opts.batch_size, d.world_size, len(dataset), cfg, d.device, Path(opts.ann))
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


def _gather_rng(d: DistContext) -> list[dict[str, Any]]:
    mine = rng_state()
    if d.world_size == 1:
        return [mine]
    out: list = [None] * d.world_size
    dist.all_gather_object(out, mine)
    return out


def _reduce_mean(values: dict[str, float], d: DistContext, device: torch.device) -> dict[str, float]:
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
        self.enabled, self.path = enabled, out / "log.jsonl"
        self.file = open(self.path, "a") if enabled else None
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
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:  # a full disk: named after the log, not an anonymous "[Errno 28]"
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, float) and k not in ("epoch", "iter", "global_iter"):
                    self.tb.add_scalar(f"train/{k}", v, record["global_iter"])
            self.tb.flush()

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(self.path)) from None
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
        self.autocast = (
            (lambda: torch.autocast(device_type, dtype=getattr(torch, AMP_DTYPES[amp]))) if amp else nullcontext
        )
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
    if (run["world_size"], run["batch_size"]) != (launch_world_size(), opts.batch_size):
        raise CheckpointError(
            f"{opts.resume}: saved by {run['world_size']} process(es) x batch {run['batch_size']}; resume with the "
            f"same layout (now {launch_world_size()} x {opts.batch_size})"
        )
    return state


def train(opts: TrainOptions, loss: Callable[[DFF], DFFLoss] = DFFLoss) -> TrainResult:
    """Run (or resume) training; returns where it ended. Raises DFFError subclasses on bad input.

    `loss` builds the loss module around the model (a DFFLoss subclass may form the features otherwise).
    """
    check_out_folder(Path(opts.out), _file_inputs(opts))
    resumed = _resume_state(opts)  # before anything is written, so a bad --resume touches nothing
    with distributed(opts.device) as d:
        if d.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return _train(opts, d, resumed, loss)


@dataclass
class _Run:
    """A run set up to train: the model, its optimiser and schedule, where it stands, and what it saves."""

    cfg: DFFConfig
    settings: dict[str, Any]  # the run settings saved in every checkpoint (seed, layout, amp, lr, epochs)
    net: DFF
    model: torch.nn.Module  # the loss module, wrapped in DDP over several processes
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    schedule: StepWarmupSchedule
    scaler: torch.amp.GradScaler | None
    progress: Progress
    init: InitReport | None  # what --init-from loaded (None without it, and when resuming)


def _settings(
    opts: TrainOptions, d: DistContext, resumed: dict[str, Any] | None, coco: CocoVID
) -> tuple[DFFConfig, dict[str, Any]]:
    """The config (the preset's with the run's classes) and the run settings: the checkpoint's when resuming
    (epochs may be raised)."""
    cfg = _class_set(opts, resumed["config"] if resumed else get_preset(opts.preset), coco, resumed is not None)
    run = (
        dict(resumed["run"])
        if resumed
        else {
            "seed": opts.seed,
            "world_size": d.world_size,
            "batch_size": opts.batch_size,
            "amp": opts.amp,
            "lr_per_8_images": opts.lr if opts.lr is not None else cfg.train.lr_per_8_images,
            "freeze": opts.freeze or "none",
            "init_from": None if opts.init_from is None else os.fspath(opts.init_from),
        }
    )
    if resumed:
        saved = run.setdefault("freeze", "none")
        if opts.freeze is not None and opts.freeze != saved:
            raise CheckpointError(f"{opts.resume}: the run trains with --freeze {saved}, not {opts.freeze}")
    run["epochs"] = opts.epochs or (run.get("epochs") if resumed else None) or cfg.train.epochs
    return cfg, run


def _freeze(net: DFF, part: str) -> None:
    """Keep `part` ("backbone" or "none") at its initial weights: its parameters need no gradient, so they are
    not in the optimiser (the backbone's BatchNorm is always in eval mode, so its statistics stay too)."""
    if part == "backbone":
        for p in net.detector.backbone.parameters():
            p.requires_grad_(False)


def _setup(
    opts: TrainOptions,
    d: DistContext,
    cfg: DFFConfig,
    run: dict[str, Any],
    resumed: dict[str, Any] | None,
    loss: Callable[[DFF], DFFLoss],
) -> _Run:
    """The network (initialised or resumed), the loss module, SGD with the flow's lr multiplier, the schedule."""
    net = DFF(cfg)
    report = None
    if resumed:
        net.load_state_dict(resumed["model"])
    else:
        if opts.init_from is not None:
            report = init_from(net, opts.init_from)
            if d.is_main:
                for line in report.lines():
                    log.info("%s", line)
        if opts.backbone_weights:
            pretrained.load_backbone(net, Path(opts.backbone_weights))
        if opts.flownet_weights:
            pretrained.load_flownet(net, Path(opts.flownet_weights))
    _freeze(net, run["freeze"])
    net.to(d.device).train()
    module = loss(net).to(d.device)
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
    scaler = torch.amp.GradScaler(d.device.type) if run["amp"] == "fp16" else None
    progress = Progress()
    if resumed:
        optimizer.load_state_dict(resumed["optimizer"])
        if scaler is not None and resumed["scaler"] is not None:
            scaler.load_state_dict(resumed["scaler"])
        progress = resumed["progress"]
        set_rng_state(resumed["rng"][d.rank])
        log.info("resumed from %s at epoch %d, iteration %d", opts.resume, progress.epoch + 1, progress.iter_in_epoch)
    return _Run(cfg, run, net, model, params, optimizer, schedule, scaler, progress, report)


class _Checkpoints:
    """Rank 0 writes the run's state (every rank's RNG gathered) to `latest.pth`, `epoch_{k}.pth` and, when the
    last epoch is done, the model to `model.safetensors`."""

    def __init__(self, r: _Run, d: DistContext, out: Path) -> None:
        self.r, self.d, self.out = r, d, out
        self.latest = out / LATEST

    def save(self, path: Path) -> None:
        rng = _gather_rng(self.d)
        if self.d.is_main:
            r = self.r
            save_state(
                path,
                model=r.net,
                optimizer=r.optimizer,
                scaler=r.scaler,
                progress=r.progress,
                cfg=r.cfg,
                run=r.settings,
                rng=rng,
            )

    def epoch_end(self) -> None:
        """`epoch_{k}.pth` for the epoch just finished, copied to `latest.pth`."""
        epoch_file = self.out / f"epoch_{self.r.progress.epoch}.pth"
        self.save(epoch_file)
        if self.d.is_main:
            _copy_atomic(epoch_file, self.latest)

    def final_model(self) -> Path | None:
        """Write `model.safetensors` on rank 0; its path there, None on the other ranks."""
        if not self.d.is_main:
            return None
        from dff.version import __version__

        model_path = self.out / "model.safetensors"
        checkpoint.save(self.r.net, self.r.cfg, model_path, __version__)
        log.info("trained model written to %s", model_path)
        return model_path


class _LossLog:
    """Losses averaged over each logging window, written as one log record per window (rank 0)."""

    def __init__(self, logger: _Logger, total: int, progress: Progress) -> None:
        self.logger, self.total, self.progress = logger, total, progress
        self.window: dict[str, list[float]] = {}
        self.last: dict[str, float] = {}
        self.start_time, self.start_iter = time.time(), progress.global_iter

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.window.setdefault(k, []).append(v)

    def flush(self, lr: float, grad_norm: float) -> None:
        p = self.progress
        self.last = {k: float(np.mean(v)) for k, v in self.window.items()}
        self.window = {}
        rate = (time.time() - self.start_time) / max(p.global_iter - self.start_iter, 1)
        self.logger.write(
            {
                "epoch": p.epoch + 1,
                "iter": p.iter_in_epoch,
                "global_iter": p.global_iter,
                "lr": lr,
                **self.last,
                "grad_norm": grad_norm,
                "time": rate,
                "eta_s": rate * (self.total - p.global_iter),
            }
        )


def _train(
    opts: TrainOptions, d: DistContext, resumed: dict[str, Any] | None, loss: Callable[[DFF], DFFLoss]
) -> TrainResult:
    out = Path(opts.out)
    coco = CocoVID.load(opts.ann)
    cfg, settings = _settings(opts, d, resumed, coco)
    seed = settings["seed"]
    seed_everything(seed + d.rank)
    loader, sampler = _build_loader(opts, cfg, coco, d, seed)
    r = _setup(opts, d, cfg, settings, resumed, loss)
    progress = r.progress
    if d.is_main:
        if opts.overwrite:  # every check passed and the weights to start from are read: now the old run goes
            prepare_run_dir(out, resume=resumed is not None, overwrite=True)
        out.mkdir(parents=True, exist_ok=True)
        if resumed:
            trim_log(out, progress.global_iter)
    logger = _Logger(out, d.is_main)
    if r.init is not None:
        logger.write({"global_iter": 0, "init_from": r.init.to_dict()})
    saver = _Checkpoints(r, d, out)
    epochs, per_epoch = settings["epochs"], sampler.batches_per_epoch
    total = epochs * per_epoch if opts.max_iters is None else min(epochs * per_epoch, opts.max_iters)
    bar = tqdm(
        total=total,
        initial=min(progress.global_iter, total),
        disable=not (d.is_main and opts.progress_bar),
        dynamic_ncols=True,
        desc="train",
    )
    step = _Step(
        r.params,
        r.optimizer,
        r.scaler,
        cfg.train.grad_clip_norm,
        d.device.type,
        settings["amp"],
        saver.latest,
        progress,
    )
    losses_log = _LossLog(logger, total, progress)
    try:
        while progress.epoch < epochs and progress.global_iter < total:
            sampler.set_epoch(progress.epoch, progress.iter_in_epoch)
            for batch in loader:
                for item in batch:
                    if isinstance(item, _Failure):
                        raise DatasetError(item.message)
                lr = r.schedule.apply(r.optimizer, progress.epoch, progress.global_iter)
                losses, grad_norm = step(r.model, batch)
                progress.iter_in_epoch += 1
                progress.global_iter += 1
                values = _reduce_mean(losses, d, d.device)
                losses_log.add(values)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
                end_of_epoch = progress.iter_in_epoch == per_epoch
                if progress.global_iter % opts.log_every == 0 or end_of_epoch or progress.global_iter == total:
                    losses_log.flush(lr, grad_norm)
                if opts.checkpoint_every and progress.global_iter % opts.checkpoint_every == 0:
                    saver.save(saver.latest)
                if progress.global_iter >= total:
                    break
            if progress.iter_in_epoch >= per_epoch:
                progress.epoch, progress.iter_in_epoch = progress.epoch + 1, 0
                saver.epoch_end()
            elif progress.global_iter >= total:
                saver.save(saver.latest)
    finally:
        bar.close()
        logger.close()
    model_path = saver.final_model() if progress.epoch >= epochs else None
    return TrainResult(progress, losses_log.last, model_path, saver.latest)
