"""`recolor colorize` with hints: --hint, --hints, --reference and NAME.hints.json sidecars."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from recolor.cli import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def album(tmp_path, photos):
    """Two grey photos in a folder; the first with a sidecar, a reference beside them."""
    folder = tmp_path / "album"
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).convert("L").resize((256, 256)).save(folder / "astro.png")
    Image.fromarray(photos["coffee"]).convert("L").resize((200, 150)).save(folder / "coffee.png")
    Image.fromarray(photos["chelsea"]).save(tmp_path / "ref.png")
    return folder


def colorize(*args):
    return runner.invoke(app, ["colorize", *map(str, args)])


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=int)


def test_a_sidecar_hints_its_own_photo_only_and_the_summary_counts_it(tmp_path, album, tiny_hint_checkpoint):
    plain = colorize(album, "-o", tmp_path / "plain", "--model", tiny_hint_checkpoint, "-q")
    assert plain.exit_code == 0, plain.output
    (album / "astro.hints.json").write_text(json.dumps({"points": [{"x": 60, "y": 60, "color": "#1f4fd0"}]}))
    hinted = colorize(album, "-o", tmp_path / "hinted", "--model", tiny_hint_checkpoint, "--json", "-q")
    assert hinted.exit_code == 0, hinted.output
    assert "2 colorized (1 with hints)" in hinted.output
    assert "not images" not in hinted.output  # the sidecar is not a stray file
    records = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line) for line in hinted.stdout.splitlines() if line.startswith("{")}
    assert records["astro.png"]["hints"] == {"points": 1, "reference": None} and "hints" not in records["coffee.png"]
    assert np.abs(pixels(tmp_path / "hinted" / "astro.png") - pixels(tmp_path / "plain" / "astro.png")).max() > 0
    assert np.array_equal(pixels(tmp_path / "hinted" / "coffee.png"), pixels(tmp_path / "plain" / "coffee.png"))


def test_hint_options_and_a_reference_change_the_colours(tmp_path, album, tiny_hint_checkpoint):
    photo = album / "coffee.png"
    runs = {"plain": [], "point": ["--hint", "100,75,#c0392b"], "reference": ["--reference", tmp_path / "ref.png"]}
    for name, options in runs.items():
        result = colorize(photo, "-o", tmp_path / name, "--model", tiny_hint_checkpoint, "-q", *options)
        assert result.exit_code == 0, result.output
    plain = pixels(tmp_path / "plain" / "coffee.png")
    assert np.abs(pixels(tmp_path / "point" / "coffee.png") - plain).max() > 0
    assert np.abs(pixels(tmp_path / "reference" / "coffee.png") - plain).max() > 0


@pytest.mark.parametrize("options, complaint", [
    (["--hint", "10,10"], "expected x,y,#rrggbb"),
    (["--hint", "10,10,#12345"], "#rrggbb"),
    (["--hint", "500,10,#123456"], "outside the 200x150 photo"),
    (["--reference", "missing.jpg"], "no such file"),
    (["--hints", "missing.json"], "cannot read hints"),
])
def test_a_bad_hint_is_one_line_and_exit_2_before_any_work(tmp_path, album, tiny_hint_checkpoint, options, complaint):
    result = colorize(album / "coffee.png", "-o", tmp_path / "out", "--model", tiny_hint_checkpoint, "-q", *options)
    assert result.exit_code == 2 and complaint in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1 and "Traceback" not in result.output
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_a_malformed_sidecar_stops_the_run_before_any_work_naming_it(tmp_path, album, tiny_hint_checkpoint):
    (album / "coffee.hints.json").write_text('{"points": [{"x": 1, "y": 1, "colour": "#ffffff"}]}')
    result = colorize(album, "-o", tmp_path / "out", "--model", tiny_hint_checkpoint, "-q")
    assert result.exit_code == 2 and "coffee.hints.json" in result.output and "unknown key 'colour'" in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.png"))


def test_a_model_without_hints_refuses_options_and_sets_sidecars_aside(tmp_path, album, tiny_pix2pix_checkpoint):
    refused = colorize(album / "coffee.png", "-o", tmp_path / "a", "--model", tiny_pix2pix_checkpoint, "--hint", "1,1,#ffffff", "-q")
    assert refused.exit_code == 2 and "takes no hints" in refused.output
    (album / "coffee.hints.json").write_text(json.dumps({"points": [{"x": 1, "y": 1, "color": "#ffffff"}]}))
    done = colorize(album, "-o", tmp_path / "b", "--model", tiny_pix2pix_checkpoint, "-q")
    assert done.exit_code == 0 and "1 hints sidecar(s) ignored" in done.output and "2 colorized" in done.output
