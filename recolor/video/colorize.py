"""One video file to another, streaming: decode, colorize a batch of frames, encode, while the
audio and subtitle packets are copied as they come. Memory holds one batch of frames and the
encoder's look-ahead, whatever the film's length; nothing is extracted to disk.

The output is written to a temporary file beside the target and renamed over it at the end
(the photos' atomic writes): an interrupted run leaves nothing at the target's name, and the
next run removes the dead run's temporary file and starts that video over (it says so).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import numpy as np

from ..color import thumbnail_chroma
from ..hintsfile import HintSchedule
from ..imageio.atomic import _atomic_file, _is_stale_temp  # the photos' atomic writes and their stale-file test
from ..imageio.photo import COLOUR_CHROMA_THRESHOLD
from ..inference import Colorizer, NonFiniteOutputError
from ..pipeline import ColorizeOutcome
from ..planning import ColorizeJob
from .container import VideoError, VideoSource, VideoWriter, decoded_frames, frame_rgb, open_video
from .formats import output_kind
from .frames import FrameColorizer
from .stabilise import TemporalStabiliser

DEFAULT_CRF = 18  # x264's "visually lossless" end of the scale (its own default is 23)


@dataclass
class VideoSettings:
    codec: str | None = None  # None: the container's (H.264, VP9 for WebM, GIF for GIF)
    crf: int = DEFAULT_CRF
    stabilise: bool = True
    batch_size: int = 8


def left_partial(target: Path) -> bool:
    """Whether a run that died (SIGKILL, power cut) left a temporary file of ``target``: the
    command line says the video starts over (the stale file is removed before any work)."""
    try:
        with os.scandir(target.parent) as entries:
            return any(entry.name.startswith(f".{target.name}.") and _is_stale_temp(entry) for entry in entries)
    except OSError:
        return False


def count_frames(jobs: Iterable[ColorizeJob]) -> int:
    """The frames the jobs' videos declare (for a progress bar; unreadable files count 0)."""
    total = 0
    for job in jobs:
        try:
            source = open_video(job.source)
        except VideoError:
            continue
        total += source.declared_frames()
        source.close()
    return total


def colorize_videos(colorizer: Colorizer, jobs: Iterable[ColorizeJob], settings: VideoSettings,
                    progress: Callable[[int], None] | None = None) -> Iterator[ColorizeOutcome]:
    """One outcome per job, in order; ``progress(frames)`` after each batch of frames."""
    for job in jobs:
        yield colorize_video(colorizer, job, settings, progress)


def colorize_video(colorizer: Colorizer, job: ColorizeJob, settings: VideoSettings,
                   progress: Callable[[int], None] | None = None) -> ColorizeOutcome:
    """Colorize ``job.source`` into ``job.target``; an error outcome (one line) instead of raising."""
    try:
        source = open_video(job.source)
    except VideoError as exc:
        return ColorizeOutcome(job, error=str(exc))
    try:
        hints = HintSchedule.of(job.hints)
        frames, was_colour = _transcode(colorizer, source, job.target, settings, progress, hints)
        return ColorizeOutcome(job, width=source.width, height=source.height, was_colour=was_colour, note=_note(source, frames, hints))
    except VideoError as exc:
        return ColorizeOutcome(job, error=str(exc))
    except NonFiniteOutputError as exc:
        return ColorizeOutcome(job, error=f"{job.source}: {exc}")
    except (av.error.FFmpegError, OSError) as exc:
        return ColorizeOutcome(job, error=f"{job.target}: could not write ({getattr(exc, 'strerror', None) or exc})")
    except (RuntimeError, MemoryError, ValueError) as exc:
        return ColorizeOutcome(job, error=f"{job.source}: colorization failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    finally:
        source.close()


def _note(source: VideoSource, frames: int, hints: HintSchedule | None = None) -> str | None:
    notes = []
    unreached = [str(index + 1) for index, section in enumerate(hints.sections if hints else ())
                 if section.frames is not None and section.frames[0] >= frames]
    if unreached:  # frames count from 0: a 1-based or seconds-based range is the likely slip
        notes.append(f"hints section(s) {', '.join(unreached)} start after its last frame ({frames} frames, numbered from 0): not applied")
    declared = source.declared_frames()
    if declared and frames < declared - 1:
        notes.append(f"decoded {frames} of the {declared} frames its header declares (truncated?)")
    if source.dropped:
        notes.append(f"left out {len(source.dropped)} stream(s) that are neither video, audio nor subtitles ({', '.join(sorted(set(source.dropped)))})")
    return f"{source.path}: " + "; ".join(notes) if notes else None


def _transcode(colorizer: Colorizer, source: VideoSource, target: Path, settings: VideoSettings,
               progress: Callable[[int], None] | None, hints: HintSchedule | None = None) -> tuple[int, bool]:
    """Write the colorized video; (frames written, whether the input was already in colour)."""
    if hints:
        try:
            hints.check_inside(source.width, source.height)
        except ValueError as exc:
            raise VideoError(f"{source.path}: {exc}") from None
    colorize = FrameColorizer(colorizer, TemporalStabiliser() if settings.stabilise else None, hints)
    was_colour = None
    with _atomic_file(target) as handle:
        writer = VideoWriter(handle, source, output_kind(target), settings.codec, settings.crf)
        try:
            batch: list[np.ndarray] = []
            stamps: list[int | None] = []

            def flush() -> None:
                for rgb, pts in zip(colorize.colorize(batch), stamps):
                    writer.write(rgb, pts)
                if progress:
                    progress(len(batch))
                batch.clear()
                stamps.clear()

            for frame in decoded_frames(source, writer.copy):
                if was_colour is None:  # the first frame, before anything is encoded
                    writer.orient_like(frame)
                batch.append(frame_rgb(frame))
                stamps.append(frame.pts)
                if was_colour is None:
                    was_colour = thumbnail_chroma(batch[-1][::8, ::8]) > COLOUR_CHROMA_THRESHOLD
                if len(batch) >= settings.batch_size:
                    flush()
            if batch:
                flush()
            if not writer.frames:
                raise VideoError(f"{source.path}: nothing to colorize (its video stream has no frames)")
            writer.close()
        except BaseException:
            writer.abandon()
            raise
    return writer.frames, bool(was_colour)
