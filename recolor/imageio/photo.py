"""Decoded photos: any Pillow mode to 8-bit pixels or, for 16-bit and float sources, a
full-resolution lightness plane (CIE L, 0..100).

Importing this module does not import torch: the ONNX engine decodes photos into numpy arrays
(``as_array=True``) and never loads it; the torch engine's tensors import it on first use.

The lightness is computed in row strips, never from a full-resolution float RGB copy, so a
24-megapixel scan costs about 100 MB of floats, not 300+.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from ..cie import lightness_from_rgb, thumbnail_chroma
from .decoding import DEFAULT_MAX_PIXELS, FRAMES_INFO, SAMPLES_INFO, ImageReadError, describe_source, open_image
from .metadata import ImageMetadata, image_metadata

if TYPE_CHECKING:
    import torch

# Mean chroma (Lab units) above which an image counts as colour. JPEG noise on a grey scan stays
# well below 2; sepia-toned prints are around 8-15.
COLOUR_CHROMA_THRESHOLD = 4.0
_STRIP_PIXELS = 1 << 21  # rows are converted in strips of about 2 MP to bound memory
_DECODE_STRIP_PIXELS = 1 << 20  # rows of Pillow's image copied into a pixel tensor at a time (bounds the temporary bytes)


def split_alpha(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """Normalise any Pillow mode to 'RGB' or 'L' (or 16-bit/float 'I'/'F') plus an optional alpha plane."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    elif mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    elif mode in ("RGBa", "La"):  # premultiplied alpha (a TIFF's associated alpha): Pillow divides it out
        mode = mode[:-1] + "A"
        image = image.convert(mode)
    if mode in ("RGBA", "LA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint8)
        return image.convert("RGB" if mode.startswith("RGB") else "L"), alpha
    if mode in ("RGB", "L") or mode.startswith("I") or mode == "F":
        return image, None
    # CMYK, YCbCr, LAB, HSV, 1: let Pillow convert to RGB (or L for bilevel)
    return image.convert("L" if mode == "1" else "RGB"), None


def image_to_array(image: Image.Image) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1] (0 black, 1 white), for 8-bit, 16-bit, 32-bit and
    float modes; the rules for float and 32-bit samples are :func:`float_levels`' and
    :func:`integer_levels`' (README: "black and white of float and 32-bit samples")."""
    mode = image.mode
    array = np.asarray(image)
    if mode in ("RGB", "L"):
        return array.astype(np.float32) / 255.0
    if mode == "F":
        return float_levels(finite_pixels(array.astype(np.float32)))
    return integer_levels(array, mode, image.info.get(SAMPLES_INFO))


# Float samples have no agreed black and white: the first of these scales that holds every
# sample is the photo's (a photo written as 0..1, as signed -1..1, as 8-bit or 16-bit levels),
# under- and overshoots of up to 5% of the scale clipped. A fixed scale, not the photo's own
# darkest and brightest samples: a dark photo stays dark.
_FLOAT_SCALES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (0.0, 65535.0))
_SCALE_SLACK = 0.05


def float_levels(array: np.ndarray) -> np.ndarray:
    """Finite float samples to 0..1 on the first scale of ``_FLOAT_SCALES`` that holds them all;
    samples beyond every scale (scientific data) are stretched from the darkest to the brightest,
    the one case where the brightness follows the content."""
    if not array.size:
        return array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    for black, white in _FLOAT_SCALES:
        slack = _SCALE_SLACK * (white - black)
        if black - slack <= low and high <= white + slack:
            break
    else:
        black, white = low, max(high, low + 1e-6)
    return np.clip((array.astype(np.float32) - black) / (white - black), 0, 1)


def integer_levels(array: np.ndarray, mode: str, samples: str | None = None) -> np.ndarray:
    """Integer samples to 0..1. 32-bit samples (``samples``: "uint32" or "int32", noted when a TIFF
    was opened) are scaled by their type's range, as TIFF says (its MaxSampleValue is for
    statistics only): white is 4,294,967,295, or 2,147,483,647 for signed samples, whose negative
    ones are black. Other 'I' images are 16-bit unless every value is at most 255 (8-bit levels
    in a 32-bit mode), as Pillow gives 16-bit PNGs and PGMs."""
    if samples == "uint32":
        return array.view(np.uint32).astype(np.float32) / np.float32(4294967295.0)
    if samples == "int32":
        return np.clip(array.astype(np.float32) / np.float32(2147483647.0), 0, 1)
    array = array.astype(np.float32)
    peak = float(array.max()) if array.size else 0.0
    scale = 255.0 if peak <= 255 and mode == "I" else 65535.0
    return np.clip(array / scale, 0, 1)


def finite_pixels(array: np.ndarray) -> np.ndarray:
    """A float image with NaN and -inf pixels black and +inf ones at the brightest finite value.

    One NaN would otherwise make the peak (and so every pixel) NaN: an all-black output.
    """
    finite = np.isfinite(array)
    if finite.all():
        return array
    brightest = float(array[finite].max()) if finite.any() else 0.0
    return np.nan_to_num(array, nan=0.0, posinf=brightest, neginf=0.0)


def lightness_of(array: np.ndarray) -> torch.Tensor:
    """Full-resolution CIE L (1, H, W) from an (H, W[, 3]) float array, in row strips."""
    import torch

    from ..color import rgb_to_lightness

    height, width = array.shape[:2]
    out = torch.empty((1, height, width), dtype=torch.float32)
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        strip = torch.from_numpy(np.ascontiguousarray(array[top : top + rows]))
        if strip.ndim == 2:  # grey: R = G = B, so L follows from Y = value
            strip = strip.unsqueeze(0).expand(3, -1, -1)
        else:
            strip = strip.permute(2, 0, 1)
        out[:, top : top + rows] = rgb_to_lightness(strip)
    return out


def mean_chroma(image: Image.Image, thumbnail: int = 128) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2) of a small copy of an RGB image."""
    import torch

    from ..color import rgb_to_lab

    small = image.convert("RGB")
    small.thumbnail((thumbnail, thumbnail))
    rgb = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)
    lab = rgb_to_lab(rgb)
    return float(lab[1:].pow(2).sum(0).sqrt().mean())


@dataclass
class DecodedPhoto:
    """A photo ready for colorization, as decoded: what the batch pipeline, ``sample-diverse`` and
    the Python API hand around.

    ``pixels`` is uint8 (H, W, C), C = 1 (grey) or 3 (sRGB), rows as Pillow decoded them (in
    pinned memory when bound for a GPU); for 16-bit and float sources it is instead the float32
    CIE L plane (H, W, 1), computed on the CPU by :func:`lightness_of`, and the colorization
    comes out 16 bits per channel. The pipeline computes the lightness on the model's device;
    :attr:`lightness` is the same plane on the pixels' device. Decoded for the ONNX engine
    (``as_array=True``), ``pixels`` is the same data as a numpy array.
    """

    path: Path | None
    pixels: Union[torch.Tensor, np.ndarray]
    alpha: np.ndarray | None = None
    was_colour: bool = False
    metadata: ImageMetadata = field(default_factory=ImageMetadata)
    frames: int = 1  # an animated GIF/TIFF/WebP: only the first frame is colorized

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow says it."""
        return self.pixels.shape[1], self.pixels.shape[0]

    @property
    def icc_profile(self) -> bytes | None:
        return self.metadata.icc_profile

    @functools.cached_property
    def lightness(self) -> torch.Tensor:
        """The full-size CIE L (1, H, W) float32 torch tensor in 0..100 (computed once, on first use)."""
        import torch

        from ..color import lightness_from_pixels

        if self.pixels.dtype == torch.uint8:
            return lightness_from_pixels(self.pixels)
        return self.pixels.permute(2, 0, 1).float()


def decode_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, pin_memory: bool = False, as_array: bool = False) -> DecodedPhoto:
    """Decode one file (EXIF orientation applied) or raise :class:`~recolor.imageio.ImageReadError`."""
    return photo_from_pil(open_image(path, max_pixels=max_pixels), Path(path), pin_memory=pin_memory, as_array=as_array)


def photo_from_pil(image: Image.Image, path: Path | None = None, pin_memory: bool = False, as_array: bool = False) -> DecodedPhoto:
    """The photo's pixels as a torch tensor, or with ``as_array`` as a numpy array (without torch)."""
    metadata = image_metadata(image)
    frames = int(image.info.get(FRAMES_INFO, getattr(image, "n_frames", 1)))
    base, alpha = split_alpha(image)
    if base.width == 0 or base.height == 0:
        raise ImageReadError(f"{describe_source(path)}: image has no pixels")
    colour = looks_colour(base)
    if base.mode in ("L", "RGB"):
        pixels = _pixels_of(base, pin_memory, as_array)
    elif as_array:
        pixels = lightness_from_rgb(image_to_array(base))[..., None]
    else:  # 16-bit or float: keep the precision, the plane is computed here once
        pixels = lightness_of(image_to_array(base)).permute(1, 2, 0).contiguous()
        if pin_memory:
            pixels = pixels.pin_memory()
    return DecodedPhoto(path=path, pixels=pixels, alpha=alpha, was_colour=colour, metadata=metadata, frames=frames)


def _pixels_of(image: Image.Image, pin_memory: bool, as_array: bool = False) -> torch.Tensor | np.ndarray:
    """Pillow's 8-bit rows copied into one (H, W, C) tensor a strip at a time.

    ``np.asarray(image)`` would first build a full ``bytes`` copy (twice the image, transiently,
    for a 24-megapixel scan) and then a read-only array that torch cannot wrap without warning.
    """
    channels = 3 if image.mode == "RGB" else 1
    if as_array:
        out = target = np.empty((image.height, image.width, channels), dtype=np.uint8)
    else:
        import torch

        out = torch.empty((image.height, image.width, channels), dtype=torch.uint8, pin_memory=pin_memory)
        target = out.numpy()
    rows = max(1, _DECODE_STRIP_PIXELS // image.width)
    for top in range(0, image.height, rows):
        bottom = min(image.height, top + rows)
        target[top:bottom] = np.asarray(image.crop((0, top, image.width, bottom))).reshape(bottom - top, image.width, channels)
    return out


def looks_colour(image: Image.Image) -> bool:
    """Whether a decoded image is a colour photo: its mean Lab chroma (:func:`mean_chroma`'s figure)
    above the threshold. A big image is box-reduced first instead of copied whole, and the chroma
    is computed by :func:`thumbnail_chroma`, so that decoding threads do not hold the GIL long."""
    if image.mode != "RGB":
        return False
    factor = min(image.size) // 512
    probe = image.reduce(factor) if factor > 1 else image.copy()
    probe.thumbnail((128, 128))
    return thumbnail_chroma(np.asarray(probe)) > COLOUR_CHROMA_THRESHOLD


