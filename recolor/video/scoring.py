"""``recolor evaluate`` on a folder of colour clips (the ground truth): flicker and CDC beside the
per-frame ab-L1 and PSNR.

Each clip's frames (at their own size, or with the shorter side at ``--size``) are turned grey
and colorized by every ``--model`` twice: steadied, as ``recolor colorize`` does, and per frame
(each frame alone, DeOldify's way), in rows side by side. The baselines are the truth itself
(``real``: its own flicker and CDC, what the flow's errors, colour grain and real changes of
colour contribute) and the grey clip. Figures are
means over the clips (each clip counts once, whatever its length); frames stream through in
batches, so a clip's length costs no memory.
"""
from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import DEFAULT_MODEL
from ..color import grey_rgb
from ..evaluation.catalogue import METRICS, VIDEO_ONLY_OPTIONS, named_options, parse_metric_options
from ..evaluation.contenders import load_contenders
from ..evaluation.result import EvalResult, Row
from ..evaluation.settings import EvalSettings, EvaluationError
from ..imageio.listing import list_image_files
from .container import VideoError, decoded_frames, frame_rgb, open_video
from .formats import VIDEO_EXTENSIONS, is_video_file
from .frames import FrameColorizer
from .metrics import CdcMeter, FlickerMeter, MotionTrack, ab_of, grey_of
from .stabilise import TemporalStabiliser

VIDEO_OPTIONS = ["ab-l1", "psnr", *VIDEO_ONLY_OPTIONS]
_KEYS = {"ab-l1": "ab_l1", "psnr": "psnr", "flicker": "flicker", "cdc": "cdc"}
_BATCH = 8


def find_clips(folder: Path) -> list[Path]:
    """Video files below ``folder`` (animated GIFs too), sorted."""
    return [path for path in list_image_files(folder, all_files=True) if is_video_file(path)]


def wants_videos(settings: EvalSettings) -> bool:
    """Whether ``recolor evaluate`` scores clips: flicker or CDC asked for by name, or videos in ``--data``."""
    if named_options(settings.metrics) & set(VIDEO_ONLY_OPTIONS):
        return True
    data = Path(settings.data)
    return data.is_dir() and any(path.suffix.lower() in VIDEO_EXTENSIONS for path in list_image_files(data, all_files=True))


class _ClipScores:
    """One row's meters over one clip."""

    def __init__(self) -> None:
        self.flicker, self.cdc, self.ab_l1, self.psnr = FlickerMeter(), CdcMeter(), [], []

    def update(self, out: np.ndarray, truth: np.ndarray, truth_ab: np.ndarray, motion) -> None:
        ab = ab_of(out)
        self.flicker.update(ab, motion)
        self.cdc.update(out)
        self.ab_l1.append(float(np.abs(ab - truth_ab).mean()))
        mse = float(np.square(out.astype(np.float64) - truth).mean())
        self.psnr.append(10 * np.log10(255.0**2 / mse) if mse else float("inf"))

    def values(self) -> dict[str, float | None]:
        return {"ab_l1": float(np.mean(self.ab_l1)), "psnr": float(np.mean(self.psnr)),
                "flicker": self.flicker.result(), "cdc": self.cdc.result()}


def _resized(frame: np.ndarray, size: int | None) -> np.ndarray:
    if not size:
        return frame
    import cv2

    height, width = frame.shape[:2]
    ratio = size / min(height, width)
    return cv2.resize(frame, (max(size, round(width * ratio)), max(size, round(height * ratio))), interpolation=cv2.INTER_AREA)


def _batches(path: Path, size: int | None):
    source = open_video(path)
    try:
        batch = []
        for frame in decoded_frames(source, lambda packet: None):
            batch.append(_resized(frame_rgb(frame), size))
            if len(batch) == _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        source.close()


def score_clip(path: Path, runners: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]], size: int | None) -> dict[str, dict]:
    """Every row's figures on one clip; ``runners`` colorize a batch of frames for the model rows."""
    track = MotionTrack()
    scores = {name: _ClipScores() for name in ["real", "grey", *runners]}
    frames = 0
    for batch in _batches(path, size):
        frames += len(batch)
        greys = [grey_rgb(torch.from_numpy(f).permute(2, 0, 1).float() / 255).mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy() for f in batch]
        outputs = {"real": batch, "grey": greys} | {name: run(batch) for name, run in runners.items()}
        for index, truth in enumerate(batch):
            motion = track.step(grey_of(truth))
            truth_ab = ab_of(truth)
            for name, score in scores.items():
                score.update(outputs[name][index], truth.astype(np.float64), truth_ab, motion)
    if not frames:
        raise VideoError(f"{path}: its video stream has no frames")
    return {name: score.values() for name, score in scores.items()}


def evaluate_videos(settings: EvalSettings, progress: Callable[[int, int], None] | None = None,
                    log: Callable[[str], None] | None = None) -> EvalResult:
    """Score the models on the clips below ``settings.data``; raises EvaluationError for bad usage."""
    started = time.perf_counter()
    data = Path(settings.data)
    if not data.is_dir():
        raise EvaluationError(f"--data {data}: no such folder (pass a folder of colour video clips)")
    clips = find_clips(data)
    if not clips:
        raise EvaluationError(f"--data {data}: no video clips found (flicker and CDC score videos: .mp4, .mkv, .webm, animated .gif ...)")
    if settings.predictions:
        raise EvaluationError("--predictions scores photos; for clips pass --model (each is scored steadied and per frame)")
    options = parse_metric_options(settings.metrics)
    if options is None or "all" in named_options(settings.metrics):
        options = VIDEO_OPTIONS
    options = [option for option in options if option in VIDEO_OPTIONS]
    if not options:
        raise EvaluationError(f"on clips the metrics are {', '.join(VIDEO_OPTIONS)}")
    settings.models = settings.models or [DEFAULT_MODEL]
    contenders = load_contenders(settings)
    totals: dict[str, list[dict]] = {}
    notes, skipped = [], []
    for number, clip in enumerate(clips):
        runners = {}
        for contender in contenders:
            runners[contender.name] = FrameColorizer(contender.colorizer, TemporalStabiliser()).colorize
            runners[f"{contender.name} per-frame"] = FrameColorizer(contender.colorizer).colorize
        try:
            for name, values in score_clip(clip, runners, settings.size).items():
                totals.setdefault(name, []).append(values)
        except VideoError as exc:
            skipped.append(str(exc))
            if log:
                log(f"skipped: {exc}")
        if progress:
            progress(number + 1, len(clips))
    if not totals:
        raise EvaluationError(f"--data {data}: no usable clip ({len(skipped)} unreadable, e.g. {skipped[0]})")
    keys = [_KEYS[option] for option in options]
    rows = [Row("real", "baseline", "the ground-truth colour clips"), Row("grey", "baseline", "the greyscale clips (a = b = 0)")]
    for contender in contenders:
        rows += [Row(contender.name, "model", f"{contender.source}, steady colour"), Row(f"{contender.name} per-frame", "model", f"{contender.source}, each frame alone")]
    for row in rows:
        for key in keys:
            values = [clip[key] for clip in totals[row.name] if clip[key] is not None]
            trivial = row.name == "real" and key in ("ab_l1", "psnr")
            row.values[key] = None if trivial or not values else float(np.mean(values))
    if skipped:
        notes.append(f"{len(skipped)} clips were skipped as unreadable, e.g. {skipped[0]}")
    notes.append("flicker: warping error |ab_t - ab_t+1(x + flow)| in ab/110 units over the pixels the flow of the grey input follows "
                 "(Lai et al. 2018, L1 form); CDC: Jensen-Shannon divergence of RGB histograms between frames t and t+1, 2, 4 (NTIRE 2023). "
                 "Means over clips; 'per-frame' rows colorize each frame alone.")
    clips_scored = len(totals["real"])
    info = {"data": str(data), "photos": clips_scored, "unit": "clips", "size": settings.size or "full",
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "device": str(contenders[0].colorizer.device) if contenders else "cpu",
            "seed": settings.seed, "metric_options": options, "seconds": round(time.perf_counter() - started, 2)}
    return EvalResult(rows, [key for key in METRICS if key in keys], info, notes)
