"""Hints (issue "Tell it the colour"): the hint tensors, the hint-taking network's seam, the hints
file, the API and, on the shipped default, that a point and a reference change the colours."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from recolor.ab_bins import distribution_modes, gamut_bin_centres
from recolor.checkpoint import load_checkpoint, save_checkpoint
from recolor.color import rgb_to_lab_normalized
from recolor.data import ColorPhotoDataset
from recolor.hints import (
    HintPoint, colour_ab, global_hint, global_hint_length, local_hint_image, parse_colour, simulate_global_hints,
    simulate_local_hints, training_point_counts,
)
from recolor.hintsfile import (
    HintsFileError, hints_document, parse_hint_option, read_hints_file, sidecar_path,
)
from recolor.inference import Colorizer
from serving import given_ab
from recolor.registry import get_model_spec
from recolor.training.loop import TrainSettings, Trainer, build_recipe

TINY = {"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64, "batch_size": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


# --- colours and hint tensors ----------------------------------------------------------------

def test_colours_parse_from_hex_or_tuples_and_bad_ones_are_refused():
    assert parse_colour("#c0392b") == (192, 57, 43) == parse_colour("C0392B") == parse_colour((192, 57, 43))
    for bad in ("#c0392", "red", "#gg0000", (256, 0, 0), (1.5, 0, 0), (1, 2), None, (True, 0, 0)):
        with pytest.raises(ValueError):
            parse_colour(bad)


def test_a_hint_keeps_hue_and_chroma_and_drops_lightness():
    dark, light = colour_ab((80, 20, 20)), colour_ab((200, 50, 50))  # one hue, two lightnesses
    assert dark[0] > 0.1 and light[0] > 0.1  # red: a* positive
    assert colour_ab((128, 128, 128)) == pytest.approx((0.0, 0.0), abs=1e-3)


def test_local_hint_image_writes_each_point_over_its_patch_at_the_network_size():
    points = [HintPoint(100, 50, (192, 57, 43)), HintPoint(399, 299, (46, 134, 193))]
    image = local_hint_image(points, photo_size=(400, 300), size=(64, 64), patch=3)
    assert image.shape == (3, 64, 64)
    row, column = int(50 / 300 * 64), int(100 / 400 * 64)
    assert image[2, row - 1:row + 2, column - 1:column + 2].eq(1).all()
    assert float(image[2].sum()) == 9 + 4  # the second patch is cut by the photo's corner
    assert image[0, row, column] == pytest.approx(colour_ab((192, 57, 43))[0])
    assert image[:, 0, 0].eq(0).all()


def test_simulated_points_carry_the_truths_patch_mean():
    torch.manual_seed(0)
    ab = torch.rand(2, 2, 32, 32) * 0.6 - 0.3
    hints = simulate_local_hints(ab, [3, 0], patch_sides=[4])
    assert hints[1].eq(0).all()  # no points for the second photo
    mask = hints[0, 2] > 0
    assert 16 <= int(mask.sum()) <= 48
    # every hinted pixel holds the mean of a 4x4 window of the truth: within the truth's range there
    assert float(hints[0, :2][:, mask].abs().max()) <= 0.3
    assert not torch.equal(hints[0, :2][:, mask], ab[0][:, mask])  # patch means, not the pixels


def test_training_point_counts_follow_zhangs_geometric_law():
    counts = np.array(training_point_counts(40000, generator=torch.Generator().manual_seed(0)))
    assert abs((counts == 0).mean() - 1 / 8) < 0.01
    assert abs(counts.mean() - 7) < 0.2


def test_global_hint_is_a_histogram_with_flags_and_zero_when_absent():
    ab = torch.zeros(2, 16, 16)
    ab[0] = 0.3
    vector = global_hint(ab)
    bins = len(gamut_bin_centres())
    assert vector.shape == (global_hint_length(),) and vector[:bins].sum() == pytest.approx(1.0)
    assert vector[bins] == 1 and vector[bins + 2] == 1 and vector[bins + 1] == pytest.approx(0.3)
    assert global_hint(None).eq(0).all()
    simulated = simulate_global_hints(torch.rand(64, 2, 8, 8) - 0.5, share=0.5)
    present = simulated[:, bins]
    assert 0.2 < float(present.mean()) < 0.8 and simulated[present == 0, :bins].eq(0).all()


def test_distribution_modes_find_two_peaks_and_share_all_the_mass():
    centres = gamut_bin_centres()
    wanted = torch.tensor([[0.4, 0.3], [-0.2, -0.35]])
    target = centres[torch.cdist(wanted, centres).argmin(dim=1)]  # two in-gamut bins far apart
    distances = torch.cdist(centres, target)
    probabilities = 0.7 * torch.softmax(-distances[:, 0] * 40, 0) + 0.3 * torch.softmax(-distances[:, 1] * 40, 0)
    modes, masses = distribution_modes(probabilities, centres, k=5)
    assert float(masses.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(modes[0], target[0], atol=0.05) and torch.allclose(modes[1], target[1], atol=0.05)
    assert masses[0] > masses[1] > masses[2:].sum()
    _, two = distribution_modes(probabilities, centres, k=2)  # with two modes, each holds its own peak's mass
    assert two.tolist() == pytest.approx([0.7, 0.3], abs=0.01)


# --- the network's seam -----------------------------------------------------------------------

def tiny_networks():
    spec = get_model_spec("effnet-unet")
    torch.manual_seed(0)
    plain = spec.build(spec.architecture_config({**TINY, "hints": False})).eval()
    hinted = spec.build(spec.architecture_config({**TINY, "hints": True})).eval()
    return plain, hinted


def test_zero_started_hint_channels_reproduce_the_plain_network_exactly():
    plain, hinted = tiny_networks()
    result = hinted.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all(key.startswith(hinted.zero_started) for key in result.missing_keys)
    lightness, ab = torch.rand(2, 1, 64, 64) * 2 - 1, torch.rand(2, 2, 64, 64) * 0.6 - 0.3
    with torch.no_grad():
        expected = plain(lightness)
        assert torch.equal(hinted(lightness), expected)
        assert torch.equal(hinted(lightness, simulate_local_hints(ab, [5, 9]), simulate_global_hints(ab, 1.0)), expected)
        # and the seam is live: once the zero convolutions move, the hints change the output
        torch.nn.init.normal_(hinted.hint_head.weight, std=1.0)
        assert not torch.equal(hinted(lightness, simulate_local_hints(ab, [5, 9]), None), expected)


def test_a_hint_network_fine_tunes_from_a_plain_file_and_starts_where_it_was(tmp_path, tiny_photo_folder):
    spec = get_model_spec("effnet-unet")
    config = spec.config({**TINY, "hints": False})
    plain = build_recipe("effnet-unet", config, torch.device("cpu")).generator
    start = save_checkpoint(tmp_path / "plain.safetensors", plain.state_dict(), "effnet-unet", config)
    recipe = build_recipe("effnet-unet", spec.config({**TINY, "hints": True, "lr": 1e-3}), torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=64, train=True)
    settings = TrainSettings(out_dir=tmp_path / "run", batch_size=4, workers=0, progress=False, samples=0, max_steps=3, precision="fp32",
                             init_from=start)
    Trainer(recipe, data, None, settings).fit()
    trained = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert trained.config["hints"] is True
    # the simulated hints reached the zero-started head: it moved from zero
    assert float(trained.tensors["hint_head.weight"].float().abs().max()) > 0
    assert torch.allclose(trained.tensors["encoder.conv_stem.weight"].float(), plain.state_dict()["encoder.conv_stem.weight"], atol=1e-3)


# --- the hints file and option ------------------------------------------------------------------

def write(path, document) -> None:
    path.write_text(document if isinstance(document, str) else json.dumps(document))


def test_hints_file_round_trips_and_resolves_the_reference_beside_it(tmp_path):
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "ref.jpg")
    path = tmp_path / "photo.hints.json"
    write(path, {"points": [{"x": 120, "y": 80, "color": "#c0392b"}, {"x": 1.5, "y": 2, "color": "#2E86C1"}], "reference": "ref.jpg"})
    parsed = read_hints_file(path)
    assert parsed.hints.points == (HintPoint(120, 80, (192, 57, 43)), HintPoint(1.5, 2, (46, 134, 193)))
    assert parsed.hints.reference == tmp_path / "ref.jpg" and parsed.frames is None
    assert hints_document(parsed.hints, "ref.jpg") == json.loads(path.read_text()) | {
        "points": [{"x": 120, "y": 80, "color": "#c0392b"}, {"x": 1.5, "y": 2, "color": "#2e86c1"}]}
    assert sidecar_path(tmp_path / "box" / "scan 01.tif") == tmp_path / "box" / "scan 01.hints.json"


@pytest.mark.parametrize("document, complaint", [
    ("{not json", "not valid JSON"),
    ([1, 2], "a list of hint sections is for a video"),
    ({"points": [], "colour": "#fff"}, "unknown key 'colour'"),
    ({"points": [{"x": 1, "y": 2, "color": "#ff0000", "size": 3}]}, "point 1: unknown key 'size'"),
    ({"points": [{"x": 1, "color": "#ff0000"}]}, "point 1: missing 'y'"),
    ({"points": [{"x": 1, "y": 2, "color": "red"}]}, "point 1: colour 'red'"),
    ({"points": [{"x": "1", "y": 2, "color": "#ff0000"}]}, "point 1: hint"),
    ({"points": [{"x": float("nan"), "y": 2, "color": "#ff0000"}]}, "finite"),
    ({"points": {"x": 1}}, '"points" must be a list'),
    ({"reference": "missing.jpg"}, "does not exist"),
    ({"frames": [5, 2]}, '"frames" must be'),
])
def test_every_hints_file_problem_is_one_line_naming_the_file(tmp_path, document, complaint):
    path = tmp_path / "bad.hints.json"
    write(path, document)
    with pytest.raises(HintsFileError) as failure:
        read_hints_file(path)
    message = str(failure.value)
    assert complaint in message and str(path) in message and "\n" not in message


def test_hint_option_parses_x_y_colour_and_refuses_the_rest():
    assert parse_hint_option("120,80,#c0392b") == HintPoint(120, 80, (192, 57, 43))
    for bad in ("120,80", "a,80,#c0392b", "1,2,#zzzzzz", "1,2,3,#c0392b"):
        with pytest.raises(ValueError, match="--hint"):
            parse_hint_option(bad)


# --- the API --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_hint_colorizer(tiny_hint_checkpoint):
    return Colorizer.load(tiny_hint_checkpoint)


def test_api_takes_points_and_a_reference_and_checks_them(tiny_hint_colorizer, photos):
    grey = Image.fromarray(photos["astronaut"]).convert("L")
    plain = np.asarray(tiny_hint_colorizer.colorize(grey), dtype=int)
    pointed = np.asarray(tiny_hint_colorizer.colorize(grey, hints=[(100, 100, "#2e86c1"), (300, 40, (192, 57, 43))]), dtype=int)
    referenced = np.asarray(tiny_hint_colorizer.colorize(grey, reference=Image.fromarray(photos["coffee"])), dtype=int)
    assert pointed.shape == plain.shape == (512, 512, 3)
    assert np.abs(pointed - plain).max() > 0 and np.abs(referenced - plain).max() > 0
    with pytest.raises(ValueError, match="outside the 512x512 photo"):
        tiny_hint_colorizer.colorize(grey, hints=[(512, 10, "#ffffff")])
    with pytest.raises(ValueError, match="reference"):
        tiny_hint_colorizer.colorize(grey, reference="no/such/reference.jpg")
    with pytest.raises(ValueError, match="one photo"):
        tiny_hint_colorizer.colorize([grey, grey], hints=[(1, 1, "#ffffff")])


def test_models_without_hints_refuse_them_in_one_line(photos):
    colorizer = Colorizer.load("pix2pix")
    with pytest.raises(ValueError, match="takes no hints") as failure:
        colorizer.colorize(Image.fromarray(photos["coffee"]).convert("L"), hints=[(1, 1, "#ffffff")])
    assert "\n" not in str(failure.value)
    with pytest.raises(ValueError, match="no suggestions"):
        colorizer.suggest(Image.fromarray(photos["coffee"]).convert("L"), 5, 5)


def test_suggestions_are_distinct_colours_whose_probabilities_sum_to_one(tiny_hint_colorizer, photos):
    grey = Image.fromarray(photos["chelsea"]).convert("L")
    suggestions = tiny_hint_colorizer.suggest(grey, 200, 150, k=4)
    assert 1 <= len(suggestions) <= 4 and len({colour for colour, _ in suggestions}) == len(suggestions)
    assert math.isclose(sum(p for _, p in suggestions), 1.0, abs_tol=1e-4)
    assert [p for _, p in suggestions] == sorted((p for _, p in suggestions), reverse=True)
    assert all(parse_colour(colour) for colour, _ in suggestions)
    with pytest.raises(ValueError, match="outside"):
        tiny_hint_colorizer.suggest(grey, 10_000, 5)


# --- the shipped default ----------------------------------------------------------------------

def ab_near(image: Image.Image, x: int, y: int, radius: int = 6) -> np.ndarray:
    rgb = torch.from_numpy(np.asarray(image.convert("RGB"))[y - radius:y + radius, x - radius:x + radius].copy())
    return rgb_to_lab_normalized(rgb.permute(2, 0, 1)[None].float() / 255.0)[1][0].mean(dim=(1, 2)).numpy()


def test_shipped_default_takes_a_point_and_colours_near_it_far_more_than_far_away(photos):
    colorizer = Colorizer.load()
    assert colorizer.takes_hints
    grey = Image.fromarray(photos["astronaut"]).convert("L")
    plain = colorizer.colorize(grey)
    blue = colorizer.colorize(grey, hints=[(160, 330, "#1f4fd0")])  # on the suit
    target = given_ab(grey, 160, 330, "#1f4fd0")
    near_before, near_after = ab_near(plain, 160, 330), ab_near(blue, 160, 330)
    assert np.linalg.norm(near_after - target) < 0.5 * np.linalg.norm(near_before - target)
    far_change = np.abs(ab_near(blue, 440, 60) - ab_near(plain, 440, 60)).sum()  # the flag, far away
    assert far_change < 0.25 * np.abs(near_after - near_before).sum()


def hue_degrees(ab) -> float:
    return math.degrees(math.atan2(float(ab[1]), float(ab[0])))


def test_shipped_default_gives_a_pickers_pure_colours_their_own_hue(photos):
    """A colour picker's pure blue on a light grey lies far outside sRGB at that lightness; taken
    as given, the network (trained on real photos' colours) turned it yellow. Each pure colour,
    on spots from light to dark, comes out within 30 degrees of its own hue."""
    colorizer = Colorizer.load()
    grey = Image.fromarray(photos["astronaut"]).convert("L")
    for x, y in ((100, 100), (250, 400), (60, 450), (300, 80)):  # L* about 73, 32, 51, 43
        for colour in ((0, 0, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0), (0, 255, 255)):
            out = ab_near(colorizer.colorize(grey, hints=[(x, y, colour)]), x, y, radius=3)
            off = abs((hue_degrees(out) - hue_degrees(colour_ab(colour)) + 180) % 360 - 180)
            assert off < 30 and np.hypot(*out) > 0.1, (x, y, colour, out)


def test_a_points_colour_is_cut_into_the_gamut_at_the_photos_lightness():
    from skimage.color import lab2xyz, xyz2rgb  # noqa: F401 (skimage's own formulas as the reference)
    from skimage.color.colorconv import rgb_from_xyz

    from recolor.cie import ab_within_gamut
    from recolor.hints import HINT_CHROMA_SHARE, points_at_lightness

    lightness = np.array([72.6, 85.0, 30.0, 90.0, 50.0])
    given = np.array([[59.0, 77.0, -84.0, 98.0, 5.0], [-95.0, 58.0, 80.0, -61.0, 5.0]])
    edge = ab_within_gamut(lightness, given)

    def linear(ab):
        lab = np.stack((lightness, *ab), axis=-1)[None]
        return lab2xyz(lab)[0] @ rgb_from_xyz.T

    assert np.all(linear(edge) > -1e-4) and np.all(linear(edge) < 1 + 1e-4)  # on or inside the gamut
    cut = np.hypot(*edge) < np.hypot(*given) - 1e-6
    outside = linear(edge * 1.03)
    assert np.all(((outside < -1e-4) | (outside > 1 + 1e-4)).any(axis=1)[cut])  # on its edge where it was cut
    assert cut[:4].all() and not cut[4]  # a pale colour stays as it is
    np.testing.assert_allclose(np.arctan2(edge[1], edge[0]), np.arctan2(given[1], given[0]))  # the hue is kept

    plane = np.full((1, 40, 60), 72.6, dtype=np.float32)
    person, simulated = HintPoint(10, 20, (32, 64, 255)), HintPoint(30, 20, (32, 64, 255), ab=(0.5, -0.8))
    fitted, kept = points_at_lightness([person, simulated], (60, 40), plane)
    assert kept == simulated  # the truth's own ab (evaluate --hints) is used as it is
    full = ab_within_gamut(np.array([72.6]), np.array(colour_ab(person.rgb))[:, None] * 110)[:, 0] / 110
    np.testing.assert_allclose(fitted.ab, full * HINT_CHROMA_SHARE, rtol=1e-6)


def test_shipped_default_moves_towards_a_reference_photos_colours(photos):
    """The output's ab histogram shares more with the reference's when the reference is given
    (benchmarks/hints.py measures the same on 100 pairs of photos/val)."""
    from recolor.ab_bins import bin_histogram

    def histogram(image) -> torch.Tensor:
        rgb = torch.from_numpy(np.asarray(Image.fromarray(np.asarray(image)).convert("RGB").resize((64, 64))).copy())
        counts = bin_histogram(rgb_to_lab_normalized(rgb.permute(2, 0, 1)[None].float() / 255)[1], gamut_bin_centres())
        return counts / counts.sum()

    colorizer = Colorizer.load()
    gains = []
    for photo in photos:
        for reference in photos:
            if reference != photo:
                grey = Image.fromarray(photos[photo]).convert("L")
                target = histogram(photos[reference])
                plain = float(torch.minimum(histogram(colorizer.colorize(grey)), target).sum())
                guided = float(torch.minimum(histogram(colorizer.colorize(grey, reference=Image.fromarray(photos[reference]))), target).sum())
                gains.append(guided - plain)
    # a property of the whole: a reference already close to the photo's own colours may gain nothing
    assert np.mean(gains) > 0.1 and sum(gain > 0 for gain in gains) >= 4, gains


def test_a_reference_file_is_read_once_while_unchanged_and_again_when_it_changes(tmp_path, monkeypatch):
    import os

    import recolor.inference as inference

    reference = tmp_path / "ref.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(reference)
    reads = []
    real_open = inference.as_pil_image
    monkeypatch.setattr(inference, "as_pil_image", lambda photo: reads.append(photo) or real_open(photo))
    red = Colorizer.reference_hint(reference)
    assert torch.equal(Colorizer.reference_hint(reference), red) and len(reads) == 1  # read once
    Image.new("RGB", (32, 32), (30, 30, 200)).save(reference)
    os.utime(reference, ns=(reference.stat().st_atime_ns, reference.stat().st_mtime_ns + 10**9))
    blue = Colorizer.reference_hint(reference)
    assert len(reads) == 2 and not torch.equal(blue, red)  # changed on disk: read again
