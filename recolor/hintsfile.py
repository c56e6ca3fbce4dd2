"""The hints file (``NAME.hints.json``, ``--hints FILE``) and the ``--hint x,y,#rrggbb`` option.

The format, exactly (the web page writes it, other tools may)::

    {"points": [{"x": 120, "y": 80, "color": "#c0392b"}], "reference": "ref.jpg"}

``x``, ``y``: pixels of the upright photo, origin top-left; ``color``: ``#rrggbb``; ``reference``
(optional): a colour photo, its path relative to the JSON file; ``frames`` (optional, videos):
``[first, last]`` frame numbers (from 0, both included) the hints apply to. Any other key is
refused, so a typo never passes silently. A photo's sidecar is ``NAME.hints.json`` beside
``NAME.jpg``; a video's is ``NAME.hints.json`` beside ``NAME.mp4``, and for a video the file may
also be a list of such objects, one per stretch of the film (:class:`HintSchedule`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .hintpoints import MAX_POINTS, HintPoint, Hints, colour_hex, parse_colour

SIDECAR_SUFFIX = ".hints.json"
MAX_HINTS_FILE_BYTES = 1 << 20
MAX_SECTIONS = 10_000  # a hints section a second is under three hours of film
_TOP_KEYS = {"points", "reference", "frames"}
_POINT_KEYS = {"x", "y", "color"}


class HintsFileError(ValueError):
    """A hints file or option that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class HintsFile:
    hints: Hints
    frames: tuple[int, int] | None = None  # videos: the frame range the hints apply to (None: all)


def sidecar_path(photo: Path) -> Path:
    """``NAME.hints.json`` beside the photo ``NAME.ext``."""
    return photo.with_name(photo.stem + SIDECAR_SUFFIX)


def is_sidecar(path: Path) -> bool:
    return path.name.endswith(SIDECAR_SUFFIX)


def read_hints_file(path: Path) -> HintsFile:
    """Parse and check a photo's hints file; :class:`HintsFileError` naming the file and the problem."""
    path = Path(path)
    document = _read_document(path)
    if isinstance(document, list):
        raise HintsFileError(f"{path}: a list of hint sections is for a video; a photo's hints are one object {{\"points\": [...]}}")
    try:
        return parse_hints_document(document, path.parent)
    except ValueError as exc:
        raise HintsFileError(f"{path}: {exc}") from None


def read_hint_schedule(path: Path) -> "HintSchedule":
    """Parse and check a video's hints file: one object (the whole film, or its ``frames``) or a
    list of them; :class:`HintsFileError` naming the file, the section and the problem."""
    path = Path(path)
    document = _read_document(path)
    sections = document if isinstance(document, list) else [document]
    if not sections:
        raise HintsFileError(f"{path}: an empty list of hint sections")
    if len(sections) > MAX_SECTIONS:
        raise HintsFileError(f"{path}: {len(sections)} hint sections: at most {MAX_SECTIONS}")
    parsed = []
    for index, section in enumerate(sections):
        try:
            parsed.append(parse_hints_document(section, path.parent))
        except ValueError as exc:
            where = f"section {index + 1}: " if isinstance(document, list) else ""
            raise HintsFileError(f"{path}: {where}{exc}") from None
    try:
        return HintSchedule(tuple(parsed))
    except ValueError as exc:
        raise HintsFileError(f"{path}: {exc}") from None


def _read_document(path: Path) -> object:
    """The JSON of a hints file, bounded in size; :class:`HintsFileError` for an unreadable or invalid file."""
    try:
        if path.stat().st_size > MAX_HINTS_FILE_BYTES:
            raise HintsFileError(f"{path}: larger than {MAX_HINTS_FILE_BYTES // 1024} KiB, not a hints file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HintsFileError(f"{path}: cannot read hints ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HintsFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return document


def parse_hints_document(document: object, base: Path) -> HintsFile:
    """The checked content of a hints document; ``reference`` is resolved against ``base`` and must exist."""
    if not isinstance(document, dict):
        raise ValueError('expected a JSON object {"points": [...], "reference": "..."}')
    unknown = sorted(set(document) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})")
    points = document.get("points", [])
    if not isinstance(points, list):
        raise ValueError('"points" must be a list of {"x", "y", "color"}')
    if len(points) > MAX_POINTS:
        raise ValueError(f"{len(points)} points: at most {MAX_POINTS}")
    parsed = tuple(_parse_point(point, index) for index, point in enumerate(points))
    reference = document.get("reference")
    if reference is not None:
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError('"reference" must be a file name (relative to the hints file)')
        reference = base / reference
        if not reference.is_file():
            raise ValueError(f"reference {reference} does not exist")
    return HintsFile(Hints(parsed, reference), _parse_frames(document.get("frames")))


def _parse_point(point: object, index: int) -> HintPoint:
    if not isinstance(point, dict):
        raise ValueError(f'point {index + 1}: expected {{"x": .., "y": .., "color": "#rrggbb"}}')
    unknown = sorted(set(point) - _POINT_KEYS)
    missing = sorted(_POINT_KEYS - set(point))
    if unknown or missing:
        raise ValueError(f"point {index + 1}: " + (f"unknown key {unknown[0]!r}" if unknown else f"missing {missing[0]!r}"))
    try:
        return HintPoint.of((point["x"], point["y"], point["color"]))
    except ValueError as exc:
        raise ValueError(f"point {index + 1}: {exc}") from None


def _parse_frames(frames: object) -> tuple[int, int] | None:
    if frames is None:
        return None
    if (not isinstance(frames, list) or len(frames) != 2
            or not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in frames) or frames[0] > frames[1]):
        raise ValueError('"frames" must be [first, last], frame numbers from 0 with first <= last')
    return frames[0], frames[1]


def parse_hint_option(text: str) -> HintPoint:
    """``--hint x,y,#rrggbb`` -> a HintPoint; ValueError, one line, for anything else."""
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"--hint {text!r}: expected x,y,#rrggbb (e.g. 120,80,#c0392b)")
    try:
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"--hint {text!r}: x and y must be numbers (pixels of the photo)") from None
    try:
        return HintPoint.of((x, y, parse_colour(parts[2])))
    except ValueError as exc:
        raise ValueError(f"--hint {text!r}: {exc}") from None


def hints_document(hints: Hints, reference_name: str | None = None) -> dict:
    """The JSON document of ``hints`` (the format above); ``reference_name`` as the file should name it."""
    document: dict = {"points": [{"x": _number(p.x), "y": _number(p.y), "color": colour_hex(p.rgb)} for p in hints.points]}
    if reference_name is not None:
        document["reference"] = reference_name
    return document


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def relative_reference(reference: Path, hints_file: Path) -> str:
    """How a hints file beside ``hints_file`` names ``reference``: relative, with forward slashes."""
    return Path(os.path.relpath(reference, hints_file.parent)).as_posix()


@dataclass(frozen=True)
class HintSchedule:
    """A video's hints: sections, each for the whole film (``frames`` None) or a frame range. A
    frame takes the points of every section that covers it and the reference of the last such
    section that has one, so a stretch can add points to the whole film's or change its reference.
    Points stay where they are put within a frame: a moving object wants a section per stretch."""

    sections: tuple[HintsFile, ...]

    def __post_init__(self) -> None:
        # the frames where the set of sections in force changes: a frame's points are checked once, here
        starts = {0} | {section.frames[0] for section in self.sections if section.frames} \
            | {section.frames[1] + 1 for section in self.sections if section.frames}
        for frame in sorted(starts):
            count = sum(len(self.sections[index].hints.points) for index in self._covering(frame))
            if count > MAX_POINTS:
                raise ValueError(f"{count} hint points in force at frame {frame}: at most {MAX_POINTS}")
        object.__setattr__(self, "_merged", {})

    @classmethod
    def of(cls, hints: "HintSchedule | Hints | None") -> "HintSchedule | None":
        """The schedule of a video given ``hints``: a :class:`Hints` holds for every frame."""
        if hints is None or isinstance(hints, HintSchedule):
            return hints
        return cls((HintsFile(hints),))

    def _covering(self, frame: int) -> tuple[int, ...]:
        return tuple(index for index, section in enumerate(self.sections)
                     if section.frames is None or section.frames[0] <= frame <= section.frames[1])

    def at(self, frame: int) -> Hints | None:
        """The hints in force at ``frame`` (from 0); None where no section covers it. The same
        object for every frame under the same sections (the caller may cache on it)."""
        covering = self._covering(frame)
        if not covering:
            return None
        if covering not in self._merged:
            chosen = [self.sections[index].hints for index in covering]
            references = [hints.reference for hints in chosen if hints.reference is not None]
            merged = Hints(tuple(point for hints in chosen for point in hints.points), references[-1] if references else None)
            self._merged[covering] = merged if merged.points or merged.reference is not None else None
        return self._merged[covering]

    def for_photo(self) -> Hints | None:
        """What a photo takes from a schedule given for a whole folder: the sections without frames."""
        return HintSchedule(tuple(section for section in self.sections if section.frames is None)).at(0)

    @property
    def points(self) -> tuple[HintPoint, ...]:
        return tuple(point for section in self.sections for point in section.hints.points)

    @property
    def reference(self) -> object:
        return next((section.hints.reference for section in self.sections if section.hints.reference is not None), None)

    def check_inside(self, width: int, height: int) -> None:
        for point in self.points:
            point.check_inside(width, height)

    def __bool__(self) -> bool:
        return any(section.hints.points or section.hints.reference is not None for section in self.sections)
