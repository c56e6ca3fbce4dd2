"""The hints file (``NAME.hints.json``, ``--hints FILE``) and the ``--hint x,y,#rrggbb`` option.

The format, exactly (the web page writes it, other tools may)::

    {"points": [{"x": 120, "y": 80, "color": "#c0392b"}], "reference": "ref.jpg"}

``x``, ``y``: pixels of the upright photo, origin top-left; ``color``: ``#rrggbb``; ``reference``
(optional): a colour photo, its path relative to the JSON file; ``frames`` (optional, videos):
``[first, last]`` frame numbers the hints apply to. Any other key is refused, so a typo never
passes silently. A photo's sidecar is ``NAME.hints.json`` beside ``NAME.jpg``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .hintpoints import MAX_POINTS, HintPoint, Hints, colour_hex, parse_colour

SIDECAR_SUFFIX = ".hints.json"
MAX_HINTS_FILE_BYTES = 1 << 20
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
    """Parse and check a hints file; :class:`HintsFileError` naming the file and the problem."""
    path = Path(path)
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
    try:
        return parse_hints_document(document, path.parent)
    except ValueError as exc:
        raise HintsFileError(f"{path}: {exc}") from None


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
