"""What the loop feeds a recipe: the order of the training images and the Lab batch made of them.

The shuffling order of an epoch is a pure function of (seed, epoch), so a resumed run goes on
with the very batches it would have seen; under torchrun each rank takes its share of it.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

from ..color import rgb_to_lab_normalized
from ..data import EpochIndex
from .recipe import Batch


class EpochSampler(Sampler[int]):
    """Shuffled indices that depend only on (seed, epoch), split across ranks, resumable mid-epoch."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, num_replicas: int = 1, rank: int = 0) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.skip = 0  # indices of this rank to skip at the start of the epoch (resume)

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        per_rank = math.ceil(self.size / self.num_replicas)
        order += order[: per_rank * self.num_replicas - self.size]  # pad so every rank has as many
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        # EpochIndex: ints that also tell the dataset (seed, epoch), to seed the augmentation
        return iter(EpochIndex(index, self.seed, self.epoch) for index in self.indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, math.ceil(self.size / self.num_replicas) - self.skip)


def lab_batch(rgb_uint8: torch.Tensor, device: torch.device, channels_last: bool) -> Batch:
    """uint8 RGB batch -> normalised L and ab (and float RGB) on the device."""
    rgb = rgb_uint8.to(device, non_blocking=True).float().div_(255.0)
    lightness, ab = rgb_to_lab_normalized(rgb)
    if channels_last:
        lightness, ab = lightness.contiguous(memory_format=torch.channels_last), ab.contiguous(memory_format=torch.channels_last)
    return {"L": lightness, "ab": ab, "rgb": rgb}
