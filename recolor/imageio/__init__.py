"""Image I/O: read anything Pillow reads into a full-resolution lightness plane, write atomically.

One module per job:

* :mod:`.decoding` -- opening files (checks first, one-line errors, the pixel limit);
* :mod:`.photo` -- decoded photos: 8-bit pixels, or the lightness plane of 16-bit and float sources;
* :mod:`.metadata` -- EXIF, ICC profile, DPI, TIFF compression, carried onto the output;
* :mod:`.encoders` -- writing each output format (16-bit PNG and TIFF included);
* :mod:`.atomic` -- atomic files and the cleaner of a killed run's temporary files;
* :mod:`.listing` -- the image files below a folder;
* :mod:`.api_input` -- what the Python API takes as a photo (path, Pillow image, numpy array).

The names below are re-exported, each loaded with its module on first use, so that
``from recolor.imageio import X`` keeps working.
"""
from __future__ import annotations

import importlib

# Each name's module, imported on first use: writing a file (checkpoint.py, training) needs
# neither torch nor the decoders.
_HOMES = {
    "PhotoLike": "api_input", "as_pil_image": "api_input",
    "atomic_write_bytes": "atomic", "remove_stale_temp_files": "atomic",
    "DEFAULT_MAX_PIXELS": "decoding", "FRAMES_INFO": "decoding", "ImageReadError": "decoding", "allow_pixels": "decoding",
    "file_problem": "decoding", "open_image": "decoding", "open_image_bytes": "decoding", "probe_image": "decoding",
    "encode_image": "encoders", "extension_format": "encoders", "flatten_onto_white": "encoders", "image_format": "encoders",
    "output_format": "encoders", "save_image": "encoders", "to_8_bits": "encoders", "write_image": "encoders",
    "IMAGE_EXTENSIONS": "listing", "list_image_files": "listing",
    "ImageMetadata": "metadata", "image_metadata": "metadata", "rgb_icc_profile": "metadata",
    "COLOUR_CHROMA_THRESHOLD": "photo", "DecodedPhoto": "photo", "decode_photo": "photo", "finite_pixels": "photo",
    "image_to_array": "photo", "lightness_of": "photo", "looks_colour": "photo", "mean_chroma": "photo",
    "photo_from_pil": "photo", "split_alpha": "photo",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
