"""sample-diverse's files: each photo decoded, its k colorizations sampled (a batch that fails
again photo by photo) and written with a labelled contact sheet, one record per photo."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .contact_sheet import contact_sheet, grey_thumbnail
from .diverse import DiverseResult, DiverseSampler
from .imageio.decoding import DEFAULT_MAX_PIXELS
from .imageio.photo import DecodedPhoto


def save_diverse(result: DiverseResult, image: DecodedPhoto, paths: Sequence[Path], sheet_path: Path, title: str | None = None,
                 sheet_height: int = 256) -> None:
    """Write the k colorizations (atomically, with the photo's alpha and ICC profile; 16-bit ones
    as 16 bits where the format holds it) and the contact sheet."""
    from .imageio.encoders import save_image, to_8_bits

    for path, picture in zip(paths, result.images):
        save_image(path, picture, result.alpha, image.metadata)
    tiles = [to_8_bits(picture) if picture.dtype == np.uint16 else picture for picture in result.images]
    sheet = contact_sheet(grey_thumbnail(image.lightness, sheet_height), tiles, result.labels, sheet_height, title)
    save_image(sheet_path, np.asarray(sheet))


def sample_jobs(sampler: DiverseSampler, jobs: Sequence, k: int, method: str = "topk", seed: int = 0,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> list[dict]:
    """Sample and save one batch of :class:`recolor.planning.DiverseJob`; a record per photo (the
    job's own, completed), each failure one line naming its file, never an exception."""
    from .imageio.decoding import ImageReadError
    from .imageio.photo import decode_photo

    records, decoded, pending = [], [], []
    for job in jobs:
        try:
            decoded.append(decode_photo(job.source, max_pixels=max_pixels))
            pending.append(job)
        except ImageReadError as exc:
            records.append(job.record | {"status": "error", "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a decoder's own failure is this photo's, never the run's
            records.append(job.record | {"status": "error", "error": f"{job.record['input']}: could not read ({_one_line(exc)})"})
    for image, job, result in zip(decoded, pending, sample_each(sampler, decoded, k, method, seed)):
        if isinstance(result, str):
            records.append(job.record | {"status": "error", "error": f"{job.record['input']}: sampling failed ({result})"})
            continue
        try:
            save_diverse(result, image, job.outputs, job.sheet, title=f"{Path(job.record['input']).name}: {sampler.name}, {method}, seed {seed}")
            record = {"width": image.size[0], "height": image.size[1], "labels": result.labels}
            if result.hints is not None:  # per sample, the points that made it: [x, y, "#rrggbb"] in the photo's pixels
                record["hints"] = [[[round(x, 1), round(y, 1), colour] for x, y, colour in points] for points in result.hints]
            records.append(job.record | record)
        except (OSError, ValueError) as exc:
            records.append(job.record | {"status": "error", "error": f"{job.sheet.parent}: could not write ({exc})"})
    return records


def sample_each(sampler: DiverseSampler, images: list[DecodedPhoto], k: int, method: str, seed: int) -> list[DiverseResult | str]:
    """Per photo, its result or why it failed. A batch that fails (one photo's NaN colour, the GPU
    out of memory) is sampled again photo by photo, as the colorize pipeline does: only the photos
    that fail are reported, and the others' pictures are the same (one seed per photo)."""
    try:
        return sampler.sample_photos(images, k, method, seed)
    except (RuntimeError, ValueError, MemoryError) as exc:
        if len(images) <= 1:
            return [_one_line(exc)] * len(images)
        if sampler.device.type == "cuda":
            torch.cuda.empty_cache()
        return [result for image in images for result in sample_each(sampler, [image], k, method, seed)]


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
