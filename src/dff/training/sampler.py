"""Deterministic, resumable data order for (distributed) training.

Each epoch's order is a permutation drawn from (seed, epoch) only, padded to a multiple of
world_size * batch_size and dealt to ranks round-robin (as DistributedSampler). The sampler yields
`(epoch, index)` so that :class:`SeededPairs` can derive every per-sample random choice (reference frame,
flip) from (seed, epoch, index): the same sample is identical whichever worker loads it and after a resume,
which simply skips the batches already done.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler


class ShardSampler(Sampler[tuple[int, int]]):
    """This rank's `(epoch, index)` pairs for one epoch, starting after `skip_batches` batches."""

    def __init__(
        self, size: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True
    ) -> None:
        self.size, self.batch_size, self.world_size, self.rank = size, batch_size, world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.skip = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Batches of this rank per epoch (the same on every rank)."""
        per_step = self.world_size * self.batch_size
        return -(-self.size // per_step)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        """Select the epoch's order and how many of this rank's batches to leave out (already trained on)."""
        self.epoch, self.skip = epoch, skip_batches

    def order(self) -> list[int]:
        """The whole epoch's padded index order (all ranks)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            indices = torch.randperm(self.size, generator=g).tolist()
        else:
            indices = list(range(self.size))
        total = self.batches_per_epoch * self.world_size * self.batch_size
        while len(indices) < total:
            indices += indices[: total - len(indices)]
        return indices

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mine = self.order()[self.rank :: self.world_size]
        return iter([(self.epoch, i) for i in mine[self.skip * self.batch_size :]])

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip) * self.batch_size


def _pair_datasets(dataset: Dataset) -> list[Dataset]:
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]


class SeededPairs(Dataset):
    """Wraps a pair dataset so that item `(epoch, index)` draws its reference and flip from a private seed."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed
        self.rng = random.Random()
        for d in _pair_datasets(dataset):
            d.rng = self.rng

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        epoch, index = item
        self.rng.seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
        return self.dataset[index]
