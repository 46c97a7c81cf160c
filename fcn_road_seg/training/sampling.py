"""Seeding and sample order of training, reproducible across workers, processes and resumes.

Each sample's augmentations draw from an RNG seeded by (seed, epoch, index) and each epoch's order
is the seeded ``DistributedSampler``'s, so a resumed epoch can skip the batches already done.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from . import data
from .distributed import Dist


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed (torch's CPU generator keeps 32) for one sample in one epoch."""
    return int(np.random.SeedSequence([seed % 2**32, epoch, index]).generate_state(1)[0])


class EpochSeeded(torch.utils.data.Dataset):
    """``dataset[index]`` for keys ``(index, epoch)``, the transforms drawing from the CPU RNG
    seeded by (seed, epoch, index): augmentations depend on nothing else (not on workers, batch
    position or a resume), and the caller's RNG (dropout's, with ``--workers 0``) is restored."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        saved = torch.get_rng_state()
        torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved)


class EpochSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler (shuffled by seed + epoch, drop_last) yielding ``(index, epoch)`` keys;
    ``set_epoch(epoch, batches_done)`` starts the epoch's order after those batches' indices."""

    def __init__(
        self, dataset: torch.utils.data.Dataset, world: int, rank: int, seed: int, batch_size: int
    ) -> None:
        super().__init__(dataset, world, rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size, self.skip = batch_size, 0

    def set_epoch(self, epoch: int, batches_done: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = batches_done * self.batch_size

    def _indices(self) -> Iterator[int]:
        """This rank's indices of the epoch, in order: DistributedSampler's seeded shuffle."""
        return super().__iter__()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((i, self.epoch) for i in itertools.islice(self._indices(), self.skip, None))

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)


class BalancedEpochSampler(EpochSampler):
    """``EpochSampler`` whose epoch draws (with replacement, seeded by seed + epoch) as many
    indices as the dataset has, each group (dataset) equally often: every sample's weight is
    1 / the size of its group. The ranks take every ``world``-th index of the same draw."""

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        world: int,
        rank: int,
        seed: int,
        batch_size: int,
        groups: Sequence[str],
    ) -> None:
        super().__init__(dataset, world, rank, seed, batch_size)
        sizes = Counter(groups)
        self.weights = torch.tensor([1.0 / sizes[g] for g in groups], dtype=torch.float64)

    def _indices(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, True, generator=generator)
        return iter(drawn[self.rank : self.total_size : self.num_replicas].tolist())


def make_train_loader(
    train_set: data.KittiRoad, args: argparse.Namespace, run: Dist
) -> torch.utils.data.DataLoader:
    """Batches of this rank's share of ``train_set``, the sampler an ``EpochSampler``.

    The loader has its own generator, so starting an iterator does not draw from the global RNG.
    """
    groups = [s.dataset for s in train_set.samples]
    sampler = (
        BalancedEpochSampler(train_set, run.world, run.rank, args.seed, args.batch_size, groups)
        if args.balance and len(set(groups)) > 1
        else EpochSampler(train_set, run.world, run.rank, args.seed, args.batch_size)
    )
    return torch.utils.data.DataLoader(
        EpochSeeded(train_set, args.seed),
        args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=run.device.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(args.seed + run.rank),
    )
