"""The photos open in the page: decoded once, kept in a bounded cache between requests.

A person changes the hints of one photo again and again; each change needs only the network's
decoder (the encoder's features do not depend on hints) and a join at the size the page shows.
So an open photo keeps its decoded pixels (for the full-resolution download), the network's
input, the encoder's features and the lightness at the page's size. The cache holds a few photos
and a bounded number of pixels; the least recently used photo goes first (the page opens it
again when it is asked for after that: a 410 says so).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..imageio.photo import DecodedPhoto
from .folder import FolderPhoto

DEFAULT_OPEN_PHOTOS = 8
DEFAULT_OPEN_PIXELS = 100_000_000


class PhotoClosed(KeyError):
    """An open photo's id that the cache no longer holds (evicted, or the server restarted): a 410."""


@dataclass(eq=False)
class OpenPhoto:
    id: str
    name: str  # the file's name: the download is named after it
    decoded: DecodedPhoto
    network_input: torch.Tensor  # normalised L (1, 1, s, s): what the network sees
    features: list[torch.Tensor] | None  # the encoder's, when the network has one (Colorizer.encoder_features)
    folder_photo: FolderPhoto | None = None
    _shown: tuple[tuple[int, int], torch.Tensor] | None = field(default=None, repr=False)
    _reference_hint: torch.Tensor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.decoded.size

    @property
    def pixels(self) -> int:
        width, height = self.size
        return width * height

    def shown_size(self, max_side: int) -> tuple[int, int]:
        """(width, height) of the photo shown at most ``max_side`` pixels wide and high (never enlarged)."""
        width, height = self.size
        scale = min(1.0, max_side / max(width, height))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def shown_lightness(self, full_lightness, max_side: int) -> torch.Tensor:
        """The lightness (1, h, w) at :meth:`shown_size` (area-averaged); the last size asked for is kept.
        ``full_lightness``: a function computing the full-size plane, called only when needed."""
        size = self.shown_size(max_side)
        with self._lock:
            if self._shown is not None and self._shown[0] == size:
                return self._shown[1]
        plane = full_lightness()
        if size != self.size:
            plane = F.interpolate(plane[None], size=(size[1], size[0]), mode="area")[0]
        with self._lock:
            self._shown = (size, plane)
        return plane

    def reference_source(self):
        """This photo as a reference for :class:`~recolor.hints.Hints`: a folder photo by its path
        (what a sidecar names, so that ``recolor colorize`` reads the same file), an upload as its
        decoded pixels."""
        if self.folder_photo is not None:
            return self.folder_photo.real
        pixels = self.decoded.pixels
        if pixels.dtype == torch.uint8:
            return pixels.numpy() if pixels.shape[-1] == 3 else pixels[..., 0].numpy()
        return np.clip(pixels[..., 0].numpy() / 100.0, 0.0, 1.0)  # a 16-bit grey: its lightness, as grey

    def reference_hint(self, compute) -> torch.Tensor:
        """The global hint of this photo as a reference, computed once by ``compute(reference_source)``."""
        with self._lock:
            if self._reference_hint is not None:
                return self._reference_hint
        hint = compute(self.reference_source())
        with self._lock:
            self._reference_hint = hint
        return hint


class PhotoCache:
    """The open photos, least recently used first out, within ``max_photos`` and ``max_pixels``
    (the newest photo is always kept, whatever its size)."""

    def __init__(self, max_photos: int = DEFAULT_OPEN_PHOTOS, max_pixels: int = DEFAULT_OPEN_PIXELS) -> None:
        self.max_photos, self.max_pixels = max(1, max_photos), max_pixels
        self._photos: OrderedDict[str, OpenPhoto] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, photo: OpenPhoto) -> OpenPhoto:
        with self._lock:
            self._photos.pop(photo.id, None)
            self._photos[photo.id] = photo
            while len(self._photos) > 1 and (len(self._photos) > self.max_photos
                                             or sum(p.pixels for p in self._photos.values()) > self.max_pixels):
                self._photos.popitem(last=False)
        return photo

    def get(self, id: str) -> OpenPhoto:
        with self._lock:
            photo = self._photos.get(id)
            if photo is None:
                raise PhotoClosed(f"photo {id!r} is no longer open (the server keeps the {self.max_photos} last ones): open it again")
            self._photos.move_to_end(id)
            return photo

    def find(self, id: str) -> OpenPhoto | None:
        with self._lock:
            return self._photos.get(id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._photos)
