"""Training data: a folder tree of colour photos as batches of RGB crops.

The dataset returns uint8 RGB crops; the Lab conversion happens batched on the training device
(``recolor.color``), which is much cheaper than per-image conversions in the workers.
Augmentation follows paper 002 section 5 (pix2pix): random rescale, random crop, horizontal flip.
Near-greyscale photos teach a colorizer to output grey, so they are skipped (checked on load,
so that a folder of 50,000 images does not need a scan up front).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .imageio.decoding import ImageReadError, open_image, probe_image
from .imageio.listing import list_image_files
from .imageio.photo import COLOUR_CHROMA_THRESHOLD, mean_chroma


class NoUsablePhotos(RuntimeError):
    """Every photo of a training folder is unreadable or below the dataset's chroma threshold
    (found only when a batch is drawn: the check is lazy)."""


def readable_photos(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(readable, unreadable): each file's header is probed (not decoded), so that a text file
    named .jpg is left out when the data is listed, not met by a DataLoader worker."""
    readable, unreadable = [], []
    for path in files:
        try:
            probe_image(path)
            readable.append(path)
        except ImageReadError:
            unreadable.append(path)
    return readable, unreadable


class ColorPhotoDataset(Dataset):
    """Colour photos below ``root`` (recursive) as ``{"rgb": uint8 (3, size, size), "label": int}``.

    ``label`` is the index of the first-level sub-folder (for class-aware metrics), 0 if flat.
    ``train=True``: shorter side rescaled to ``size * U(scale)``, random ``size`` crop, random flip.
    ``train=False``: shorter side to ``size``, centre crop (deterministic, for validation).
    """

    def __init__(
        self,
        root: str | Path,
        size: int = 256,
        train: bool = True,
        scale: tuple[float, float] = (1.0, 1.25),
        flip: bool = True,
        skip_grey: bool = True,
        min_chroma: float | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such data folder")
        self.files, self.unreadable = readable_photos(list_image_files(self.root))
        if not self.files:
            skipped = f" ({len(self.unreadable)} unreadable files skipped)" if self.unreadable else ""
            raise FileNotFoundError(f"{self.root}: no readable photo in this folder{skipped}")
        self.classes = sorted({p.relative_to(self.root).parts[0] for p in self.files if len(p.relative_to(self.root).parts) > 1})
        self.size, self.train, self.scale, self.flip = size, train, scale, flip
        # None: only near-greyscale photos are skipped (`recolor train --min-chroma` raises it)
        self.skip_grey = skip_grey
        self.min_chroma = COLOUR_CHROMA_THRESHOLD if min_chroma is None else min_chroma
        self._rejected: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def label_of(self, path: Path) -> int:
        parts = path.relative_to(self.root).parts
        return self.classes.index(parts[0]) if len(parts) > 1 and parts[0] in self.classes else 0

    def _load(self, index: int) -> Image.Image | None:
        try:
            image = open_image(self.files[index])
        except ImageReadError:
            return None
        image = image.convert("RGB")
        if self.skip_grey and mean_chroma(image, thumbnail=64) < self.min_chroma:
            return None
        return image

    def _crop(self, image: Image.Image, rng: random.Random) -> Image.Image:
        factor = rng.uniform(*self.scale) if self.train else 1.0
        target_short = max(self.size, round(self.size * factor))
        ratio = target_short / min(image.size)
        new_size = (max(self.size, round(image.width * ratio)), max(self.size, round(image.height * ratio)))
        image = image.resize(new_size, Image.BICUBIC, reducing_gap=3.0)
        if self.train:
            left = rng.randint(0, new_size[0] - self.size)
            top = rng.randint(0, new_size[1] - self.size)
        else:
            left, top = (new_size[0] - self.size) // 2, (new_size[1] - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        if self.train and self.flip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        # crops and flips are a function of (seed, epoch, index), like the data order: two runs
        # (or a run and its resumption) see the very same batches, in any number of workers
        rng = random.Random(f"{getattr(index, 'seed', 0)}/{getattr(index, 'epoch', 0)}/{int(index)}") if self.train else random.Random(index)
        for attempt in range(len(self.files)):
            candidate = (index + attempt) % len(self.files)
            if candidate in self._rejected:
                continue
            image = self._load(candidate)
            if image is None:
                self._rejected.add(candidate)
                continue
            crop = self._crop(image, rng)
            rgb = torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1)
            return {"rgb": rgb, "label": self.label_of(self.files[candidate])}
        raise NoUsablePhotos(f"{self.root}: no usable colour photo (all are unreadable or below mean chroma {self.min_chroma:g})")


class EpochIndex(int):
    """A dataset index that also carries the run's seed and the epoch (what the training sampler
    yields), so that a dataset can seed its random augmentation from all three."""

    def __new__(cls, index: int, seed: int = 0, epoch: int = 0) -> "EpochIndex":
        key = super().__new__(cls, index)
        key.seed, key.epoch = seed, epoch
        return key

    def __reduce__(self):  # to worker processes, attributes included
        return EpochIndex, (int(self), self.seed, self.epoch)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int, drop_last: bool, sampler=None, pin_memory: bool = False,
                seed: int = 0) -> DataLoader:
    """A DataLoader drawing its own random numbers (each epoch's worker seeds, a shuffle) from a
    generator seeded with ``seed``: drawn from torch's global stream they would shift dropout's
    masks each time an epoch begins, and a resumed run begins one epoch more than the uninterrupted one."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def _seed_worker(worker_id: int) -> None:
    # Python's `random` is not reseeded per worker by default: derive it from torch's seed
    random.seed(torch.initial_seed() % 2**32)
