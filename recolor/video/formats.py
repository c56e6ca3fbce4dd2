"""Which files are videos, and how each is written back: its own container where FFmpeg can
write it (with a codec that container holds), Matroska otherwise. Imports neither PyAV nor torch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".flv", ".3gp",
    ".mpg", ".mpeg", ".vob", ".ogv", ".wmv", ".asf", ".dv",
}

# sound without pictures: named, they get one line saying so rather than "not an image"
AUDIO_EXTENSIONS = {".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".oga", ".opus", ".wma"}


@dataclass(frozen=True)
class OutputKind:
    container: str  # FFmpeg's muxer name
    codec: str  # the default video encoder


_H264 = "libx264"
# containers written to themselves; the rest (MPEG-PS, Ogg, ASF, DV...) come out as Matroska,
# which holds H.264 and any audio or subtitle stream the input had
_WRITTEN = {
    ".mp4": OutputKind("mp4", _H264), ".m4v": OutputKind("mp4", _H264), ".mov": OutputKind("mov", _H264),
    ".mkv": OutputKind("matroska", _H264), ".avi": OutputKind("avi", _H264), ".ts": OutputKind("mpegts", _H264),
    ".m2ts": OutputKind("mpegts", _H264), ".mts": OutputKind("mpegts", _H264), ".flv": OutputKind("flv", _H264),
    ".3gp": OutputKind("3gp", _H264), ".webm": OutputKind("webm", "libvpx-vp9"),  # WebM holds only VP8/VP9/AV1
    ".gif": OutputKind("gif", "gif"),
}
FALLBACK_SUFFIX = ".mkv"


def is_video_file(path: str | Path) -> bool:
    """A video by its extension, or a GIF with more than one frame (a single-frame GIF is a photo)."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return True
    return suffix == ".gif" and _animated(Path(path))


def is_video_job(source: Path, target: Path) -> bool:
    """Whether a planned job goes the video way: a film, or an animated GIF written as a GIF
    (``--format png`` on it, or ``--in-place``, makes a photo of its first frame, as before)."""
    if source.suffix.lower() != ".gif":
        return source.suffix.lower() in VIDEO_EXTENSIONS
    return target.suffix.lower() == ".gif" and target != source and _animated(source)


def _animated(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except Exception:  # noqa: BLE001 - not readable as a GIF: the photo path names the problem
        return False


def video_target(target: Path) -> Path:
    """Where a video whose planned output is ``target`` is written: the same name, or ``.mkv`` for a
    container FFmpeg cannot write back with a video encoder we have."""
    return target if target.suffix.lower() in _WRITTEN else target.with_suffix(FALLBACK_SUFFIX)


def output_kind(target: Path) -> OutputKind:
    return _WRITTEN.get(target.suffix.lower(), _WRITTEN[FALLBACK_SUFFIX])
