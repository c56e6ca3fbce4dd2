"""What an archive keeps besides the pixels (EXIF, ICC profile, DPI, TIFF compression, bit
depth), read from an opened image and carried onto its colorization."""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from PIL import Image, ImageCms

_ORIENTATION_TAG = 0x0112
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Tags that describe one file's pixel layout, not the photo: a TIFF's own EXIF (its first IFD)
# holds them, and copied onto another file they would describe the wrong strips
_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 282, 283, 284, 296, 317, 320,
                322, 323, 324, 325, 338, 339, 340, 341, 513, 514, 530, 531, 532, 34675}
# TIFF tags of EXIF's first IFD that tifffile can carry into a 16-bit TIFF (text ones only):
# description, make, model, software, date, artist, copyright
TIFF_TEXT_TAGS = (270, 271, 272, 305, 306, 315, 33432)


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
