"""Optical flow between grey frames, warping along it, and where it can be trusted.

Why OpenCV's DIS flow (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse Search"):
it is a maintained, CPU-fast dense flow (with the "fast" preset the whole steadying step, two
flows and a warp at 256x256, takes about 8 ms a frame on one core), good enough to carry a slowly
varying colour field along the motion, and it needs no network weights. Flow ``f`` from frame A to frame B means A(x) ~ B(x + f(x)).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class OpticalFlow:
    """Dense flow between two grey uint8 frames of one size: ``flow(a, b)`` is (H, W, 2) float32."""

    def __init__(self, preset: str = "medium") -> None:
        self.dis = cv2.DISOpticalFlow_create(_PRESETS[preset])

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return self.dis.calc(np.ascontiguousarray(first), np.ascontiguousarray(second), None)


@functools.lru_cache(maxsize=8)
def _grid(height: int, width: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.stack([xs, ys], axis=-1)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` (H, W[, C]) sampled at x + flow(x), bilinearly (the edge pixels repeat outside)."""
    target = _grid(*flow.shape[:2]) + flow
    return cv2.remap(image, target[..., 0], target[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistent(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Pixels of frame A (bool, H x W) whose flow to B is confirmed by the flow back from B and lands
    inside B: the forward-backward test of Sundaram et al. (2010), as Ruder et al. (2016) use it
    for occlusion. Occluded and disoccluded pixels, and flow gone wrong, fail it."""
    back = warp(backward, forward)
    mismatch = np.square(forward + back).sum(-1)
    scale = np.square(forward).sum(-1) + np.square(back).sum(-1)
    target = _grid(*forward.shape[:2]) + forward
    height, width = forward.shape[:2]
    inside = (target[..., 0] >= 0) & (target[..., 0] <= width - 1) & (target[..., 1] >= 0) & (target[..., 1] <= height - 1)
    return (mismatch <= 0.01 * scale + 0.5) & inside
