"""Videos (issue 26): clips made on the fly with PyAV (a few frames, 64x48, with an AAC track)."""
from __future__ import annotations

import fractions
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.cli import app
from recolor.inference import Colorizer
from recolor.planning import ColorizeJob
from recolor.video.colorize import VideoSettings, colorize_video
from recolor.video.container import VideoWriter
from recolor.video.frames import FrameColorizer
from recolor.video.metrics import CdcMeter, FlickerMeter, MotionTrack, ab_of, grey_of, js_divergence
from recolor.video.stabilise import TemporalStabiliser
from recolor.video.synthetic import camera_frames, write_clip

runner = CliRunner()
SIZE = (64, 48)


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory) -> Colorizer:
    """A random tiny pix2pix: its colour jumps with every grain of noise, as a per-frame colorizer's does."""
    from recolor.checkpoint import save_checkpoint
    from recolor.registry import get_model_spec

    torch.manual_seed(0)
    spec = get_model_spec("pix2pix")
    config = spec.config({"ngf": 8, "num_downs": 5, "image_size": 32})
    path = tmp_path_factory.mktemp("video_model") / "tiny.safetensors"
    save_checkpoint(path, spec.build(config).state_dict(), "pix2pix", config, kind="weights", dtype=torch.float16)
    return Colorizer.load(path, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def shipped() -> Colorizer:
    """The shipped default model: a trained network, whose colour a frame's grain really moves
    (a random tiny one barely colours at all, so its flicker is the 8-bit rounding's)."""
    return Colorizer.load(device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def model_path(colorizer) -> Path:
    return colorizer.source


def frames_of(photos, motion: str, count: int = 6, size=SIZE) -> list[np.ndarray]:
    return list(camera_frames([photos["astronaut"], photos["coffee"]], motion, count, size))


def variable_rate_clip(path: Path, frames: list[np.ndarray]) -> list[fractions.Fraction]:
    """An MP4 whose frames come at uneven times (a variable frame rate), with AAC sound; their times in seconds."""
    times = []
    with av.open(str(path), "w") as output:
        video = output.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        video.time_base = video.codec_context.time_base = fractions.Fraction(1, 1000)
        sound = output.add_stream("aac", rate=8000)
        sound.layout = "mono"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index * 100 + (37 if index % 2 else 0), fractions.Fraction(1, 1000)
            times.append(frame.pts * frame.time_base)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        tone = (0.2 * np.sin(np.arange(800 * len(frames)) / 3)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024].copy(), format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, start
            output.mux(sound.encode(chunk))
        output.mux(sound.encode(None))
    return times


def audio_packets(path: Path) -> list[tuple[bytes, fractions.Fraction]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(bytes(p), p.pts * p.time_base) for p in container.demux(stream) if p.size]


def video_frames(path: Path) -> tuple[list[fractions.Fraction], list[np.ndarray], av.video.stream.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        return [f.pts * f.time_base for f in decoded], [f.to_ndarray(format="rgb24") for f in decoded], stream


def colorize_cli(*args) -> object:
    return runner.invoke(app, ["colorize", *map(str, args)])


def test_a_video_keeps_its_frames_size_timing_and_audio_packets(tmp_path, photos, model_path):
    clip = tmp_path / "film.mp4"
    times = variable_rate_clip(clip, [f for f in frames_of(photos, "pan", 7)])
    result = colorize_cli(clip, "-o", tmp_path / "out", "--model", model_path, "--json", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["status"] == "ok" and (record["width"], record["height"]) == SIZE
    out = tmp_path / "out" / "film.mp4"
    out_times, out_frames, stream = video_frames(out)
    assert out_times == times  # frame count, variable rate and duration as they went in
    assert out_frames[0].shape == (SIZE[1], SIZE[0], 3)
    in_frames = video_frames(clip)[1]
    for before, after in zip(in_frames, out_frames):  # colour added, each frame's own lightness kept (BT.709 tagged and read back)
        assert np.abs(grey_of(before).astype(int) - grey_of(after)).mean() < 2.5
    assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    packets = audio_packets(out)
    assert packets and packets == audio_packets(clip)  # copied, not re-encoded
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["film.mp4"]  # no temporary file left


def test_a_folder_of_photos_an_odd_sized_gif_and_a_webm_stay_what_they_were(tmp_path, photos, model_path):
    folder = tmp_path / "in"
    folder.mkdir()
    frames = frames_of(photos, "pan", 4, size=(33, 25))
    write_clip(folder / "anim.gif", frames, codec="gif", audio=False)
    write_clip(folder / "odd.mkv", frames)
    write_clip(folder / "web.webm", frames_of(photos, "zoom", 4), codec="libvpx-vp9", audio=False)
    Image.fromarray(frames[0]).save(folder / "photo.png")
    result = colorize_cli(folder, "-o", tmp_path / "out", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim.gif", "odd.mkv", "photo.png", "web.webm"]
    for name, codec, size, count in (("anim.gif", "gif", (33, 25), 4), ("odd.mkv", "h264", (33, 25), 4), ("web.webm", "vp9", SIZE, 4)):
        times, decoded, stream = video_frames(tmp_path / "out" / name)
        assert stream.codec_context.name == codec and len(decoded) == count
        assert decoded[0].shape[1::-1] == size
    assert audio_packets(tmp_path / "out" / "odd.mkv") == audio_packets(folder / "odd.mkv")


def test_steady_colour_flickers_less_than_per_frame_and_a_cut_starts_afresh(photos, shipped):
    still = frames_of(photos, "still", 8)
    track = MotionTrack()
    motions = [track.step(grey_of(f)) for f in still]
    flicker = {}
    for name, stabiliser in (("per-frame", None), ("steady", TemporalStabiliser())):
        meter = FlickerMeter()
        for frame, motion in zip(FrameColorizer(shipped, stabiliser).colorize(still), motions):
            meter.update(ab_of(frame), motion)
        flicker[name] = meter.result()
    assert flicker["steady"] < 0.5 * flicker["per-frame"]  # measured: 0.26

    cut = frames_of(photos, "cut", 6)  # astronaut for 3 frames, then coffee
    stabiliser = TemporalStabiliser()
    steady = FrameColorizer(shipped, stabiliser).colorize(cut)
    alone = FrameColorizer(shipped).colorize(cut)
    assert stabiliser.cuts == [3]
    np.testing.assert_array_equal(steady[3], alone[3])  # the new shot's own colour at once
    assert not np.array_equal(steady[4], alone[4])  # and steadied again from the next frame


def test_flicker_and_cdc_measure_what_they_say():
    grey = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = grey
    blue = red[..., ::-1].copy()
    track = MotionTrack()
    steady, jumpy, cdc = FlickerMeter(), FlickerMeter(), CdcMeter()
    for index in range(5):
        motion = track.step(grey)
        steady.update(ab_of(red), motion)
        jumpy.update(ab_of(red if index % 2 else blue), motion)
        cdc.update(red)
    assert steady.result() == pytest.approx(0.0, abs=1e-6)
    assert jumpy.result() == pytest.approx(float(np.abs(ab_of(red) - ab_of(blue)).mean()), rel=0.05)
    assert cdc.result() == pytest.approx(0.0, abs=1e-12)
    half = np.array([0.5, 0.5, 0.0])
    assert js_divergence(half, np.array([0.0, 0.5, 0.5])) == pytest.approx(0.5 * np.log(2))  # scipy.stats.entropy's value


def make_bad_videos(folder: Path, photos) -> dict[str, Path]:
    frames = frames_of(photos, "pan", 4)
    good = folder / "good.mp4"
    write_clip(good, frames)
    data = good.read_bytes()
    bad = {"truncated": folder / "truncated.mp4", "unknown codec": folder / "codec.mp4", "corrupt": folder / "corrupt.mkv",
           "audio only": folder / "sound.mp4", "audio file": folder / "sound.m4a", "no frames": folder / "empty_stream.mkv"}
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["unknown codec"].write_bytes(data.replace(b"avc1", b"zzz1"))  # a fourcc no decoder knows
    bad["corrupt"].write_bytes(os.urandom(3000))
    for name in ("audio only", "audio file", "no frames"):
        with av.open(str(bad[name]), "w") as output:
            if name == "no frames":
                video = output.add_stream("libx264", rate=10)
                video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
            sound = output.add_stream("aac", rate=8000)
            sound.layout = "mono"
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, 0
            output.mux(sound.encode(chunk))
            output.mux(sound.encode(None))
    return {"good": good, **bad}


def test_bad_videos_get_one_line_each_and_the_batch_goes_on(tmp_path, photos, model_path):
    (tmp_path / "in").mkdir()
    files = make_bad_videos(tmp_path / "in", photos)
    result = colorize_cli(*files.values(), "-o", tmp_path / "out", "--model", model_path, "-q")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == len(files) - 1
    for name, path in files.items():
        if name != "good":
            assert sum(str(path) in line for line in failed) == 1, (name, result.stderr)
    assert "audio" in next(line for line in failed if "sound.mp4" in line)
    assert "no frames" in next(line for line in failed if "empty_stream" in line)
    assert "unknown" in next(line for line in failed if "codec.mp4" in line)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mp4"]


def test_a_video_is_never_replaced_in_place(tmp_path, photos, model_path):
    clip = tmp_path / "film.mp4"
    write_clip(clip, frames_of(photos, "pan", 3))
    before = clip.read_bytes()
    result = colorize_cli(clip, "--in-place", "--model", model_path, "-q")
    assert result.exit_code == 1 and "in place" in result.stderr
    assert clip.read_bytes() == before


def test_an_interrupted_video_leaves_nothing_and_the_rerun_starts_over(tmp_path, photos, colorizer, model_path, monkeypatch):
    clip = tmp_path / "film.mp4"
    write_clip(clip, frames_of(photos, "pan", 10))
    target = tmp_path / "out" / "film.mp4"
    written = []

    def interrupted(self, rgb, pts):
        written.append(pts)
        if len(written) == 3:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(VideoWriter, "write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            colorize_video(colorizer, ColorizeJob(clip, target), VideoSettings(batch_size=2))
    assert list(target.parent.iterdir()) == []  # nothing at the target's name, no temporary file
    # a SIGKILLed run's temporary file (its process gone) is removed, and the rerun says it starts over
    stale = target.parent / ".film.mp4.recolor-999999999-abcd1234.tmp"
    stale.write_bytes(b"partial")
    result = colorize_cli(clip, "-o", tmp_path / "out", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    assert "interrupted" in result.stderr and "starting this video over" in result.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == ["film.mp4"]


def test_evaluate_scores_clips_with_flicker_and_cdc(tmp_path, photos):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "pan.mp4", frames_of(photos, "pan", 5))
    write_clip(clips / "still.mkv", frames_of(photos, "still", 5))
    result = runner.invoke(app, ["evaluate", "--data", str(clips), "--model", "effnet-unet", "--precision", "fp32", "--metric", "flicker",
                                 "--metric", "cdc", "--metric", "ab-l1", "--json", "-q"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    rows = {row["name"]: row["values"] for row in scores["rows"]}
    assert scores["info"]["photos"] == 2 and set(scores["metrics"]) == {"ab_l1", "flicker", "cdc"}
    steady, alone = rows["effnet-unet"], rows["effnet-unet per-frame"]
    assert steady["flicker"] < 0.5 * alone["flicker"]
    assert rows["grey"]["flicker"] == pytest.approx(0.0, abs=2e-3) and rows["real"]["ab_l1"] is None
    assert alone["ab_l1"] > 0 and steady["cdc"] >= 0


def test_a_phones_display_rotation_is_kept(tmp_path, photos, model_path):
    """A phone films sideways and stores a display matrix; players turn the picture by it. The
    output keeps it, so the colorized film is shown the way the input was."""
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as output:
        stream = output.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        stream.set_display_rotation(90)
        for rgb in frames_of(photos, "pan", 3):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        output.mux(stream.encode(None))
    result = colorize_cli(clip, "-o", tmp_path / "out", "--model", model_path, "-q")
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "out" / "phone.mp4")) as container:
        first = next(container.decode(video=0))
        assert first.rotation == 90 and (first.width, first.height) == SIZE
