"""What the Python API takes as a photo: a path, a Pillow image or a numpy array."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from .decoding import DEFAULT_MAX_PIXELS, note_integer_samples, open_image

PhotoLike = Union[str, Path, Image.Image, np.ndarray]


def as_pil_image(photo: PhotoLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A photo as the Python API takes it, as an upright Pillow image: a path (decoded, EXIF
    orientation applied), a Pillow image (its EXIF orientation applied, as for a path), or a
    numpy array: (H, W) grey uint8 or uint16 (16-bit), (H, W, 3) RGB or (H, W, 4) RGBA uint8, or
    floats in 0..1 of either shape."""
    if isinstance(photo, np.ndarray):
        return _image_from_array(photo)
    if isinstance(photo, Image.Image):
        upright = ImageOps.exif_transpose(photo)
        note_integer_samples(photo, upright)
        return upright
    if isinstance(photo, (str, os.PathLike)):
        return open_image(photo, max_pixels=max_pixels)
    raise TypeError(f"expected a path, a PIL image or a numpy array, not {type(photo).__name__}")


def _image_from_array(array: np.ndarray) -> Image.Image:
    channels = 1 if array.ndim == 2 else array.shape[-1] if array.ndim == 3 else 0
    if channels not in (1, 3, 4) or (array.ndim == 3 and channels == 1):
        raise ValueError(f"array of shape {array.shape}: expected (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA")
    if array.dtype.kind == "f":
        if channels == 1:
            return Image.fromarray(np.clip(array, 0, 1).astype(np.float32))  # mode F
        array = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)
    if array.dtype == np.uint16 and channels == 1:
        return Image.fromarray(np.ascontiguousarray(array))  # mode I;16
    if array.dtype != np.uint8:
        raise ValueError(f"array of dtype {array.dtype}: expected uint8, uint16 (grey) or floats in 0..1")
    return Image.fromarray(np.ascontiguousarray(array))

