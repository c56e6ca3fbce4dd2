"""What a person tells the model, as plain data: colours, points and a reference (read by
:mod:`recolor.hintsfile`, turned into the network's tensors by :mod:`recolor.hints`). Imports no
torch, so that reading a photo's hints sidecar costs the ONNX engine's path no torch import."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence, Union

MAX_POINTS = 256  # more points than anyone clicks; bounds the work a hints file can ask for

Colour = Union[str, Sequence[int]]
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


def parse_colour(colour: Colour) -> tuple[int, int, int]:
    """``"#rrggbb"`` (the ``#`` optional) or an ``(r, g, b)`` of 0-255 integers -> ``(r, g, b)``;
    ValueError, one line, for anything else."""
    if isinstance(colour, str):
        match = _HEX.match(colour.strip())
        if not match:
            raise ValueError(f"colour {colour!r}: expected #rrggbb, e.g. #c0392b")
        value = int(match.group(1), 16)
        return (value >> 16) & 255, (value >> 8) & 255, value & 255
    if (isinstance(colour, (tuple, list)) and len(colour) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)):
        return tuple(colour)  # type: ignore[return-value]
    raise ValueError(f"colour {colour!r}: expected '#rrggbb' or an (r, g, b) of integers 0-255")


def colour_hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


@dataclass(frozen=True)
class HintPoint:
    """A person's point: ``x``, ``y`` in pixels of the upright photo (origin top-left) and its colour."""

    x: float
    y: float
    rgb: tuple[int, int, int]
    # simulated points (``recolor evaluate --hints N``) carry the truth's exact mean ab and their
    # patch side at the network's input; a person's point leaves both None
    ab: tuple[float, float] | None = None
    patch: int | None = None

    @classmethod
    def of(cls, point: "HintPoint | Sequence") -> "HintPoint":
        """A HintPoint from itself or an ``(x, y, colour)`` tuple (colour: ``"#rrggbb"`` or ``(r, g, b)``)."""
        if isinstance(point, HintPoint):
            return point
        if not isinstance(point, (tuple, list)) or len(point) != 3:
            raise ValueError(f"hint {point!r}: expected (x, y, colour)")
        x, y, colour = point
        for value in (x, y):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"hint {point!r}: x and y must be finite numbers (pixels)")
        return cls(float(x), float(y), parse_colour(colour))

    def check_inside(self, width: int, height: int) -> None:
        if not (0 <= self.x < width and 0 <= self.y < height):
            raise ValueError(f"hint at ({self.x:g}, {self.y:g}) is outside the {width}x{height} photo")


@dataclass(frozen=True)
class Hints:
    """What a person tells the model about one photo: points and/or a reference photo (any
    :data:`recolor.imageio.PhotoLike`: a path, a PIL image, an array; read by the inference layer)."""

    points: tuple[HintPoint, ...] = ()
    reference: object = None

    @classmethod
    def of(cls, points: Sequence | None = None, reference: object = None) -> "Hints | None":
        """Hints from the API's arguments (points as :class:`HintPoint` or ``(x, y, colour)``); None when empty."""
        if points is not None and not isinstance(points, (list, tuple)):
            raise ValueError(f"hints {points!r}: expected a list of (x, y, colour)")
        checked = tuple(HintPoint.of(point) for point in points or ())
        if len(checked) > MAX_POINTS:
            raise ValueError(f"{len(checked)} hint points: at most {MAX_POINTS}")
        if not checked and reference is None:
            return None
        return cls(checked, reference)

    def check_inside(self, width: int, height: int) -> None:
        for point in self.points:
            point.check_inside(width, height)
