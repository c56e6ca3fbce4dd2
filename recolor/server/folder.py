"""FOLDER's photos, offered by id: a request never names a path on disk.

Each photo below the folder (``recolor colorize``'s listing: recursive, hidden files skipped) gets
an id, a hash of its path relative to the folder, so the ids survive a restart and a re-listing.
A photo whose real path lies outside the folder (a link leading out) is not offered: nothing
outside FOLDER is read. The only files ever written are hints sidecars (``NAME.hints.json``
beside ``NAME.jpg``), atomically, and a sidecar never replaces anything but a sidecar.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..hints import Hints
from ..hintsfile import MAX_HINTS_FILE_BYTES, HintsFileError, hints_document, read_hints_file, relative_reference, sidecar_path
from ..imageio.atomic import atomic_write_bytes
from ..imageio.listing import list_image_files


class UnknownPhoto(KeyError):
    """An id that names no photo of the folder (a 404)."""


@dataclass(frozen=True)
class FolderPhoto:
    id: str
    path: Path  # as listed below the folder: its sidecar goes beside it, where `recolor colorize FOLDER` looks
    real: Path  # what is read: the real file, checked to be inside the folder
    name: str  # relative to the folder, with forward slashes: what the page shows

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)


def photo_id(relative: str) -> str:
    return hashlib.sha256(relative.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class PhotoFolder:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve(strict=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{root}: not a folder")
        self._photos: dict[str, FolderPhoto] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[FolderPhoto]:
        """List the folder again (photos added or removed since); the photos in the listing's order."""
        photos: dict[str, FolderPhoto] = {}
        for path in list_image_files(self.root):
            real = path.resolve()
            if not real.is_relative_to(self.root) or not real.is_file():
                continue  # a link out of the folder, or gone meanwhile
            relative = path.relative_to(self.root).as_posix()
            photos[photo_id(relative)] = FolderPhoto(photo_id(relative), path, real, relative)
        with self._lock:
            self._photos = photos
        return list(photos.values())

    def photo(self, id: str) -> FolderPhoto:
        with self._lock:
            found = self._photos.get(id)
        if found is None:
            raise UnknownPhoto(f"no photo {id!r} in the folder")
        return found

    def by_path(self, path: Path) -> FolderPhoto | None:
        real = path.resolve()
        with self._lock:
            return next((photo for photo in self._photos.values() if photo.real == real), None)

    def read_hints(self, photo: FolderPhoto) -> dict | None:
        """The photo's sidecar as the page takes it: ``{"points": [...], "reference_id": id|None}``;
        None when there is none; HintsFileError for one that cannot be used (or names a reference
        outside the folder)."""
        if not photo.sidecar.is_file():
            return None
        hints = read_hints_file(photo.sidecar).hints
        reference_id = None
        if hints.reference is not None:
            reference = self.by_path(Path(hints.reference))
            if reference is None:
                raise HintsFileError(f"{photo.sidecar.name}: its reference is not a photo of the folder")
            reference_id = reference.id
        return {"points": hints_document(hints)["points"], "reference_id": reference_id}

    def write_hints(self, photo: FolderPhoto, hints: Hints | None, reference: FolderPhoto | None) -> Path:
        """Write the photo's sidecar atomically (the hints file format of :mod:`recolor.hintsfile`)."""
        target = photo.sidecar
        if target.exists() and not target.is_file() or not target.parent.resolve().is_relative_to(self.root):
            raise ValueError(f"{photo.name}: its sidecar's place is taken by something that is not a file")
        if holds_frame_ranges(target):  # an animated GIF's sections for `recolor colorize`: the page would lose them
            raise ValueError(f"{target.name} holds a video's hint sections (frame ranges): not overwritten (edit or remove it by hand)")
        document = hints_document(hints or Hints(), relative_reference(reference.path, target) if reference else None)
        atomic_write_bytes(target, (json.dumps(document, indent=1) + os.linesep).encode("utf-8"))
        return target


def holds_frame_ranges(sidecar: Path) -> bool:
    """Whether a hints file is a video's: a list of sections, or an object with ``frames``. An
    unreadable or invalid file is not (the page replaces a broken sidecar when asked to)."""
    try:
        if not sidecar.is_file() or sidecar.stat().st_size > MAX_HINTS_FILE_BYTES:
            return False
        document = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(document, list) or (isinstance(document, dict) and "frames" in document)
