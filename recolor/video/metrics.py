"""Temporal figures of a colorized video, computed frame by frame (memory does not grow with length).

* flicker: the warping error of Lai et al. (2018, "Learning Blind Video Temporal Consistency",
  eq. 8) on the colour channels: for each pair of consecutive frames, the mean over the pixels
  that the motion can follow of |ab_t - ab_{t+1}(x + f(x))|, f the optical flow from frame t to
  t+1 computed on the grey input (the same flow for every contender), then the mean over pairs.
  Lai et al. take the squared L2 distance on RGB; we take, as issue 26 asks, the L1 distance on
  ab in ab/110 units (the unit of ab-L1), so lightness, which every contender shares, adds
  nothing. Pixels are followed where the flow passes the forward-backward test and the
  lightness matches (occlusions and shot cuts are left out).
* CDC, colour distribution consistency (Liu et al. 2021, TCVC; the NTIRE 2023 video
  colorization challenge's metric): the Jensen-Shannon divergence of each RGB channel's
  256-bin histogram between frames t and t+d, averaged over t and the channels, then over the
  dilations d = 1, 2, 4 (weights 1/3, the challenge's), natural logarithms as scipy's entropy.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..color import AB_SCALE, rgb_to_lab
from .flow import OpticalFlow, consistent, warp

CDC_DILATIONS = (1, 2, 4)
LIGHTNESS_TOLERANCE = 12  # grey levels: a followed pixel whose lightness differs more is not the same point


def ab_of(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 ab in ab/110 units of a uint8 RGB frame (H, W, 3)."""
    lab = rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0)
    return (lab[1:] / AB_SCALE).permute(1, 2, 0).contiguous().numpy()


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) lightness (L * 2.55) of a uint8 RGB frame: what the flow is computed on."""
    lab_l = rgb_to_lab(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0)[0]
    return (lab_l * 2.55).round().clamp(0, 255).to(torch.uint8).numpy()


@dataclass
class Motion:
    """The motion between one frame and the next: flow from frame t to t+1, and the pixels of t it follows."""

    flow: np.ndarray  # (H, W, 2)
    followed: np.ndarray  # (H, W) bool


class MotionTrack:
    """Feed it the grey input frames in order; ``step`` gives the Motion from the previous frame (None first)."""

    def __init__(self, preset: str = "medium") -> None:
        self.flow = OpticalFlow(preset)
        self.previous: np.ndarray | None = None

    def step(self, grey: np.ndarray) -> Motion | None:
        previous, self.previous = self.previous, grey
        if previous is None:
            return None
        forward, backward = self.flow(previous, grey), self.flow(grey, previous)
        followed = consistent(forward, backward)
        followed &= np.abs(previous.astype(np.int16) - warp(grey, forward).astype(np.int16)) <= LIGHTNESS_TOLERANCE
        return Motion(forward, followed)


@dataclass
class FlickerMeter:
    """Warping error of one colorized video: ``update(ab, motion)`` per frame (motion from :class:`MotionTrack`)."""

    pairs: list[float] = field(default_factory=list)
    _previous: np.ndarray | None = None

    def update(self, ab: np.ndarray, motion: Motion | None) -> None:
        if motion is not None and self._previous is not None and motion.followed.any():
            carried = warp(ab, motion.flow)  # frame t+1's colour where frame t's pixels went
            error = np.abs(self._previous - carried).mean(-1)
            self.pairs.append(float(error[motion.followed].mean()))
        self._previous = ab

    def result(self) -> float | None:
        return float(np.mean(self.pairs)) if self.pairs else None


def _histograms(rgb: np.ndarray) -> np.ndarray:
    """(3, 256) normalised histograms of the R, G and B channels."""
    flat = rgb.reshape(-1, 3)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(3)]).astype(np.float64) / max(1, len(flat))


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence (natural log) along the last axis of two histograms."""
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / np.where(m > 0, m, 1)), 0.0).sum(-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


@dataclass
class CdcMeter:
    """Colour distribution consistency of one video: ``update(rgb)`` per frame, in order."""

    sums: dict[int, list[float]] = field(default_factory=lambda: {d: [] for d in CDC_DILATIONS})
    _recent: deque = field(default_factory=lambda: deque(maxlen=max(CDC_DILATIONS)))

    def update(self, rgb: np.ndarray) -> None:
        histograms = _histograms(rgb)
        for dilation in CDC_DILATIONS:
            if len(self._recent) >= dilation:
                self.sums[dilation].append(float(js_divergence(self._recent[-dilation], histograms).mean()))
        self._recent.append(histograms)

    def result(self) -> float | None:
        """The mean over the dilations the clip is long enough for (None for a single frame)."""
        means = [float(np.mean(values)) for values in self.sums.values() if values]
        return float(np.mean(means)) if means else None
