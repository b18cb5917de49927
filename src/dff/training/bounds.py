"""What one training step can fit, checked once the training set is read and before the model is built.

A process's batch may not be larger than its share of the training set's pairs (the sampler would repeat pairs to
fill it: a batch of 100000 from 24 pairs loads 100000 pairs), and the step's input images alone (two padded
float32 images per pair, at the preset's largest input size) must fit the device's memory. The second is a lower
bound: the network's activations need several times more.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dff.config import DFFConfig
from dff.errors import InputError

GB = 1e9


def input_bytes_per_pair(cfg: DFFConfig) -> int:
    """The bytes of one pair's two input images at the preset's largest size, padded to its size divisor."""
    pre = cfg.preprocess
    padded = [-(-side // pre.size_divisor) * pre.size_divisor for side in pre.scale]
    return 2 * 3 * padded[0] * padded[1] * 4


def device_memory(device: torch.device) -> int | None:
    """Total bytes of memory of `device` (a GPU's, or this machine's RAM for the CPU); None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_batch(batch_size: int, world_size: int, pairs: int, cfg: DFFConfig, device: torch.device, ann: Path) -> None:
    """Raise InputError (saying which bound and why) for a batch that the training set or the memory cannot fill."""
    share = -(-pairs // world_size)  # the pairs each process gets per epoch
    if batch_size > share:
        of = f"each of the {world_size} processes gets" if world_size > 1 else "the training set has"
        raise InputError(
            f"--batch-size {batch_size} is more than the {share} training pairs {of} ({ann}); a batch would repeat "
            f"pairs to fill itself: use --batch-size {share} or less"
        )
    memory = device_memory(device)
    per_pair = input_bytes_per_pair(cfg)
    if memory is not None and batch_size * per_pair > memory:
        raise InputError(
            f"--batch-size {batch_size}: one step's input images alone take {batch_size * per_pair / GB:.1f} GB, "
            f"more than the {memory / GB:.1f} GB of memory of the {device.type} device ({memory // per_pair} pairs' "
            "images would fill it, and the network's activations need several times more)"
        )
