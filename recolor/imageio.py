"""Image I/O: read anything Pillow reads into a full-resolution lightness plane, write atomically.

Reading never keeps a full-resolution float RGB copy: the lightness (CIE L, 0..100) is
computed in row strips, so a 24-megapixel scan costs about 100 MB of floats, not 300+.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Union

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .color import lightness_from_pixels, rgb_to_lab, rgb_to_lightness, thumbnail_chroma

# Images with more pixels are refused before decoding (decompression bombs): checked per call by
# open_image from the header, so threads may decode with different limits at once.
DEFAULT_MAX_PIXELS = 150_000_000
# Mean chroma (Lab units) above which an image counts as colour. JPEG noise on a grey scan stays
# well below 2; sepia-toned prints are around 8-15.
COLOUR_CHROMA_THRESHOLD = 4.0
_STRIP_PIXELS = 1 << 21  # rows are converted in strips of about 2 MP to bound memory
_DECODE_STRIP_PIXELS = 1 << 20  # rows of Pillow's image copied into a pixel tensor at a time (bounds the temporary bytes)

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm",
    ".tga", ".jp2", ".j2k", ".jpx", ".pcx", ".sgi", ".ico", ".dib", ".jfif", ".eps", ".psd",
}
_FORMAT_BY_EXTENSION = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF",
    ".tiff": "TIFF", ".webp": "WEBP", ".gif": "GIF", ".ppm": "PPM", ".tga": "TGA",
}
_FORMATS_WITH_ALPHA = {"PNG", "TIFF", "WEBP", "TGA", "GIF"}  # Pillow saves RGBA as a GIF with a transparent index


FRAMES_INFO = "recolor.frames"  # open_image notes the frame count of animated GIF/TIFF/WebP here


class ImageReadError(Exception):
    """A file could not be read as an image; the message is one line and names the file."""


_ORIENTATION_TAG = 0x0112
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# TIFF tags of EXIF's first IFD that tifffile can carry into a 16-bit TIFF (text ones only)
# Tags that describe one file's pixel layout, not the photo: a TIFF's own EXIF (its first IFD)
# holds them, and copied onto another file they would describe the wrong strips
_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 284, 296, 317, 320,
                322, 323, 324, 325, 338, 339, 340, 341, 513, 514, 530, 531, 532, 34675}
_TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)  # description, make, model, software, date, artist, copyright


@dataclass
class ImageMetadata:
    """What an archive keeps besides the pixels, carried from the input onto its colorization."""

    exif: Image.Exif | None = field(default=None, repr=False)  # Orientation already reset to 1
    icc_profile: bytes | None = field(default=None, repr=False)  # RGB profiles only
    dpi: tuple[float, float] | None = None
    tiff_compression: str | None = None
    high_depth: bool = False  # 16 bits (or float) per sample: written as 16 bits where the format allows


def image_metadata(image: Image.Image) -> ImageMetadata:
    """EXIF, RGB ICC profile, DPI, TIFF compression and bit depth of an opened (oriented) image."""
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - a damaged EXIF block loses the EXIF, not the photo
        exif = Image.Exif()
    for tag in _LAYOUT_TAGS & set(exif):
        del exif[tag]
    if _ORIENTATION_TAG in exif:
        exif[_ORIENTATION_TAG] = 1  # the pixels are upright already
    dpi = image.info.get("dpi")
    return ImageMetadata(
        exif=exif if len(exif) else None,
        icc_profile=rgb_icc_profile(image.info.get("icc_profile")),
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and all(dpi) else None,
        tiff_compression=image.info.get("compression") if image.format == "TIFF" else None,
        high_depth=image.mode in _HIGH_DEPTH_MODES,
    )


def _describe(path: Path | str | None) -> str:
    return str(path) if path is not None else "<image>"


_STAT_ERRORS = {errno.ENOENT: "no such file", errno.ELOOP: "symlink loop", errno.EACCES: "permission denied",
                errno.ENOTDIR: "no such file", errno.ENAMETOOLONG: "file name too long"}


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image file, or None; never opens it (a named pipe would block)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return _STAT_ERRORS.get(exc.errno, exc.strerror or type(exc).__name__)
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size == 0:
        return "empty file"
    if not os.access(path, os.R_OK):
        return "permission denied"
    return None


def _check_regular_file(path: Path) -> None:
    problem = file_problem(path)
    if problem:
        raise ImageReadError(f"{_describe(path)}: {problem}")


@contextlib.contextmanager
def _pillow_read_errors(name: str) -> Iterator[None]:
    """Pillow's exceptions while opening or decoding, as one-line ImageReadErrors naming the file."""
    try:
        yield
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image file Pillow can read") from None
    except PermissionError:
        raise ImageReadError(f"{name}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "ghostscript" in str(exc).lower():
            raise ImageReadError(f"{name}: reading EPS needs Ghostscript, which is not installed") from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(f"{name}: corrupt or truncated image ({reason})") from None


def probe_image(path: str | Path) -> None:
    """Raise ImageReadError unless Pillow recognises the file as an image (header only, nothing decoded).

    A file that passes can still turn out corrupt when decoded, which ``open_image`` reports.
    """
    path = Path(path)
    _check_regular_file(path)
    try:
        with _pillow_read_errors(_describe(path)), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings span lines; a real problem raises
            with Image.open(path):
                pass
    except Image.DecompressionBombError:
        return  # an image after all; open_image gives the size error when it is decoded


def open_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image with EXIF orientation applied, or raise ImageReadError.

    An image of more than ``max_pixels`` pixels is refused from its header, before anything is
    decoded. The limit is this call's own: Pillow's process-wide ``PIL.Image.MAX_IMAGE_PIXELS`` is
    never changed here (decoding threads with different limits would race on it). Pillow's guard
    still refuses images over twice that value; a program that allows more calls
    :func:`allow_pixels` once at its start, as the command line does.
    """
    path = Path(path)
    name = _describe(path)
    _check_regular_file(path)
    try:
        with _pillow_read_errors(name), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings span lines (corrupt EXIF...); a real problem raises
            # our own handle: Pillow then leaves the decoded pixels alive when the file closes, so
            # the image is oriented in place instead of copied (72 MB saved on a 24 MP scan)
            with open(path, "rb") as handle:
                image = Image.open(handle)
                if image.width * image.height > max_pixels:
                    raise ImageReadError(f"{name}: image too large (over {max_pixels:,} pixels; possible decompression bomb; --max-pixels raises the limit)")
                frames = getattr(image, "n_frames", 1)  # counting seeks through the file: before the first frame is loaded
                image.load()
            icc_profile = image.info.get("icc_profile")
            ImageOps.exif_transpose(image, in_place=True)
            image.info.setdefault("icc_profile", icc_profile)
            image.info[FRAMES_INFO] = frames
            return image
    except Image.DecompressionBombError:  # Pillow's own guard, at twice its process-wide limit
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageReadError(f"{name}: image too large (over Pillow's limit of {limit:,} pixels; possible decompression bomb)") from None


def allow_pixels(max_pixels: int) -> None:
    """Let Pillow's process-wide guard pass images of up to ``max_pixels`` pixels (it refuses those
    over twice ``PIL.Image.MAX_IMAGE_PIXELS`` before :func:`open_image`'s own check could allow them).

    It only ever raises Pillow's limit, and it is a setting for the whole process: call it once at
    a program's start, before any thread decodes (the command line does, for ``--max-pixels``).
    """
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def split_alpha(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """Normalise any Pillow mode to 'RGB' or 'L' (or 16-bit/float 'I'/'F') plus an optional alpha plane."""
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    elif mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa", "LA", "La"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint8)
        return image.convert("RGB" if mode.startswith("RGB") else "L"), alpha
    if mode in ("RGB", "L") or mode.startswith("I") or mode == "F":
        return image, None
    # CMYK, YCbCr, LAB, HSV, 1: let Pillow convert to RGB (or L for bilevel)
    return image.convert("L" if mode == "1" else "RGB"), None


def image_to_array(image: Image.Image) -> np.ndarray:
    """Return (H, W) or (H, W, 3) float32 in [0, 1], handling 8-bit, 16-bit and float modes."""
    mode = image.mode
    array = np.asarray(image)
    if mode in ("RGB", "L"):
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if mode == "F":
        array = finite_pixels(array)
        peak = float(array.max()) if array.size else 1.0
        return np.clip(array / (255.0 if peak > 1.0 else 1.0), 0, 1)
    # 'I', 'I;16', 'I;16B', ...: 16-bit unless the values say 8-bit
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


def rgb_icc_profile(icc_profile: bytes | None) -> bytes | None:
    """The profile if it describes RGB data, else None: outputs are RGB, and a grey, Lab or CMYK
    profile on them makes colour-managed viewers fail."""
    if not icc_profile:
        return None
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)).profile.xcolor_space
    except (OSError, TypeError, ValueError):
        return None  # unparsable: not worth passing on
    return icc_profile if space.strip() == "RGB" else None


def lightness_of(array: np.ndarray) -> torch.Tensor:
    """Full-resolution CIE L (1, H, W) from an (H, W[, 3]) float array, in row strips."""
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
    small = image.convert("RGB")
    small.thumbnail((thumbnail, thumbnail))
    rgb = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)
    lab = rgb_to_lab(rgb)
    return float(lab[1:].pow(2).sum(0).sqrt().mean())


PhotoLike = Union[str, Path, Image.Image, np.ndarray]


def as_pil_image(photo: PhotoLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """A photo as the Python API takes it, as an upright Pillow image: a path (decoded, EXIF
    orientation applied), a Pillow image (its EXIF orientation applied, as for a path), or a
    numpy array: (H, W) grey uint8 or uint16 (16-bit), (H, W, 3) RGB or (H, W, 4) RGBA uint8, or
    floats in 0..1 of either shape."""
    if isinstance(photo, np.ndarray):
        return _image_from_array(photo)
    if isinstance(photo, Image.Image):
        return ImageOps.exif_transpose(photo)
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


@dataclass
class DecodedPhoto:
    """A photo ready for colorization, as decoded: what the batch pipeline, ``sample-diverse`` and
    the Python API hand around.

    ``pixels`` is uint8 (H, W, C), C = 1 (grey) or 3 (sRGB), rows as Pillow decoded them (in
    pinned memory when bound for a GPU); for 16-bit and float sources it is instead the float32
    CIE L plane (H, W, 1), computed on the CPU by :func:`lightness_of`, and the colorization
    comes out 16 bits per channel. The pipeline computes the lightness on the model's device;
    :attr:`lightness` is the same plane on the pixels' device.
    """

    path: Path | None
    pixels: torch.Tensor
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
        """The full-size CIE L (1, H, W) float32 in 0..100 (computed once, on first use)."""
        if self.pixels.dtype == torch.uint8:
            return lightness_from_pixels(self.pixels)
        return self.pixels.permute(2, 0, 1).float()


def decode_photo(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, pin_memory: bool = False) -> DecodedPhoto:
    """Decode one file (EXIF orientation applied) or raise :class:`~recolor.imageio.ImageReadError`."""
    return photo_from_pil(open_image(path, max_pixels=max_pixels), Path(path), pin_memory=pin_memory)


def photo_from_pil(image: Image.Image, path: Path | None = None, pin_memory: bool = False) -> DecodedPhoto:
    metadata = image_metadata(image)
    frames = int(image.info.get(FRAMES_INFO, getattr(image, "n_frames", 1)))
    base, alpha = split_alpha(image)
    if base.width == 0 or base.height == 0:
        raise ImageReadError(f"{_describe(path)}: image has no pixels")
    colour = looks_colour(base)
    if base.mode in ("L", "RGB"):
        pixels = _pixels_of(base, pin_memory)
    else:  # 16-bit or float: keep the precision, the plane is computed here once
        pixels = lightness_of(image_to_array(base)).permute(1, 2, 0).contiguous()
        if pin_memory:
            pixels = pixels.pin_memory()
    return DecodedPhoto(path=path, pixels=pixels, alpha=alpha, was_colour=colour, metadata=metadata, frames=frames)


def _pixels_of(image: Image.Image, pin_memory: bool) -> torch.Tensor:
    """Pillow's 8-bit rows copied into one (H, W, C) tensor a strip at a time.

    ``np.asarray(image)`` would first build a full ``bytes`` copy (twice the image, transiently,
    for a 24-megapixel scan) and then a read-only array that torch cannot wrap without warning.
    """
    channels = 3 if image.mode == "RGB" else 1
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


def save_image(
    path: str | Path,
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    metadata: ImageMetadata | None = None,
    quality: int = 95,
) -> Path:
    """Write (H, W, 3) uint8 or uint16 RGB atomically; the format follows the extension.

    ``metadata`` (EXIF, RGB ICC profile, DPI, TIFF compression) is written where the format
    holds it. uint16 pixels stay 16-bit in PNG and TIFF (opaque ones: Pillow holds no 16-bit
    RGB, so pypng and tifffile write them) and are reduced to 8 bits elsewhere. Where the
    format has no alpha channel, a transparent image is flattened onto white (the pixels hidden
    under transparency are never shown). The image is written to a temporary file in the
    destination folder and renamed over the target, so a crash never leaves a half-written file.
    """
    path = Path(path)
    fmt = output_format(path)
    metadata = metadata or ImageMetadata()
    if alpha is not None and fmt not in _FORMATS_WITH_ALPHA:
        rgb, alpha = flatten_onto_white(rgb, alpha), None
    if rgb.dtype == np.uint16 and (fmt not in ("PNG", "TIFF") or alpha is not None):
        rgb = to_8_bits(rgb)
    with _atomic_file(path) as handle:
        if rgb.dtype == np.uint16:
            (_save_png_16 if fmt == "PNG" else _save_tiff_16)(handle, rgb, metadata)
        else:
            _save_with_pillow(handle, fmt, rgb, alpha, metadata, quality)
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
    if fmt == "TIFF" and metadata.tiff_compression not in (None, "raw", "jpeg"):
        options["compression"] = metadata.tiff_compression  # Pillow writes what it read
    return options


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
    tags = [(tag, "s", 0, str(exif[tag]), True) for tag in _TIFF_TEXT_TAGS if isinstance(exif.get(tag), str)]
    encoded = io.BytesIO()  # tifffile wants a named file or a buffer, not our descriptor
    tifffile.imwrite(
        encoded, rgb, photometric="rgb",
        compression=_TIFFFILE_COMPRESSION.get(metadata.tiff_compression or ""),
        resolution=metadata.dpi, resolutionunit="INCH" if metadata.dpi else None,
        iccprofile=metadata.icc_profile, extratags=tags, metadata=None, software=None,
    )
    handle.write(encoded.getbuffer())


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Temporary files are named ".NAME.recolor-PID-RANDOM.tmp": a later run removes those whose
# process is gone (killed with SIGKILL, power cut), and nothing else. Versions before had no PID
# (".NAME.RANDOM.tmp", mkstemp's 8 characters): those are removed once an hour old.
_TEMP_MARK = "recolor-"
_STALE_TEMP = re.compile(r"^\..+\.recolor-(\d+)-[^.]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_LEGACY_TEMP_AGE_S = 3600


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside ``path``, flushed to disk and renamed over it on success.

    mkstemp creates files as 0600; the file gets the usual 0666-minus-umask mode instead, like
    any file a program writes. The fsync comes before the rename so that a crash right after
    it leaves the old file or the whole new one, never an empty one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{_TEMP_MARK}{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete this tool's temporary files in ``folder`` left by processes that no longer run; how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False) and _is_stale_temp(entry):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _is_stale_temp(entry: os.DirEntry) -> bool:
    match = _STALE_TEMP.match(entry.name)
    if match:
        return not _process_alive(int(match.group(1)))
    return bool(_LEGACY_TEMP.match(entry.name)) and time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TEMP_AGE_S


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to path through a temporary file and a rename (same folder, same filesystem)."""
    with _atomic_file(Path(path)) as handle:
        handle.write(data)


def list_image_files(root: str | Path, all_files: bool = False, unreadable: list[str] | None = None) -> list[Path]:
    """Files below a folder, recursively and sorted; hidden files and folders are skipped.

    With ``all_files`` every file is returned (so that a batch job can name the ones that are not
    images); otherwise only known image extensions. Folder links are followed, each real folder
    once (a link to a parent would otherwise recurse without end). Folders that cannot be listed
    are named in ``unreadable`` when a list is given.
    """
    root = Path(root)
    found = []
    visited: set[tuple[int, int]] = set()

    def report(error: OSError) -> None:
        if unreadable is not None:
            unreadable.append(f"{error.filename}: cannot read folder ({error.strerror or type(error).__name__})")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=report):
        with contextlib.suppress(OSError):
            here = os.stat(dirpath)
            if (here.st_dev, here.st_ino) in visited:
                dirnames[:] = []
                continue
            visited.add((here.st_dev, here.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            if all_files or Path(filename).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / filename)
    return found
