"""Image I/O: read anything Pillow reads into a full-resolution lightness plane, write atomically.

One module per job:

* :mod:`.decoding` -- opening files (checks first, one-line errors, the pixel limit);
* :mod:`.photo` -- decoded photos: 8-bit pixels, or the lightness plane of 16-bit and float sources;
* :mod:`.metadata` -- EXIF, ICC profile, DPI, TIFF compression, carried onto the output;
* :mod:`.encoders` -- writing each output format (16-bit PNG and TIFF included);
* :mod:`.atomic` -- atomic files and the cleaner of a killed run's temporary files;
* :mod:`.listing` -- the image files below a folder;
* :mod:`.api_input` -- what the Python API takes as a photo (path, Pillow image, numpy array).

The names below are re-exported so that ``from recolor.imageio import X`` keeps working.
"""
from .api_input import PhotoLike, as_pil_image
from .atomic import atomic_write_bytes, remove_stale_temp_files
from .decoding import DEFAULT_MAX_PIXELS, FRAMES_INFO, ImageReadError, allow_pixels, file_problem, open_image, probe_image
from .encoders import extension_format, flatten_onto_white, output_format, save_image, to_8_bits
from .listing import IMAGE_EXTENSIONS, list_image_files
from .metadata import ImageMetadata, image_metadata, rgb_icc_profile
from .photo import (
    COLOUR_CHROMA_THRESHOLD, DecodedPhoto, decode_photo, finite_pixels, image_to_array, lightness_of, looks_colour,
    mean_chroma, photo_from_pil, split_alpha,
)

__all__ = [
    "COLOUR_CHROMA_THRESHOLD", "DEFAULT_MAX_PIXELS", "FRAMES_INFO", "IMAGE_EXTENSIONS", "DecodedPhoto", "ImageMetadata",
    "ImageReadError", "PhotoLike", "allow_pixels", "as_pil_image", "atomic_write_bytes", "decode_photo", "extension_format",
    "file_problem", "finite_pixels", "flatten_onto_white", "image_metadata", "image_to_array", "lightness_of",
    "list_image_files", "looks_colour", "mean_chroma", "open_image", "output_format", "photo_from_pil", "probe_image",
    "remove_stale_temp_files", "rgb_icc_profile", "save_image", "split_alpha", "to_8_bits",
]
