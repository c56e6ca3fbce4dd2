"""The ground truth of ``recolor evaluate``: the colour photos below ``--data``, each cropped to
``size`` x ``size``, and the files of the predictions folders matched to them."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..imageio.decoding import ImageReadError, file_problem, open_image
from ..imageio.listing import list_image_files
from ..imageio.photo import COLOUR_CHROMA_THRESHOLD, mean_chroma
from .settings import EvaluationError


@dataclass
class Photo:
    """One ground-truth photo: its file and its path below ``--data``."""

    path: Path
    relative: Path

    @property
    def folder(self) -> str | None:
        return self.relative.parts[0] if len(self.relative.parts) > 1 else None


def find_photos(root: Path, limit: int | None, seed: int) -> list[Photo]:
    """Image files below ``root``; ``limit`` keeps a seeded random subset (spread over all sub-folders)."""
    if not root.is_dir():
        raise EvaluationError(f"--data {root}: no such folder (pass a folder of colour photos: the ground truth)")
    photos = [Photo(p, p.relative_to(root)) for p in list_image_files(root)]
    if not photos:
        raise EvaluationError(f"--data {root}: no image files found")
    if limit is not None and limit < len(photos):
        photos = random.Random(seed).sample(photos, limit)
        photos.sort(key=lambda photo: photo.relative)
    return photos


def default_size(photos: list[Photo], cap: int = 256) -> int:
    """min(cap, the smallest shorter side among the photos), read from the headers only."""
    smallest = cap
    for photo in photos:
        if file_problem(photo.path):
            continue  # a named pipe would block Image.open; the load step names the problem
        try:
            with Image.open(photo.path) as image:
                smallest = min(smallest, min(image.size))
        except Exception:  # unreadable files are reported when they are loaded
            continue
    return max(8, smallest)


def square_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bicubic, as ColorPhotoDataset's validation transform), centre crop; uint8 (3, s, s)."""
    image = image.convert("RGB")
    if image.size != (size, size):
        ratio = size / min(image.size)
        new_size = (max(size, round(image.width * ratio)), max(size, round(image.height * ratio)))
        image = image.resize(new_size, Image.BICUBIC, reducing_gap=3.0)
        left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def prediction_index(folder: Path) -> dict[Path, Path]:
    """Files of a predictions folder by relative path without extension (a .png may answer a .jpg)."""
    if not folder.is_dir():
        raise EvaluationError(f"--predictions {folder}: no such folder")
    return {p.relative_to(folder).with_suffix(""): p for p in list_image_files(folder)}


def parse_prediction_option(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name, Path(path)
    return Path(value).name or value, Path(value)


# --- reading one batch -----------------------------------------------------------------------

@dataclass
class Skipped:
    """The photos left out so far, by reason: each entry names one photo (or prediction) and why."""

    unreadable: list[str] = field(default_factory=list)
    grey: list[str] = field(default_factory=list)
    missing_prediction: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        notes = []
        if self.grey:
            notes.append(f"{len(self.grey)} near-greyscale photos were skipped (no colour to compare with), e.g. {self.grey[0]}.")
        if self.unreadable:
            notes.append(f"{len(self.unreadable)} photos were skipped as unreadable, e.g. {self.unreadable[0]}.")
        if self.wrong_size:
            notes.append(f"{len(self.wrong_size)} predictions were refused because their size differs from the ground truth's "
                         f"and left out for every row, e.g. {self.wrong_size[0]}.")
        if self.missing_prediction:
            notes.append(f"{len(self.missing_prediction)} photos have no file in a predictions folder and were left out "
                         f"for every row, e.g. {self.missing_prediction[0]}.")
        return notes

    def nothing_usable(self, data: Path) -> EvaluationError:
        return EvaluationError(f"--data {data}: no usable colour photo (unreadable: {len(self.unreadable)}, near-greyscale: {len(self.grey)}, "
                               f"without prediction: {len(self.missing_prediction)}, prediction of another size: {len(self.wrong_size)})")


@dataclass
class CroppedChunk:
    """The usable photos of one batch: their crops, positions and every predictions folder's crops."""

    truths: list[np.ndarray] = field(default_factory=list)  # uint8 (3, s, s)
    kept: list[tuple[int, Photo]] = field(default_factory=list)  # (position in the photo list, photo)
    predicted: dict[str, list[np.ndarray]] = field(default_factory=dict)  # row name -> uint8 (3, s, s) per kept photo


def read_chunk(chunk: list[tuple[int, Photo]], predictions: dict[str, dict[Path, Path]], size: int, skipped: Skipped) -> CroppedChunk:
    """Crops of the readable colour photos of ``chunk`` that every predictions folder (row name ->
    :func:`prediction_index`) answers; the others are recorded in ``skipped``."""
    cropped = CroppedChunk(predicted={name: [] for name in predictions})
    for position, photo in chunk:
        try:
            image = open_image(photo.path)
        except ImageReadError as exc:
            skipped.unreadable.append(str(exc))
            continue
        if mean_chroma(image.convert("RGB"), thumbnail=64) < COLOUR_CHROMA_THRESHOLD:
            skipped.grey.append(str(photo.relative))
            continue
        matched = _matching_predictions(photo, image, predictions, size, skipped)
        if matched is None:
            continue
        cropped.truths.append(square_crop(image, size))
        cropped.kept.append((position, photo))
        for name, array in matched.items():
            cropped.predicted[name].append(array)
    return cropped


def _matching_predictions(photo: Photo, image: Image.Image, predictions: dict[str, dict[Path, Path]], size: int,
                          skipped: Skipped) -> dict[str, np.ndarray] | None:
    """Each predictions folder's crop for ``photo``, or None (recorded in ``skipped``) when one is missing or unfit."""
    matched = {}
    for name, index in predictions.items():
        match = index.get(photo.relative.with_suffix(""))
        if match is None:
            skipped.missing_prediction.append(f"{name}: {photo.relative}")
            return None
        try:
            predicted = open_image(match)
        except ImageReadError as exc:
            skipped.unreadable.append(str(exc))
            return None
        if predicted.size != image.size:
            # a thumbnail, a rotated copy or another photo would be scored under this name
            skipped.wrong_size.append(f"{match}: {predicted.width}x{predicted.height}, the ground truth {photo.relative} is {image.width}x{image.height}")
            return None
        matched[name] = square_crop(predicted, size)
    return matched
