"""Writing colorizations: the format follows the extension; metadata goes where the format holds
it; 16-bit RGB is written by pypng (PNG) and tifffile (TIFF), the rest by Pillow."""
from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from .atomic import atomic_write_bytes
from .metadata import TIFF_TEXT_TAGS, ImageMetadata

_FORMAT_BY_EXTENSION = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF", ".webp": "WEBP", ".gif": "GIF", ".ppm": "PPM", ".tga": "TGA",
}
_FORMATS_WITH_ALPHA = {"PNG", "TIFF", "WEBP", "TGA", "GIF"}  # Pillow saves RGBA as a GIF with a transparent index


def extension_format(extension: str) -> str:
    """Pillow's format name for an output extension ('.jpg' -> 'JPEG'), or ValueError."""
    if extension.lower() not in _FORMAT_BY_EXTENSION:
        raise ValueError(f"unsupported output extension '{extension}' (use one of {', '.join(sorted(_FORMAT_BY_EXTENSION))})")
    return _FORMAT_BY_EXTENSION[extension.lower()]


def output_format(path: str | Path) -> str:
    try:
        return extension_format(Path(path).suffix)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def image_format(name: str) -> str:
    """Pillow's format name for a format ('PNG', 'tiff') or an extension ('.jpg', 'jpg'), or ValueError."""
    if name.upper() in _FORMAT_BY_EXTENSION.values():
        return name.upper()
    return extension_format(name if name.startswith(".") else f".{name}")


def write_image(
    stream: IO[bytes],
    rgb: np.ndarray,
    fmt: str,
    alpha: np.ndarray | None = None,
    metadata: ImageMetadata | None = None,
    quality: int = 95,
) -> None:
    """Encode (H, W, 3) uint8 or uint16 RGB as ``fmt`` (a format or an extension: 'PNG', '.tif')
    onto a binary stream: an open file, an ``io.BytesIO``, a socket's file.

    ``metadata`` (EXIF, RGB ICC profile, DPI, TIFF compression) is written where the format
    holds it. uint16 pixels stay 16-bit in PNG and TIFF (opaque ones: Pillow holds no 16-bit
    RGB, so pypng and tifffile write them) and are reduced to 8 bits elsewhere. Where the
    format has no alpha channel, a transparent image is flattened onto white (the pixels hidden
    under transparency are never shown).
    """
    fmt = image_format(fmt)
    metadata = metadata or ImageMetadata()
    if alpha is not None and fmt not in _FORMATS_WITH_ALPHA:
        rgb, alpha = flatten_onto_white(rgb, alpha), None
    if rgb.dtype == np.uint16 and (fmt not in ("PNG", "TIFF") or alpha is not None):
        rgb = to_8_bits(rgb)
    if rgb.dtype == np.uint16:
        (_save_png_16 if fmt == "PNG" else _save_tiff_16)(stream, rgb, metadata)
    else:
        _save_with_pillow(stream, fmt, rgb, alpha, metadata, quality)


def encode_image(rgb: np.ndarray, fmt: str, alpha: np.ndarray | None = None, metadata: ImageMetadata | None = None,
                 quality: int = 95) -> bytes:
    """The file :func:`write_image` writes, as bytes."""
    encoded = io.BytesIO()
    write_image(encoded, rgb, fmt, alpha, metadata, quality)
    return encoded.getvalue()


def save_image(
    path: str | Path,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    metadata: ImageMetadata | None = None,
    quality: int = 95,
) -> Path:
    """Write (H, W, 3) uint8 or uint16 RGB to ``path`` atomically, as :func:`write_image` encodes
    it; the format follows the extension.

    The image is encoded in memory first and then written to a temporary file in the destination
    folder, checked, flushed to disk and renamed over the target: a crash never leaves a
    half-written file, and neither does a full disk (Pillow's encoders write to a file descriptor
    with C ``write()`` calls whose short writes go unnoticed, so a full disk used to commit a
    truncated image). The encoded bytes cost at most the raw pixels' size while they are written.
    """
    path = Path(path)
    atomic_write_bytes(path, encode_image(rgb, output_format(path), alpha, metadata, quality))
    return path


def to_8_bits(rgb: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by rounding (65535 / 257 = 255)."""
    return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)


def flatten_onto_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite (H, W, 3) over white with an (H, W) uint8 alpha, keeping rgb's dtype."""
    peak = float(np.iinfo(rgb.dtype).max)
    opacity = alpha.astype(np.float32)[..., None] / 255.0
    return np.round(rgb * opacity + peak * (1.0 - opacity)).astype(rgb.dtype)


def _pillow_options(fmt: str, metadata: ImageMetadata, quality: int) -> dict:
    """Pillow's save keywords for the metadata this format can hold."""
    options: dict = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if metadata.icc_profile and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        options["icc_profile"] = metadata.icc_profile
    if metadata.exif is not None and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        options["exif"] = metadata.exif
    if metadata.dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        # JPEG stores whole dots per inch; PNG's metres make 300 dpi read back as 299.9994
        options["dpi"] = tuple(round(d) for d in metadata.dpi) if fmt == "JPEG" else metadata.dpi
    if fmt == "TIFF" and metadata.tiff_compression not in (None, "raw"):
        options["compression"] = _rgb_tiff_compression(metadata.tiff_compression)
    return options


# Lossless TIFF compressions Pillow writes for RGB: an input compressed with one of them is
# written with it again
_RGB_TIFF_COMPRESSIONS = {"tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"}


def _rgb_tiff_compression(compression: str) -> str:
    """The compression of a colorized TIFF whose input was compressed with ``compression``: the
    same when it can hold RGB, else lossless Deflate (CCITT Group 3/4 fax compression holds
    black-and-white pixels only; JPEG would lose detail a second time)."""
    return compression if compression in _RGB_TIFF_COMPRESSIONS else "tiff_adobe_deflate"


def _save_with_pillow(handle: IO[bytes], fmt: str, rgb: np.ndarray, alpha: np.ndarray | None, metadata: ImageMetadata, quality: int) -> None:
    image = Image.fromarray(rgb, mode="RGB")
    if alpha is not None:
        image.putalpha(Image.fromarray(alpha, mode="L"))
    image.save(handle, format=fmt, **_pillow_options(fmt, metadata, quality))


_PNG_METADATA_CHUNKS = {b"iCCP", b"pHYs", b"eXIf"}


def _save_png_16(handle: IO[bytes], rgb: np.ndarray, metadata: ImageMetadata) -> None:
    """16-bit RGB PNG: pixels by pypng, metadata chunks as Pillow encodes them (on a 1x1 image)."""
    import png

    height, width = rgb.shape[:2]
    pixels = io.BytesIO()
    png.Writer(width, height, greyscale=False, bitdepth=16).write_array(pixels, rgb.reshape(-1))
    chunks = list(png.Reader(bytes=pixels.getvalue()).chunks())
    carrier = io.BytesIO()
    Image.new("RGB", (1, 1)).save(carrier, format="PNG", **_pillow_options("PNG", metadata, 95))
    extra = [c for c in png.Reader(bytes=carrier.getvalue()).chunks() if c[0] in _PNG_METADATA_CHUNKS]
    png.write_chunks(handle, chunks[:1] + extra + chunks[1:])  # IHDR first, then metadata before IDAT


_TIFFFILE_COMPRESSION = {"tiff_adobe_deflate": "zlib", "tiff_deflate": "zlib", "tiff_lzw": "zlib", "packbits": "zlib"}


def _save_tiff_16(handle: IO[bytes], rgb: np.ndarray, metadata: ImageMetadata) -> None:
    """16-bit RGB TIFF by tifffile: compressed when the input was (LZW and PackBits as Deflate,
    lossless all the same, since tifffile encodes those only with imagecodecs), DPI, RGB ICC
    profile and EXIF's text tags (description, date, camera, artist, copyright)."""
    import tifffile

    exif = metadata.exif or {}
    tags = [(tag, "s", 0, str(exif[tag]), True) for tag in TIFF_TEXT_TAGS if isinstance(exif.get(tag), str)]
    encoded = io.BytesIO()  # tifffile wants a named file or a buffer, not our descriptor
    tifffile.imwrite(
        encoded, rgb, photometric="rgb",
        compression=_TIFFFILE_COMPRESSION.get(metadata.tiff_compression or ""),
        resolution=metadata.dpi, resolutionunit="INCH" if metadata.dpi else None,
        iccprofile=metadata.icc_profile, extratags=tags, metadata=None, software=None,
    )
    handle.write(encoded.getbuffer())


