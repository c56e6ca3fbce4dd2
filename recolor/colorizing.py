"""What both engines share (torch-free): the photo-level API on top of an engine's
``colorize_photos`` (:class:`recolor.inference.Colorizer`, torch; :class:`recolor.onnx_engine.OnnxColorizer`,
ONNX Runtime), the result type and the network's input size."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from . import DEFAULT_MODEL
from .hintpoints import Hints
from .imageio.api_input import PhotoLike, as_pil_image
from .imageio.encoders import to_8_bits
from .imageio.photo import photo_from_pil


def square_size(own: int, multiple: int, requested: int | None) -> int:
    """The model's square input side: ``requested`` (or the model's ``own``) rounded to the network's
    ``multiple``; a ValueError for a size the network cannot take at all."""
    if requested is not None and not multiple <= requested <= 8 * max(own, multiple):
        raise ValueError(f"--size {requested}: this model takes {multiple} to {8 * max(own, multiple)} pixels "
                         f"(a multiple of {multiple}; its own is {own})")
    size = int(requested or own)
    if size % multiple:
        size = max(multiple, round(size / multiple) * multiple)
    return size


class NonFiniteOutputError(ValueError):
    """The model produced NaN or infinite colour (corrupt weights, numeric overflow)."""


@dataclass
class ColorizeResult:
    rgb: np.ndarray  # (H, W, 3) uint8, or uint16 for a 16-bit input
    alpha: np.ndarray | None
    was_colour: bool

    def to_pil(self) -> Image.Image:
        """8-bit RGB(A): Pillow holds no 16-bit RGB (``save_image`` writes the 16-bit data)."""
        image = Image.fromarray(to_8_bits(self.rgb) if self.rgb.dtype == np.uint16 else self.rgb, mode="RGB")
        if self.alpha is not None:
            image.putalpha(Image.fromarray(self.alpha, mode="L"))
        return image


class PhotoColorizer:
    """``colorize`` and ``colorize_many`` over an engine's ``colorize_photos(photos, hints)``, which
    takes :class:`~recolor.imageio.DecodedPhoto` (numpy pixels when ``decodes_to_arrays``) and
    returns (host RGB arrays or tensors, an event to synchronize or None)."""

    name: str
    engine: str  # "torch" or "onnx"
    decodes_to_arrays = False  # the engine takes numpy pixels (and never imports torch)

    @property
    def takes_hints(self) -> bool:
        raise NotImplementedError

    def check_hints(self, hints) -> None:
        if hints is not None and not self.takes_hints:
            raise ValueError(f"model '{self.name}' takes no hints (points or a reference): the shipped default, {DEFAULT_MODEL}, does")

    def colorize(self, photo: PhotoLike | Sequence[PhotoLike], batch_size: int = 8, hints: Sequence | None = None,
                 reference: PhotoLike | None = None) -> Image.Image | list[Image.Image]:
        """Colorize a photo (a path, a PIL image or a numpy array: see :func:`recolor.imageio.as_pil_image`)
        into a PIL image of the same size (RGBA when it had alpha), or a list of photos into a list
        of images, ``batch_size`` at a time through the network.

        ``hints``: points ``[(x, y, colour), ...]`` in pixels of the upright photo (origin top-left),
        a colour being ``"#rrggbb"`` or ``(r, g, b)`` of 0-255 integers: only its hue and chroma are
        used, the lightness stays the photo's. ``reference``: a colour photo whose colours to aim
        at. Both need a hint-taking model (the default) and go with one photo; for a list, give
        :meth:`colorize_many` one :class:`~recolor.hints.Hints` per photo.
        """
        if isinstance(photo, (list, tuple)):
            if hints is not None or reference is not None:
                raise ValueError("hints and reference go with one photo; for a list use colorize_many(photos, hints=[Hints, ...])")
            return self.colorize_many(photo, batch_size)
        return self.colorize_many([photo], hints=[Hints.of(hints, reference)])[0]

    def colorize_many(self, photos: Iterable[PhotoLike], batch_size: int = 8, hints: Sequence | None = None) -> list[Image.Image]:
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size}: must be 1 or more")
        photos = list(photos)
        hints = list(hints) if hints is not None else [None] * len(photos)
        if len(hints) != len(photos):
            raise ValueError(f"{len(hints)} hints for {len(photos)} photos: give one (or None) per photo")
        for item in hints:
            self.check_hints(item)
        images = []
        for start in range(0, len(photos), batch_size):
            batch = photos[start:start + batch_size]
            decoded = [photo_from_pil(as_pil_image(item), Path(item) if isinstance(item, (str, os.PathLike)) else None,
                                      as_array=self.decodes_to_arrays) for item in batch]
            outputs, ready = self.colorize_photos(decoded, hints[start:start + batch_size])
            if ready is not None:
                ready.synchronize()
            images += [ColorizeResult(np.asarray(rgb), photo.alpha, photo.was_colour).to_pil() for rgb, photo in zip(outputs, decoded)]
        return images

    def colorize_photos(self, photos, hints=None):
        raise NotImplementedError
