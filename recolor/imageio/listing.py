"""Finding the image files below a folder."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm",
    ".tga", ".jp2", ".j2k", ".jpx", ".pcx", ".sgi", ".ico", ".dib", ".jfif", ".eps", ".psd",
}


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
