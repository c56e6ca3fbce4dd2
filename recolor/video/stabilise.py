"""Steady colour: the predicted ab of each frame blended with the previous frame's, carried along
the motion, wherever the motion can be trusted; a new shot starts afresh.

Per frame the network predicts ab on its own (what DeOldify does, and why its films flicker: a
shifted or re-grained picture falls differently into the network's receptive fields). Here each
frame's output is an exponential moving average along the optical flow:

    out_t(x) = pred_t(x) + blend * reliable_t(x) * (out_{t-1}(x + f(x)) - pred_t(x))

with ``f`` the flow from frame t back to frame t-1, computed on the grey frames the network
sees. ``reliable`` keeps pixels whose flow passes the forward-backward test and whose lightness
matches where the flow points (occlusions, disocclusions and flow errors fall back to the
frame's own prediction). A scene cut (the lightness histogram jumps, or too little of the frame
can be followed from the previous one) resets the average, so a new shot takes its own colours
at once. All of it runs at the network's resolution, where the ab is predicted: a few
milliseconds a frame, whatever the film's size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .flow import OpticalFlow, consistent, warp


@dataclass
class StabiliserSettings:
    blend: float = 0.8  # weight of the colour carried from the previous frame: 0 is per-frame colorization
    lightness_tolerance: float = 12.0  # grey levels (0..255) by which a followed pixel may differ from its origin
    cut_histogram: float = 0.4  # total-variation distance of the 32-bin lightness histograms that is a cut
    cut_followed: float = 0.25  # a cut when less than this fraction of the frame can be followed back
    flow_preset: str = "fast"  # DIS "fast": the step takes 8 ms a 256 px frame on one core, "medium" 19 ms, as steady (benchmarks/README.md)


@dataclass
class TemporalStabiliser:
    """Stateful: call it on the frames of one video in order; ``cuts`` lists the frames that started a shot."""

    settings: StabiliserSettings = field(default_factory=StabiliserSettings)
    cuts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.flow = OpticalFlow(self.settings.flow_preset)
        self.frame = -1
        self._grey: np.ndarray | None = None
        self._ab: np.ndarray | None = None
        self._histogram: np.ndarray | None = None

    def __call__(self, grey: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """The steady ab (H, W, 2) float32 of the next frame, from its grey (H, W) uint8 and its predicted ab."""
        self.frame += 1
        histogram = np.bincount(grey.reshape(-1) >> 3, minlength=32) / grey.size
        out = ab
        if self._grey is not None:
            cut = 0.5 * np.abs(histogram - self._histogram).sum() > self.settings.cut_histogram
            if not cut:
                weight = self._followed(grey)
                cut = float(weight.mean()) < self.settings.cut_followed
                if not cut:
                    carried = warp(self._ab, self._back)
                    out = ab + (self.settings.blend * weight)[..., None] * (carried - ab)
            if cut:
                self.cuts.append(self.frame)
        self._grey, self._ab, self._histogram = grey, out.astype(np.float32, copy=False), histogram
        return self._ab

    def restart(self) -> None:
        """The next frame takes its own prediction, as after a cut (the hints in force changed:
        a stretch's hints take hold at its first frame instead of fading in)."""
        self._grey = self._ab = self._histogram = None

    def _followed(self, grey: np.ndarray) -> np.ndarray:
        """Per pixel of ``grey`` (float32 0/1, softened at the edges): can it be followed back to the previous frame?"""
        self._back = self.flow(grey, self._grey)
        ahead = self.flow(self._grey, grey)
        reliable = consistent(self._back, ahead)
        origin = warp(self._grey, self._back)
        reliable &= np.abs(grey.astype(np.int16) - origin.astype(np.int16)) <= self.settings.lightness_tolerance
        # a 3x3 erosion-like blur: a lone trusted pixel among distrusted ones is not trusted fully
        return cv2.blur(reliable.astype(np.float32), (3, 3))
