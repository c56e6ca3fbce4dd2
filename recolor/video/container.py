"""Reading and writing videos through PyAV, FFmpeg's libraries in a pip wheel (no ffmpeg binary).

Why PyAV: it is the maintained Python binding of libavformat/libavcodec, ships them in its
wheels (H.264, VP9, GIF, AAC, ...), and gives packets as well as frames, so the audio and
subtitle streams are copied packet for packet (a remux: not one sample re-encoded) while the
video is decoded, colorized and encoded frame by frame, all in one pass with bounded memory.

A frame keeps its timestamp: the output video stream runs on the input stream's time base and
every frame carries its input ``pts``, so a variable frame rate, the duration and the frame count
come out as they went in.
"""
from __future__ import annotations

import fractions
from dataclasses import dataclass, field
from typing import IO, Iterator

import av
import numpy as np

from .formats import OutputKind


class VideoError(Exception):
    """A file that cannot be colorized as a video; the message is one line naming it."""


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class VideoSource:
    """An opened input: its first video stream, the streams copied to the output, and what it declares."""

    path: str
    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    copied: list = field(default_factory=list)  # audio and subtitle streams
    dropped: list[str] = field(default_factory=list)  # the types of streams left out (data, attachments)

    @property
    def width(self) -> int:
        return self.video.codec_context.width

    @property
    def height(self) -> int:
        return self.video.codec_context.height

    @property
    def rate(self) -> fractions.Fraction:
        """The nominal frame rate (the encoder's rate control wants one; timestamps stay the input's)."""
        return self.video.average_rate or self.video.guessed_rate or fractions.Fraction(25)

    def declared_frames(self) -> int:
        """The frame count the file declares, or one estimated from its duration (0: unknown)."""
        if self.video.frames:
            return int(self.video.frames)
        if self.video.duration and self.video.time_base:
            return int(round(float(self.video.duration * self.video.time_base * self.rate)))
        if self.container.duration:
            return int(round(self.container.duration / av.time_base * float(self.rate)))
        return 0

    def close(self) -> None:
        self.container.close()


def open_video(path: str) -> VideoSource:
    """Open ``path`` for decoding; a VideoError (one line) when it holds no decodable video."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise VideoError(f"{path}: no such file") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: not a readable video, corrupt or truncated ({_reason(exc)})") from None
    try:
        # cover art of an audio file comes as a one-picture "video" stream: not a film
        videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            what = "an audio-only file" if container.streams.audio else "no video stream"
            raise VideoError(f"{path}: nothing to colorize ({what})")
        video = videos[0]
        if video.codec_context is None:
            raise VideoError(f"{path}: its video codec is unknown to this FFmpeg (cannot be decoded)")
        video.thread_type = "AUTO"
        copied = [s for s in container.streams if s.type in ("audio", "subtitle")]
        dropped = [s.type for s in container.streams if s is not video and s not in copied]
        return VideoSource(str(path), container, video, copied, dropped)
    except BaseException:
        container.close()
        raise


def decoded_frames(source: VideoSource, packet_sink) -> Iterator[av.VideoFrame]:
    """The video's frames in order, while every packet of a copied stream goes to ``packet_sink``.

    Raises VideoError when the video data is corrupt. The demuxer's empty flush packets are fed
    to the decoder (they release its last frames) but never copied."""
    try:
        for packet in source.container.demux(source.video, *source.copied):
            if packet.stream is source.video:
                yield from packet.decode()
            elif packet.dts is not None:
                packet_sink(packet)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{source.path}: corrupt video data ({_reason(exc)})") from None


def frame_rgb(frame: av.VideoFrame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame."""
    return frame.to_ndarray(format="rgb24")


# --- writing ------------------------------------------------------------------------------------

def _encoder_options(codec: str, crf: int) -> dict[str, str]:
    if codec == "libx264":
        return {"crf": str(crf), "preset": "medium"}
    if codec in ("libvpx-vp9", "libvpx"):
        return {"crf": str(crf), "b": "0", "row-mt": "1"}  # b=0: constant quality
    return {}


def _pixel_format(codec: av.Codec, width: int, height: int) -> str:
    formats = [f.name for f in codec.video_formats or []]
    if codec.name == "gif":
        return "pal8"
    if codec.name == "libx264" and (width % 2 or height % 2):
        return "yuv444p"  # x264 takes 4:2:0 only at even sizes; the size must stay the input's
    for wanted in ("yuv420p", "yuv444p", "rgb24"):
        if wanted in formats:
            return wanted
    return formats[0] if formats else "yuv420p"


def check_codec(codec: str) -> None:
    """A ValueError (one line) for a name that is no video encoder of this FFmpeg."""
    try:
        found = av.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - av raises several types for unknown names
        raise ValueError(f"--codec {codec}: not a video encoder of this FFmpeg (e.g. libx264, libvpx-vp9, mpeg4, ffv1)") from None
    if found.type != "video":
        raise ValueError(f"--codec {codec}: a {found.type} codec, not a video encoder")


class VideoWriter:
    """The output container on ``handle``: one encoded video stream with the input's timestamps,
    and a copy of each of the input's audio and subtitle streams."""

    def __init__(self, handle: IO[bytes], source: VideoSource, kind: OutputKind, codec: str | None = None, crf: int = 18) -> None:
        self.output = av.open(handle, "w", format=kind.container)
        try:
            encoder = av.Codec(codec or kind.codec, "w")
            self.stream = self.output.add_stream(encoder.name, rate=source.rate, options=_encoder_options(encoder.name, crf))
            self.stream.width, self.stream.height = source.width, source.height
            self.stream.pix_fmt = _pixel_format(encoder, source.width, source.height)
            self.yuv = self.stream.pix_fmt.startswith("yuv")
            if self.yuv:  # BT.709, tagged: an untagged HD film is read as BT.601 by some players and as BT.709 by others
                context = self.stream.codec_context
                context.colorspace = context.color_primaries = context.color_trc = 1  # AVCOL_*_BT709
                context.color_range = 1  # limited ("TV") range, what players expect of H.264 and VP9
            time_base = source.video.time_base or fractions.Fraction(1, 90000)
            if kind.container != "gif":  # GIF counts in hundredths of a second whatever it is told
                self.stream.time_base = time_base
                self.stream.codec_context.time_base = time_base
            self.time_base = time_base
            self.frame_ticks = max(1, round(1 / (time_base * source.rate)))  # one frame period, for frames without a timestamp
            self.copies = {s.index: self.output.add_stream_from_template(s) for s in source.copied}
        except BaseException:
            self.output.close()
            raise
        self.last_pts: int | None = None
        self.frames = 0
        self.counted = True

    def orient_like(self, frame: av.VideoFrame) -> None:
        """Give the output the display matrix (a phone's rotation, a mirror) the input's first
        frame carries: the frames are colorized as stored, and players turn them as they turned
        the input. Before the first frame is encoded; a container that holds none (AVI) keeps none."""
        for side_data in frame.side_data:
            if "DISPLAYMATRIX" in str(side_data.type):
                matrix = np.frombuffer(bytes(side_data), "<i4").tolist()
                if matrix != [65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]:  # not the identity
                    self.stream.set_display_matrix(matrix)

    def copy(self, packet: av.Packet) -> None:
        packet.stream = self.copies[packet.stream.index]
        self.output.mux(packet)

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        frame = self._frame(rgb)
        if pts is None:  # a raw stream without timestamps: one frame period each
            pts = 0 if self.last_pts is None else self.last_pts + self.frame_ticks
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # encoders refuse repeated timestamps; keep the frame, shift it a tick
        frame.pts, frame.time_base, self.last_pts = pts, self.time_base, pts
        self.output.mux(self.stream.encode(frame))
        self.frames += 1

    def _frame(self, rgb: np.ndarray) -> av.VideoFrame:
        if self.stream.pix_fmt != "pal8":
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            return frame.reformat(format=self.stream.pix_fmt, dst_colorspace="ITU709") if self.yuv else frame
        from PIL import Image

        # a palette per frame, chosen from the frame's own colours (FFmpeg's fixed 3-3-2 palette bands)
        image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
        palette = np.zeros((256, 4), np.uint8)
        colours = np.asarray(image.getpalette(), np.uint8).reshape(-1, 3)[:256]
        palette[: len(colours), 0] = 255
        palette[: len(colours), 1:] = colours
        return av.VideoFrame.from_ndarray((np.asarray(image, np.uint8), palette), format="pal8")  # palette rows: A, R, G, B

    def close(self) -> None:
        """Flush the encoder and finish the container (its index, its trailer)."""
        self.output.mux(self.stream.encode(None))
        self.output.close()

    def abandon(self) -> None:
        try:
            self.output.close()
        except Exception:  # noqa: BLE001 - the temporary file is removed anyway
            pass
