"""User hints: the colour a person knows (Zhang, Zhu et al. 2017, "Real-Time User-Guided Image
Colorization with Learned Deep Priors"), as the tensors a hint-taking network reads.

Two kinds, as in the paper:

* **local hints** (points): an sRGB colour at a spot of the photo. Only its a*b* (hue and chroma)
  is used; the lightness stays the photo's own. Each point is written over a small square patch of
  a hint image at the network's input size: ``(3, s, s)`` = normalised a*, b* and a mask (1 where a
  hint is, 0 elsewhere).
* **a global hint**: a colour distribution to aim at (a reference photo's), as a vector of
  ``global_hint_length()`` = the ab-bin histogram over the gamut bins of :mod:`recolor.ab_bins`, a
  present flag, the mean chroma and a present flag (all zeros: no global hint).

The same functions make the hints that training simulates from the truth and the ones a person
gives, so the network sees one format. Pure torch, batched where it matters; no I/O (the hints
file and the command line live above, in :mod:`recolor.hintsfile`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .ab_bins import gamut_bin_centres, nearest_bin
from .cie import AB_SCALE, ab_within_gamut
from .color import rgb_to_lab_normalized
# what a person gives, torch-free (the ONNX engine's path reads hints files without torch); re-exported
from .hintpoints import MAX_POINTS, Colour, HintPoint, Hints, colour_hex, parse_colour  # noqa: F401

LOCAL_HINT_CHANNELS = 3  # normalised a*, b*, mask
DEFAULT_PATCH = 5  # side, in pixels of the network's input, of the square a person's point colours


def colour_ab(rgb: Sequence[int]) -> tuple[float, float]:
    """Normalised a*, b* (ab / 110) of an sRGB colour: its hue and chroma, its lightness dropped."""
    pixel = torch.tensor(rgb, dtype=torch.float64).view(3, 1, 1) / 255.0
    _, ab = rgb_to_lab_normalized(pixel)
    return float(ab[0, 0, 0]), float(ab[1, 0, 0])


# A person's colour keeps its hue but at most this share of the chroma sRGB can show at the
# photo's lightness under the point. The network learned hints from real photos, whose colours
# rarely reach the gamut's edge: a picker's pure blue on a light grey (far outside sRGB there)
# came out yellow. On 34 random saturated picks on scikit-image's photos (recolor's shipped
# default): hue off by over 30 degrees for 38 % of picks as given, 12 % cut to the gamut
# (share 1.0), none at 0.8 (median hue error 1.4 degrees).
HINT_CHROMA_SHARE = 0.8
_LIGHTNESS_WINDOW = 1  # half-side, in pixels of the network's input, of the square whose mean lightness a point takes


def points_at_lightness(points: Sequence[HintPoint], photo_size: tuple[float, float], lightness) -> tuple[HintPoint, ...]:
    """A person's points with the ab the network is given (:data:`HINT_CHROMA_SHARE`): each
    point's colour taken at the photo's mean lightness around it. ``lightness``: the photo's L
    (..., h, w) in 0..100 at the network's input size (torch or numpy: the network's own input,
    so that every path that feeds the network, colorize and the diverse sampler alike, gives a
    colour the same ab); points in pixels of a photo of ``photo_size`` (width, height). Points
    that carry an ab already (simulated from the truth) are kept as they are."""
    chosen = [point for point in points if point.ab is None]
    if not chosen:
        return tuple(points)
    height, width = lightness.shape[-2:]
    levels = []
    for point in chosen:
        row = min(height - 1, int(point.y / photo_size[1] * height))  # the cell local_hint_image writes
        column = min(width - 1, int(point.x / photo_size[0] * width))
        window = lightness[..., max(0, row - _LIGHTNESS_WINDOW):row + _LIGHTNESS_WINDOW + 1,
                           max(0, column - _LIGHTNESS_WINDOW):column + _LIGHTNESS_WINDOW + 1]
        levels.append(float(window.mean()))
    given = np.array([colour_ab(point.rgb) for point in chosen]).T * AB_SCALE
    fitted = ab_within_gamut(np.array(levels), given, HINT_CHROMA_SHARE) / AB_SCALE
    replaced = {id(point): dataclasses.replace(point, ab=(float(a), float(b))) for point, a, b in zip(chosen, *fitted)}
    return tuple(replaced.get(id(point), point) for point in points)


def local_hint_image(points: Sequence[HintPoint], photo_size: tuple[int, int], size: tuple[int, int],
                     patch: int = DEFAULT_PATCH) -> torch.Tensor:
    """The local hint image ``(3, h, w)`` at the network's input ``size`` (h, w) for points given in
    pixels of a photo of ``photo_size`` (width, height): each point's ab over a ``patch`` square
    centred on it; a later point wins where patches overlap."""
    height, width = size
    image = torch.zeros(LOCAL_HINT_CHANNELS, height, width)
    for point in points:
        a, b = point.ab if point.ab is not None else colour_ab(point.rgb)
        patch_side = point.patch or patch
        column = min(width - 1, int(point.x / photo_size[0] * width))
        row = min(height - 1, int(point.y / photo_size[1] * height))
        top, left = row - patch_side // 2, column - patch_side // 2
        window = (slice(max(0, top), top + patch_side), slice(max(0, left), left + patch_side))
        image[0][window], image[1][window], image[2][window] = a, b, 1.0
    return image


def global_hint_length() -> int:
    return len(gamut_bin_centres()) + 3


def global_hint(ab: torch.Tensor | None = None, use_histogram: bool = True, use_chroma: bool = True) -> torch.Tensor:
    """The global hint ``(G,)`` of one colour photo's normalised ab ``(2, H, W)``: its ab-bin
    histogram (sums to 1) and mean chroma, each with its present flag; all zeros for ``ab=None``."""
    centres = gamut_bin_centres()
    vector = torch.zeros(len(centres) + 3)
    if ab is None:
        return vector
    ab = ab.float().cpu()
    if use_histogram:
        bins = nearest_bin(ab[None], centres)
        vector[: len(centres)] = torch.bincount(bins.flatten(), minlength=len(centres)).float() / bins.numel()
        vector[len(centres)] = 1.0
    if use_chroma:
        vector[len(centres) + 1] = ab.norm(dim=0).mean()
        vector[len(centres) + 2] = 1.0
    return vector


# --- simulated hints, for training and for `recolor evaluate --hints N` -------------------------

def simulate_local_hints(ab: torch.Tensor, points: torch.Tensor | Sequence[int], patch_sides: Sequence[int] | None = None,
                         max_patch: int = 9, generator: torch.Generator | None = None) -> torch.Tensor:
    """Local hints ``(B, 3, H, W)`` drawn from the true normalised ab ``(B, 2, H, W)``: ``points[i]``
    points for photo i at uniform random positions, each a square patch (side uniform in 1..
    ``max_patch``, or ``patch_sides`` fixed) coloured with the truth's mean over that patch
    (Zhang 2017 sec. 3.3's simulation)."""
    batch, _, height, width = ab.shape
    hints = torch.zeros(batch, LOCAL_HINT_CHANNELS, height, width, dtype=torch.float32, device=ab.device)
    counts = [int(n) for n in points]
    for index, count in enumerate(counts):
        for _ in range(min(count, MAX_POINTS)):
            side = int(torch.randint(1, max_patch + 1, (1,), generator=generator)) if patch_sides is None else int(patch_sides[0])
            side = min(side, height, width)
            top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
            window = (slice(top, top + side), slice(left, left + side))
            hints[index, :2, window[0], window[1]] = ab[index, :, window[0], window[1]].float().mean(dim=(1, 2), keepdim=True)
            hints[index, 2, window[0], window[1]] = 1.0
    return hints


def revealed_points(ab: torch.Tensor, count: int, patch: int, network_size: int, generator: torch.Generator) -> tuple[HintPoint, ...]:
    """``count`` points of one photo's true normalised ab ``(2, H, W)`` as ``recolor evaluate --hints N``
    reveals them (Zhang 2017's evaluation): uniform random ``patch`` x ``patch`` squares, each given
    as its centre and the truth's mean ab there, drawn at the network's input as a square of the
    same share of the photo."""
    _, height, width = ab.shape
    side = min(patch, height, width)
    drawn = max(1, round(side * network_size / max(height, width)))
    points = []
    for _ in range(count):
        top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
        mean = ab[:, top:top + side, left:left + side].float().mean(dim=(1, 2))
        points.append(HintPoint(left + side / 2, top + side / 2, (0, 0, 0), ab=(float(mean[0]), float(mean[1])), patch=drawn))
    return tuple(points)


def training_point_counts(batch: int, none_share: float = 0.125, generator: torch.Generator | None = None) -> list[int]:
    """Zhang 2017's number of points per photo: geometric on 0, 1, 2, ... with P(0) = ``none_share``
    (1/8: a mean of 7 points, and one photo in eight with none)."""
    uniform = torch.rand(batch, generator=generator, dtype=torch.float64).clamp_min(1e-12)
    counts = torch.floor(torch.log(uniform) / math.log(1.0 - none_share))
    return [int(c) for c in counts.clamp_max(MAX_POINTS)]


def simulate_global_hints(ab: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Global hints ``(B, G)`` from each photo's own colours: the histogram present for a ``share``
    of the photos, the chroma for another (independent) ``share``; zeros elsewhere."""
    draws = torch.rand(ab.shape[0], 2, generator=generator)
    small = F.interpolate(ab.float(), size=(64, 64), mode="area") if ab.shape[-1] > 64 else ab.float()
    rows = [global_hint(small[i], bool(draws[i, 0] < share), bool(draws[i, 1] < share)) for i in range(ab.shape[0])]
    return torch.stack(rows).to(ab.device)


def reference_global_hint(rgb: torch.Tensor) -> torch.Tensor:
    """The global hint ``(G,)`` of a reference photo: uint8 RGB ``(H, W, 3)``, its colours over a
    64x64 thumbnail (histogram and mean chroma, both present)."""
    image = rgb.permute(2, 0, 1).float()[None] / 255.0
    _, ab = rgb_to_lab_normalized(F.interpolate(image, size=(64, 64), mode="area"))
    return global_hint(ab[0])
