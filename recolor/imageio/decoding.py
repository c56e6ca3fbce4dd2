"""Opening image files: anything Pillow reads, checked first (a named pipe is never opened, an
image too large is refused from its header), every failure one line naming the file."""
from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

# Images with more pixels are refused before decoding (decompression bombs): checked per call by
# open_image from the header, so threads may decode with different limits at once.
DEFAULT_MAX_PIXELS = 150_000_000

FRAMES_INFO = "recolor.frames"  # open_image notes the frame count of animated GIF/TIFF/WebP here
SAMPLES_INFO = "recolor.samples"  # "uint32" or "int32": a 32-bit integer TIFF's samples (see note_integer_samples)

_PILLOW_MODULES = r"PIL(\.|$)"


def silence_pillow_warnings() -> None:
    """Ignore the warnings raised inside Pillow's own modules (a corrupt EXIF block, odd TIFF tags,
    an image near Pillow's size guard): they span lines and repeat what a real problem raises.

    A filter added to the process's list when it is missing, not ``warnings.catch_warnings``
    around each decode: that swaps the whole list, and files are decoded in several threads at
    once, so one thread could restore another's list (or leave the process ignoring everything).
    Checked on every open, since a caller may have reset the filters since (pytest does, after
    collecting tests).
    """
    for action, _message, _category, module, _line in warnings.filters:
        if action == "ignore" and module is not None and module.pattern == _PILLOW_MODULES:
            return
    warnings.filterwarnings("ignore", module=_PILLOW_MODULES)


silence_pillow_warnings()


class ImageReadError(Exception):
    """A file could not be read as an image; the message is one line and names the file."""


def describe_source(path: Path | str | None) -> str:
    """The name a message gives a file (an image handed over without one: "<image>")."""
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
        raise ImageReadError(f"{describe_source(path)}: {problem}")


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
    silence_pillow_warnings()
    try:
        with _pillow_read_errors(describe_source(path)):
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
    name = describe_source(path)
    _check_regular_file(path)
    # our own handle: Pillow then leaves the decoded pixels alive when the file closes, so the
    # image is oriented in place instead of copied (72 MB saved on a 24 MP scan)
    with _pillow_read_errors(name), open(path, "rb") as handle:
        return _decode(handle, name, max_pixels)


def open_image_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An image handed over as bytes (an upload to ``recolor serve``), decoded with :func:`open_image`'s
    checks and one-line errors; ``name`` is what the errors call it."""
    if not data:
        raise ImageReadError(f"{name}: empty file")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(handle: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    silence_pillow_warnings()
    try:
        with _pillow_read_errors(name):
            image = Image.open(handle)
            if image.width * image.height > max_pixels:
                raise ImageReadError(f"{name}: image too large (over {max_pixels:,} pixels; possible decompression bomb; --max-pixels raises the limit)")
            frames = getattr(image, "n_frames", 1)  # counting seeks through the file: before the first frame is loaded
            image.load()
            icc_profile = image.info.get("icc_profile")
            note_integer_samples(image, image)
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


def note_integer_samples(source: Image.Image, target: Image.Image) -> None:
    """Note in ``target.info`` (under :data:`SAMPLES_INFO`) whether ``source``, a TIFF Pillow
    decoded to mode 'I', holds 32-bit unsigned or signed samples. Pillow reads both as int32, so
    an unsigned sample over 2^31 comes out negative; the TIFF's tags are gone once the image is
    copied (oriented), so they are read here."""
    tags = getattr(source, "tag_v2", None)
    if source.mode != "I" or tags is None or _first(tags.get(258)) != 32:  # BitsPerSample
        return
    target.info[SAMPLES_INFO] = "int32" if _first(tags.get(339)) == 2 else "uint32"  # SampleFormat 2: signed


def _first(value: object) -> object:
    """A TIFF tag's value: Pillow gives one per sample as a tuple, or a single value."""
    return value[0] if isinstance(value, tuple) and value else value
