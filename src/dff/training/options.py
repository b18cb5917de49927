"""The options of a training run, built in Python or by `dff train` (the same defaults either way).

from dff.training.loop import train
from dff.training.options import TrainOptions

train(TrainOptions(preset="tiny_synthetic", ann=Path("annotations/imagenet_vid_train.json"), out=Path("runs/t")))
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from dff.errors import InputError
from dff.training.class_set import AUTO, parse_classes

AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # --amp -> the torch dtype's name

FREEZE = ("none", "backbone")
"""What `freeze` may hold: the parts of the network kept at their initial weights."""

LATEST = "latest.pth"
"""The file name of the last checkpoint in the run folder."""

MAX_SEED = 2**32 - 1
"""The largest seed: NumPy's global generator takes seeds below 2**32 (torch's, below 2**64)."""
MAX_LR = 100.0
"""The largest learning rate per 8 pairs (the config schema's bound; the presets use 0.01 to 0.08)."""
WORKERS_PER_CORE = 4
"""Data loader processes per CPU core at most: each is a process holding its own copy of the data set."""


@dataclass
class TrainOptions:
    """Everything `dff train` takes, with its defaults; see docs/training.md. None means: the preset's value."""

    preset: str
    ann: Path  # COCO-VID training JSON
    out: Path  # run folder: checkpoints, log.jsonl, model.safetensors
    data_root: Path = Path(".")  # ILSVRC root: images under Data/VID and Data/DET (else directly under it)
    det_ann: Path | None = None  # COCO DET JSON
    epochs: int | None = None
    resume: Path | None = None  # a checkpoint to continue exactly from (`latest` is the run folder's last one)
    batch_size: int = 1  # pairs per process and step
    workers: int = 2  # data loader processes per training process
    seed: int = 0
    amp: str | None = None  # a key of AMP_DTYPES
    checkpoint_every: int = 0  # also write latest.pth every N iterations (0: epoch ends only)
    log_every: int = 50
    device: str = "auto"  # auto: cuda (the rank's GPU) when available, else cpu
    lr: float | None = None  # learning rate per 8 pairs
    backbone_weights: Path | None = None  # local ImageNet ResNet/ResNeXt .pth
    flownet_weights: Path | None = None  # local FlowNetSimple .pth
    max_iters: int | None = None  # stop (with a checkpoint) after this many iterations in total
    progress_bar: bool = True
    classes: str | tuple[str, ...] | None = None  # None: the preset's if they cover the file, else AUTO; or names
    init_from: str | os.PathLike | None = None  # a trained DFF (.pth, zoo name or .safetensors) to start from
    freeze: str | None = None  # a FREEZE value; None: "none" (on resume: the run's)
    overwrite: bool = False  # delete the run `out` holds (once every check passed) and start again

    def __post_init__(self) -> None:
        if self.classes is not None and self.classes != AUTO:
            self.classes = parse_classes(self.classes if isinstance(self.classes, str) else ",".join(self.classes))
        if self.freeze is not None and self.freeze not in FREEZE:
            raise InputError(f"training option freeze must be one of {', '.join(FREEZE)}, got {self.freeze!r}")
        if self.init_from is not None and self.resume is not None:
            raise InputError(
                "--init-from starts a new run from a trained model's weights and --resume continues a run from its "
                "checkpoint: give one of them"
            )
        for name, minimum in (("batch_size", 1), ("workers", 0), ("checkpoint_every", 0), ("log_every", 1)):
            if getattr(self, name) < minimum:
                raise InputError(f"training option {name} must be >= {minimum}, got {getattr(self, name)}")
        for name in ("epochs", "max_iters"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"training option {name} must be >= 1, got {getattr(self, name)}")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise InputError(f"training option amp must be one of {', '.join(AMP_DTYPES)}, got {self.amp!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InputError(
                f"training option seed must be in [0, 2**32 - 1] (what NumPy's and torch's generators take), "
                f"got {self.seed}"
            )
        if self.lr is not None and not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            raise InputError(f"training option lr (per 8 pairs) must be in (0, {MAX_LR:g}], got {self.lr}")
        cores = os.cpu_count() or 1
        if self.workers > WORKERS_PER_CORE * cores:
            raise InputError(
                f"training option workers {self.workers} is more than {WORKERS_PER_CORE} data loader processes "
                f"per CPU core ({cores} core(s) here: at most {WORKERS_PER_CORE * cores}); each is a process "
                "with its own copy of the data set"
            )

    @property
    def latest(self) -> Path:
        """The run folder's last checkpoint, `out/latest.pth` (written whether or not it exists yet)."""
        return Path(self.out) / LATEST
