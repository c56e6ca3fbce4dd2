"""The work behind the page: opening photos, previews while hints change, the full-resolution
result, suggestions, thumbnails. Plain functions over a loaded :class:`~recolor.Colorizer`,
run in worker threads by :mod:`recolor.server.app`.

Memory stays bounded however many requests arrive: at most ``workers`` jobs run at once (each
decodes at most one upload), the network runs one job at a time behind a lock (on a CPU a second
one would only share the same cores), and the photos kept open between requests live in a
bounded :class:`~recolor.server.photos.PhotoCache`.

The result a person downloads is made exactly as ``recolor colorize`` makes a file: the same
decoding (:func:`~recolor.imageio.photo.decode_photo` for FOLDER's photos), the same
:meth:`Colorizer.colorize_photos` with the same :class:`~recolor.hints.Hints`, the same encoder
(:func:`~recolor.imageio.encoders.encode_image`: metadata, 16-bit, alpha) and the same choice of
format. Previews take a faster road to the same colour: the network's cached encoder features,
and the join at the size the page shows.
"""
from __future__ import annotations

import io
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..hints import HintPoint, Hints, global_hint_length
from ..imageio.decoding import DEFAULT_MAX_PIXELS, open_image, open_image_bytes
from ..imageio.encoders import encode_image, image_format, output_format
from ..imageio.photo import DecodedPhoto, decode_photo, image_to_array, photo_from_pil, split_alpha
from ..inference import Colorizer, join_to_host
from .folder import FolderPhoto, PhotoFolder
from .photos import OpenPhoto, PhotoCache

PREVIEW_QUALITY = 90
THUMBNAIL_SIDE = 160
MAX_THUMBNAILS = 1024
MAX_SHOWN_SIDE = 4096


@dataclass(frozen=True)
class Reference:
    """A reference photo for one request: what :class:`Hints` takes, and, for an open photo, its cached hint."""

    source: object
    photo: OpenPhoto | None = None


@dataclass(frozen=True)
class Download:
    data: bytes
    media_type: str
    filename: str


class Studio:
    def __init__(self, colorizer: Colorizer, folder: PhotoFolder | None = None, cache: PhotoCache | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.colorizer, self.folder, self.max_pixels = colorizer, folder, max_pixels
        self.cache = cache if cache is not None else PhotoCache()
        self.model_lock = threading.Lock()
        self._thumbnails: dict[tuple[str, int], bytes] = {}
        self._thumbnail_lock = threading.Lock()

    # --- decoding -----------------------------------------------------------------------------

    def decode_upload(self, data: bytes, name: str) -> DecodedPhoto:
        """An uploaded photo, through colorize's guards (format, pixel limit, one-line errors)."""
        return photo_from_pil(open_image_bytes(data, name, self.max_pixels))

    def upload_reference(self, data: bytes, name: str) -> Reference:
        return Reference(open_image_bytes(data, name, self.max_pixels).convert("RGB"))

    def open_upload(self, data: bytes, name: str) -> OpenPhoto:
        return self._open(secrets.token_urlsafe(12), name, self.decode_upload(data, name))

    def open_folder_photo(self, photo: FolderPhoto) -> OpenPhoto:
        opened = self.cache.find(photo.id)
        if opened is not None:
            return self.cache.get(photo.id)
        return self._open(photo.id, Path(photo.name).name, decode_photo(photo.real, max_pixels=self.max_pixels), photo)

    def _open(self, id: str, name: str, decoded: DecodedPhoto, folder_photo: FolderPhoto | None = None) -> OpenPhoto:
        with self.model_lock:
            network_input = self.colorizer.input_from_lightness(self.colorizer.photo_lightness(decoded))[None]
            features = self.colorizer.encoder_features(network_input)
        return self.cache.add(OpenPhoto(id, name, decoded, network_input, features, folder_photo))

    # --- hints ----------------------------------------------------------------------------------

    def hints(self, points: tuple[HintPoint, ...], reference: Reference | None) -> Hints | None:
        hints = Hints(points, reference.source if reference else None) if points or reference else None
        self.colorizer.check_hints(hints)
        return hints

    def hint_tensors(self, photo: OpenPhoto, points: tuple[HintPoint, ...], reference: Reference | None) -> tuple[torch.Tensor, ...]:
        """The network's hint inputs for an open photo, as :meth:`Colorizer.hint_inputs` makes them,
        with an open reference's global hint computed once."""
        hints = self.hints(points, reference)
        if hints is None:
            return ()
        # the points as a download gets them (Colorizer.hint_inputs, which checks them too); the
        # reference's global hint is the open reference's own, computed once
        local = self.colorizer.hint_inputs([Hints(points)], [photo.size], photo.network_input)[0]
        if reference is None:
            global_hint = torch.zeros(global_hint_length())
        elif reference.photo is not None:
            global_hint = reference.photo.reference_hint(self.colorizer.reference_hint)
        else:
            global_hint = self.colorizer.reference_hint(reference.source)
        return local, global_hint[None]

    # --- what the page asks for -----------------------------------------------------------------

    def preview(self, photo: OpenPhoto, points: tuple[HintPoint, ...], reference: Reference | None, max_side: int) -> bytes:
        """The colorization at the size the page shows (JPEG): the decoder only, the join at that size."""
        extra = self.hint_tensors(photo, points, reference)
        with self.model_lock:
            ab = self.colorizer.predict_ab(photo.network_input, extra, photo.features)
        lightness = photo.shown_lightness(lambda: self.colorizer.photo_lightness(photo.decoded), min(max_side, MAX_SHOWN_SIDE))
        rgb, _ = join_to_host(lightness, ab[0], self.colorizer.device)
        return jpeg(rgb.numpy())

    def before(self, photo: OpenPhoto, max_side: int) -> bytes:
        """The photo as the network sees it, grey, at the size the page shows (JPEG)."""
        lightness = photo.shown_lightness(lambda: self.colorizer.photo_lightness(photo.decoded), min(max_side, MAX_SHOWN_SIDE))
        rgb, _ = join_to_host(lightness, torch.zeros(2, 1, 1), self.colorizer.device)
        return jpeg(rgb.numpy())

    def result(self, decoded: DecodedPhoto, name: str, points: tuple[HintPoint, ...], reference: Reference | None,
               fmt: str = "png") -> Download:
        """The full-resolution colorization, encoded as ``recolor colorize`` writes it."""
        hints = self.hints(points, reference)
        with self.model_lock:
            outputs, ready = self.colorizer.colorize_photos([decoded], hints=[hints])
        if ready is not None:
            ready.synchronize()
        pillow_format, filename = download_format(name, fmt)
        data = encode_image(outputs[0].numpy(), pillow_format, decoded.alpha, decoded.metadata)
        return Download(data, Image.MIME.get(pillow_format, "application/octet-stream"), filename)

    def suggest(self, decoded: DecodedPhoto, x: float, y: float, k: int, points: tuple[HintPoint, ...],
                reference: Reference | None, features: list[torch.Tensor] | None = None) -> list[tuple[str, float]]:
        hints = self.hints(points, reference)
        with self.model_lock:
            return self.colorizer.suggest_for(decoded, x, y, k, hints, features)

    def thumbnail(self, photo: FolderPhoto) -> bytes:
        """A small JPEG of a folder photo (kept: at most :data:`MAX_THUMBNAILS`, a few MB)."""
        key = (photo.id, photo.real.stat().st_mtime_ns)
        with self._thumbnail_lock:
            if key in self._thumbnails:
                return self._thumbnails[key]
        image, _ = split_alpha(open_image(photo.real, max_pixels=self.max_pixels))
        if image.mode not in ("L", "RGB"):  # 16-bit or float: scaled to 8 bits as a whole
            image = Image.fromarray(np.round(image_to_array(image) * 255).astype(np.uint8))
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        data = jpeg(image)
        with self._thumbnail_lock:
            if len(self._thumbnails) >= MAX_THUMBNAILS:
                self._thumbnails.pop(next(iter(self._thumbnails)))
            self._thumbnails[key] = data
        return data


def download_format(name: str, fmt: str) -> tuple[str, str]:
    """Pillow's format and the file name of a download of the photo ``name``: ``fmt`` "original"
    chooses as ``recolor colorize`` does (the input's own format; PNG for one Pillow cannot
    write); otherwise an extension ("png", "jpg", "tif", ...). ValueError for an unknown one."""
    stem = Path(name).stem or "photo"
    if fmt == "original":
        try:
            return output_format(name), Path(name).name
        except ValueError:
            return "PNG", f"{stem}.png"
    return image_format(fmt), f"{stem}.{fmt.lower().lstrip('.')}"


def jpeg(image) -> bytes:
    """A preview or thumbnail as JPEG bytes (a PIL image or (H, W, 3) uint8 array)."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image, mode="RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return buffer.getvalue()
