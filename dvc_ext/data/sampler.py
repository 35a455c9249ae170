"""A sampler whose order and augmentation depend only on (seed, epoch, position).

That is what makes ``resume=true`` exact and DDP sharding consistent: the
training loop asks for epoch ``e`` starting at batch ``b`` and gets the same
keys an uninterrupted run would have drawn there, whatever happened before.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from dvc_common import InputError


class ResumableSampler(Sampler):
    """Shuffled keys ``(index, (seed, epoch, position))`` for one process.

    Each epoch is one global permutation of the dataset (seeded by ``seed`` and
    the epoch); process ``rank`` of ``world_size`` takes positions
    ``rank, rank + world_size, ...`` of it, cut to whole batches so every
    process runs the same number of steps. ``position`` (the global one) seeds
    the sample's crop, flips and reversal.

    Args:
        num_samples: dataset length.
        batch_size: samples per step and process.
        seed: run seed.
        rank, world_size: this process among the data-parallel ones.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        if self.batches_per_epoch < 1:
            raise InputError(
                f"the training set has {num_samples} samples, fewer than one batch "
                f"({batch_size} x {world_size} processes)"
            )
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.world_size // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start_batch`` on."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int, int]]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=gen).tolist()
        per_rank = self.batches_per_epoch * self.batch_size
        first = self.start_batch * self.batch_size
        for i in range(first, per_rank):
            pos = i * self.world_size + self.rank
            yield order[pos], (self.seed, self.epoch, pos)
