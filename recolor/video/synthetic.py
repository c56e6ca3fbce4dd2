"""Clips with known motion made from colour photos: the truth of every frame is known, so a
colorized clip can be scored against it (``benchmarks/video_flicker.py``, the tests). A virtual
camera looks at the photo through a moving window: a pan, a zoom, a still shot with film grain,
or a cut from one photo to another."""
from __future__ import annotations

import fractions
import itertools
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import av
import cv2
import numpy as np

MOTIONS = ("pan", "zoom", "still", "cut")


def _view(photo: np.ndarray, centre: tuple[float, float], scale: float, size: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) frame a camera sees looking at ``centre`` with ``scale`` photo pixels per frame pixel."""
    width, height = size
    matrix = np.array([[scale, 0, centre[0] - scale * (width - 1) / 2], [0, scale, centre[1] - scale * (height - 1) / 2]], np.float32)
    return cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)


def camera_frames(photos: Sequence[np.ndarray], motion: str, frames: int, size: tuple[int, int], seed: int = 0) -> Iterator[np.ndarray]:
    """``frames`` uint8 RGB frames of ``size`` (width, height) filmed from ``photos[0]`` (and
    ``photos[1]`` after the cut, half-way, for ``"cut"``): the window covers 70 % of the photo and
    pans across 20 % of its width, zooms in by 25 %, or stays still with grain (sigma 3 levels)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion {motion!r}: one of {', '.join(MOTIONS)}")
    rng = np.random.default_rng(seed)
    for index in range(frames):
        progress = index / max(1, frames - 1)
        photo = photos[1] if motion == "cut" and index >= frames // 2 else photos[0]
        height, width = photo.shape[:2]
        scale = 0.7 * min(width / size[0], height / size[1])
        centre = [width / 2, height / 2]
        if motion in ("pan", "cut"):
            centre[0] += (progress - 0.5) * 0.2 * width
        elif motion == "zoom":
            scale /= 1 + 0.25 * progress
        frame = _view(photo, tuple(centre), scale, size)
        if motion == "still":
            frame = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        yield frame


def write_clip(path: str | Path, frames: Iterable[np.ndarray], fps: int = 10, audio: bool = True, codec: str = "libx264",
               crf: int = 10) -> None:
    """A clip file from RGB frames (consumed one at a time), with a mono AAC tone as long as the frames when ``audio``."""
    frames = iter(frames)
    first = next(frames)
    frames = itertools.chain([first], frames)
    height, width = first.shape[:2]
    count = 0
    with av.open(str(path), "w") as output:
        video = output.add_stream(codec, rate=fps, options={"crf": str(crf)} if codec == "libx264" else {})
        video.width, video.height = width, height
        video.pix_fmt = "yuv444p" if codec == "libx264" and (width % 2 or height % 2) else ("rgb8" if codec == "gif" else "yuv420p")
        sound = None
        if audio:
            sound = output.add_stream("aac", rate=8000)
            sound.layout = "mono"
        for index, rgb in enumerate(frames):
            count += 1
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, fps)
            output.mux(video.encode(frame.reformat(format="rgb8") if codec == "gif" else frame))
        output.mux(video.encode(None))
        if sound is not None:
            samples = (0.2 * np.sin(np.arange(8000 * count // fps) * 2 * np.pi * 440 / 8000)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start : start + 1024].copy(), format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, start
                output.mux(sound.encode(chunk))
            output.mux(sound.encode(None))
