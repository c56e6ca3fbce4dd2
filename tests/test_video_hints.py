"""A video's hints (issue 26, item 4): a hints file for a film holds for all of it or for a frame
range, as one object or a list of them; the points reach the network frame by frame, through the
photos' own hint inputs, and the steadying starts afresh where the hints in force change."""
from __future__ import annotations

import json
import math
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from recolor.cli import app
from recolor.hintpoints import MAX_POINTS, HintPoint, Hints
from recolor.hintsfile import HintSchedule, HintsFile, HintsFileError, read_hint_schedule, read_hints_file
from recolor.video.synthetic import camera_frames, write_clip

runner = CliRunner()
BLUE = "#2040ff"  # a picker's pure blue: far outside sRGB at the coffee cup's lightness
SPOT = (48, 32)  # the middle of a 96x64 frame: the saucer under the cup


def write(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


def point(x: float, y: float, colour: str = BLUE) -> dict:
    return {"x": x, "y": y, "color": colour}


# --- the schedule -----------------------------------------------------------------------------

def test_a_frame_takes_every_section_that_covers_it_and_the_last_reference(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    schedule = read_hint_schedule(write(tmp_path / "film.hints.json", [
        {"points": [point(1, 1)], "reference": "a.jpg"},
        {"points": [point(2, 2, "#00ff00")], "frames": [10, 19]},
        {"reference": "b.jpg", "frames": [15, 30]},
    ]))
    assert [len(schedule.at(f).points) for f in (0, 9, 10, 19, 20, 31)] == [1, 1, 2, 2, 1, 1]
    assert schedule.at(0).reference == tmp_path / "a.jpg"
    assert schedule.at(16).reference == tmp_path / "b.jpg" and schedule.at(25).points == (HintPoint(1, 1, (32, 64, 255)),)
    assert schedule.at(3) is schedule.at(7) and schedule.at(10) is not schedule.at(9)  # one object per set in force
    assert schedule.for_photo() == Hints((HintPoint(1, 1, (32, 64, 255)),), tmp_path / "a.jpg")

    only_later = HintSchedule((HintsFile(Hints((HintPoint(1, 1, (1, 2, 3)),)), (5, 6)),))
    assert only_later.at(4) is None and only_later.at(5) is not None and only_later.for_photo() is None
    assert HintSchedule.of(None) is None and HintSchedule.of(only_later) is only_later
    assert HintSchedule.of(Hints((HintPoint(1, 1, (1, 2, 3)),))).at(10 ** 6) is not None


def test_a_video_hints_file_problem_is_one_line_naming_the_section(tmp_path):
    cases = [
        ([], "empty list"),
        ([{"points": [point(1, 1)]}, {"points": [point(1, 1)], "frames": [9, 3]}], "section 2: \"frames\" must be"),
        ([{"points": [point(1, 1)]}, 7], "section 2: expected a JSON object"),
        ({"points": [point(1, 1)], "frame": [1, 2]}, "unknown key 'frame'"),
        ([{"points": [point(1, 1)] * 200}, {"points": [point(1, 1)] * 100, "frames": [4, 8]}],
         f"300 hint points in force at frame 4: at most {MAX_POINTS}"),
    ]
    for document, complaint in cases:
        path = write(tmp_path / "bad.hints.json", document)
        with pytest.raises(HintsFileError) as failure:
            read_hint_schedule(path)
        message = str(failure.value)
        assert complaint in message and str(path) in message and "\n" not in message, message
    with pytest.raises(HintsFileError, match="is for a video"):  # a photo's sidecar is one object
        read_hints_file(write(tmp_path / "photo.hints.json", [{"points": [point(1, 1)]}]))


# --- through the command line, on the shipped default -----------------------------------------

def clip_of(photos, path: Path, frames: int = 8) -> Path:
    write_clip(path, camera_frames([photos["coffee"]], "still", frames, (96, 64)), audio=False)
    return path


def blue_share(path: Path) -> list[float]:
    """Per frame of a video: how blue the spot is (the cosine of its ab to blue's, times its chroma over 10, capped at 1)."""
    from skimage.color import rgb2lab

    shares = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            lab = rgb2lab(frame.to_ndarray(format="rgb24"))[SPOT[1] - 2:SPOT[1] + 3, SPOT[0] - 2:SPOT[0] + 3]
            a, b = lab[..., 1].mean(), lab[..., 2].mean()
            blue_a, blue_b = 59.0, -95.0
            cosine = (a * blue_a + b * blue_b) / (math.hypot(a, b) * math.hypot(blue_a, blue_b) + 1e-9)
            shares.append(cosine * min(1.0, math.hypot(a, b) / 10))
    return shares


def colorize(*args) -> object:
    return runner.invoke(app, ["colorize", *map(str, args)])


def test_a_sidecars_frame_range_colours_those_frames_only(tmp_path, photos):
    folder = tmp_path / "films"
    folder.mkdir()
    clip_of(photos, folder / "film.mp4")
    write(folder / "film.hints.json", [{"points": [point(*SPOT)], "frames": [2, 4]}])
    result = colorize(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert record["status"] == "ok" and record["hints"] == {"points": 1, "reference": None, "sections": 1}
    assert "1 colorized (1 with hints)" in result.stderr
    shares = blue_share(tmp_path / "out" / "film.mp4")
    assert len(shares) == 8
    inside, outside = shares[2:5], shares[:2] + shares[5:]
    # blue inside the range from its first frame to its last, not before it nor after it
    # (the steadying starts afresh where the hints change, so they neither fade in nor linger)
    assert min(inside) > 0.5 and max(outside) < 0.2, shares


def test_hint_options_hold_for_a_whole_video_and_a_point_outside_it_is_one_line(tmp_path, photos):
    folder = tmp_path / "films"
    folder.mkdir()
    clip_of(photos, folder / "film.mp4", frames=5)
    result = colorize(folder / "film.mp4", "-o", tmp_path / "out", "--hint", f"{SPOT[0]},{SPOT[1]},{BLUE}", "-q")
    assert result.exit_code == 0, result.output
    assert min(blue_share(tmp_path / "out" / "film.mp4")) > 0.5

    clip_of(photos, folder / "other.mp4", frames=3)
    write(folder / "film.hints.json", {"points": [point(500, 10)]})  # the frame is 96x64
    result = colorize(folder, "-o", tmp_path / "again", "--json")
    assert result.exit_code == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["film.mp4"]["status"] == "error" and "outside the 96x64" in records["film.mp4"]["error"]
    assert "\n" not in records["film.mp4"]["error"]
    assert records["other.mp4"]["status"] == "ok"  # the batch went on
    assert "with hints" not in result.stderr  # the summary counts the hinted files colorized, not the one that failed
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["other.mp4"]  # nothing left for the refused one


def test_an_object_past_the_last_frame_gets_a_note_and_a_bad_sidecar_stops_before_any_work(tmp_path, photos):
    folder = tmp_path / "films"
    folder.mkdir()
    clip_of(photos, folder / "film.mp4", frames=4)
    write(folder / "film.hints.json", [{"points": [point(*SPOT)], "frames": [1, 2]}, {"points": [point(*SPOT)], "frames": [4, 9]}])
    result = colorize(folder, "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.splitlines()[0])
    assert "hints section(s) 2 start after its last frame (4 frames, numbered from 0)" in record["note"]
    assert "hints section(s) 2 start after" in result.stderr

    write(folder / "film.hints.json", [{"points": [point(*SPOT)]}, {"points": [point(*SPOT)], "frames": [9, 3]}])
    clip_of(photos, folder / "other.mp4", frames=3)
    result = colorize(folder, "-o", tmp_path / "again")
    assert result.exit_code == 2 and "section 2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())  # nothing done


def test_too_many_points_from_the_command_line_are_one_line(tmp_path, photos):
    clip = clip_of(photos, tmp_path / "film.mp4", frames=2)
    many = write(tmp_path / "many.json", {"points": [point(1 + i % 90, 1 + i // 90) for i in range(MAX_POINTS)]})
    for target in (clip, tmp_path / "photo.png"):
        if target.suffix == ".png":
            from PIL import Image
            Image.fromarray(photos["coffee"]).convert("L").save(target)
        result = colorize(target, "-o", tmp_path / "out", "--hints", many, "--hint", "2,2,#00ff00")
        assert result.exit_code == 2 and f"at most {MAX_POINTS}" in result.output and "Traceback" not in result.output


def test_a_photos_sidecar_with_only_frame_ranges_gives_it_no_hints(tmp_path, photos):
    from PIL import Image

    Image.fromarray(photos["coffee"]).convert("L").save(tmp_path / "photo.png")
    write(tmp_path / "photo.hints.json", [{"points": [point(5, 5)], "frames": [100, 200]}, {"points": [point(6, 6)]}])
    result = colorize(tmp_path / "photo.png", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["hints"]["points"] == 1  # the object without frames
    write(tmp_path / "photo.hints.json", {"points": [point(5, 5)], "frames": [100, 200]})
    result = colorize(tmp_path / "photo.png", "-o", tmp_path / "out2", "--json")
    assert result.exit_code == 0 and "hints" not in json.loads(result.stdout.splitlines()[0])


def test_the_steadying_restarts_only_where_the_hints_in_force_change(photos):
    from recolor.inference import Colorizer
    from recolor.video.frames import FrameColorizer
    from recolor.video.stabilise import TemporalStabiliser

    class Counting(TemporalStabiliser):
        restarts = 0

        def restart(self) -> None:
            Counting.restarts += 1
            super().restart()

    blue = Hints((HintPoint(*SPOT, (32, 64, 255)),))
    schedule = HintSchedule((HintsFile(blue), HintsFile(Hints(), (2, 3)), HintsFile(blue, (5, 5))))
    frames = list(camera_frames([photos["coffee"]], "still", 7, (96, 64)))
    FrameColorizer(Colorizer.load(), Counting(), schedule).colorize(frames)
    # frame 0 (the hints come into force) and frames 5 and 6 (a second point, then gone); an empty section changes nothing
    assert Counting.restarts == 3
