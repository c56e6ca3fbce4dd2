"""Per-object diverse colorization (issue 27): regions, modes and draws on synthetic distributions,
the sampler on tiny effnet-unet networks (with and without hints) through the real load path, the
local-diversity metric, `recolor sample-diverse` with the default and `recolor models`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.ab_bins import gamut_bin_centres
from recolor.checkpoint import save_checkpoint
from recolor.cli import app
from recolor.diverse import DiverseSample, load_sampler
from recolor.inference import Colorizer
from recolor.metrics import local_diversity_share
from recolor.region_sampling import RegionSampler, draw_modes, region_modes, segment_regions, smoothing_kernel
from recolor.registry import get_model_spec

TINY = {"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64, "batch_size": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


# --- regions, modes, draws ------------------------------------------------------------------

def peaked(centres: torch.Tensor, colours: list[tuple[float, float]], masses: list[float]) -> torch.Tensor:
    """A distribution over the bins with the given masses on the bins nearest the given ab."""
    distribution = torch.zeros(len(centres))
    for (a, b), mass in zip(colours, masses):
        distribution[(centres - torch.tensor([a, b])).norm(dim=1).argmin()] += mass
    return distribution


def two_object_photo(centres: torch.Tensor):
    """16x16: a dark left half the model is sure is blue, a light right half it hesitates about
    (red 0.5, green 0.3, yellow 0.2)."""
    lightness = np.full((16, 16), 0.2)
    lightness[:, 8:] = 0.8
    sure = peaked(centres, [(-0.1, -0.4)], [1.0])
    unsure = peaked(centres, [(0.5, 0.3), (-0.5, 0.4), (0.0, 0.7)], [0.5, 0.3, 0.2])
    probabilities = torch.empty(len(centres), 16, 16)
    probabilities[:, :, :8] = sure[:, None, None]
    probabilities[:, :, 8:] = unsure[:, None, None]
    return lightness, probabilities


def test_regions_follow_the_objects_and_only_the_unsure_one_has_several_colours():
    centres = gamut_bin_centres()
    lightness, probabilities = two_object_photo(centres)
    pixels, regions = segment_regions(lightness, probabilities, smoothing_kernel(centres), superpixels=8, largest=0.6)
    assert pixels.max() + 1 >= 2
    assert len(np.unique(regions[:, :8])) == 1 and len(np.unique(regions[:, 8:])) == 1  # merged within, not across
    assert regions[0, 0] != regions[0, 15]
    modes = region_modes(probabilities, regions, centres, max_modes=4, min_mass=0.12)
    sure, unsure = modes[regions[0, 0]], modes[regions[0, 15]]
    assert len(sure[1]) == 1 and sure[1].tolist() == pytest.approx([1.0])
    assert unsure[1].tolist() == pytest.approx([0.5, 0.3, 0.2], abs=1e-4)
    assert unsure[0][0].tolist() == pytest.approx(centres[(centres - torch.tensor([0.5, 0.3])).norm(dim=1).argmin()].tolist())
    # a colour under min_mass is not drawn; the rest share its mass
    assert region_modes(probabilities, regions, centres, max_modes=4, min_mass=0.25)[regions[0, 15]][1].tolist() == pytest.approx([0.625, 0.375], abs=1e-4)


def test_topk_deals_each_regions_colours_in_proportion_and_starts_with_the_likeliest():
    masses = [torch.tensor([1.0]), torch.tensor([0.6, 0.4]), torch.tensor([0.5, 0.3, 0.2])]
    choices = draw_modes(masses, 10, "topk", torch.Generator().manual_seed(3))
    assert choices.shape == (10, 3)
    assert choices[:, 0].tolist() == [0] * 10  # sure: every sample agrees
    assert choices[0].tolist() == [0, 0, 0]  # the first sample: the likeliest colour everywhere
    assert torch.bincount(choices[:, 1], minlength=2).tolist() == [6, 4]
    assert torch.bincount(choices[:, 2], minlength=3).tolist() == [5, 3, 2]
    again = draw_modes(masses, 10, "topk", torch.Generator().manual_seed(3))
    assert torch.equal(choices, again)
    drawn = draw_modes(masses, 2000, "random", torch.Generator().manual_seed(0))
    assert (drawn[:, 2] == 2).double().mean() == pytest.approx(0.2, abs=0.03)


# --- the local diversity share --------------------------------------------------------------

def test_local_diversity_share_is_zero_for_a_tint_and_high_for_a_change_confined_to_objects():
    base = torch.rand(2, 1, 2, 32, 32) * 0.4 - 0.2
    tinted = torch.cat([base + torch.tensor([0.1 * i, -0.05 * i]).view(1, 1, 2, 1, 1) for i in range(4)], dim=1)
    assert local_diversity_share(tinted).tolist() == pytest.approx([0.0, 0.0], abs=1e-5)
    per_region = base.repeat(1, 3, 1, 1, 1)
    per_region[:, 1, :, :, :16] += torch.tensor([0.3, 0.1]).view(1, 2, 1, 1)  # sample 2: the left object changes
    per_region[:, 2, :, 20:, :] += torch.tensor([-0.2, 0.2]).view(1, 2, 1, 1)  # sample 3: the bottom one
    shares = local_diversity_share(per_region)
    assert (shares > 0.8).all()
    # half the photo changed scores 1, a smaller object more: 2 (1 - f)
    half = base.repeat(1, 2, 1, 1, 1)
    half[:, 1, :, :, :16] += 0.3
    assert local_diversity_share(half).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert torch.isnan(local_diversity_share(base.repeat(1, 2, 1, 1, 1))).all()  # identical samples: undefined


# --- the sampler on tiny networks -----------------------------------------------------------

def tiny_effnet(tmp_path_factory, hints: bool):
    spec = get_model_spec("effnet-unet")
    torch.manual_seed(1)
    network = spec.build(spec.architecture_config({**TINY, "hints": hints})).eval()
    if hints:  # live hint paths (they start at zero), and points that take hold where they are
        torch.nn.init.normal_(network.hint_head.weight, std=2.0)
        with torch.no_grad():
            network.hint_gain.fill_(0.2)  # x HINT_GAIN_SCALE: a sample's drawn colours show through its hints alone
    name = "hinted" if hints else "plain"
    return save_checkpoint(tmp_path_factory.mktemp(name) / f"{name}.safetensors", network.state_dict(), "effnet-unet",
                           spec.config({**TINY, "hints": hints}))


@pytest.fixture(scope="module")
def hinted_checkpoint(tmp_path_factory):
    return tiny_effnet(tmp_path_factory, hints=True)


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    return tiny_effnet(tmp_path_factory, hints=False)


@pytest.fixture(scope="module")
def grey(photos):
    return Image.fromarray(photos["coffee"]).convert("L").resize((200, 150))


@pytest.mark.parametrize("network", ["hinted", "plain"])
def test_samples_are_full_size_reproducible_with_a_seed_and_come_with_their_hints(network, hinted_checkpoint, plain_checkpoint, grey):
    sampler = load_sampler(hinted_checkpoint if network == "hinted" else plain_checkpoint, device="cpu")
    assert isinstance(sampler, RegionSampler) and sampler.colorizer.takes_hints == (network == "hinted")
    samples = sampler.sample(grey, k=4, seed=7, with_hints=True)
    assert len(samples) == 4 and all(isinstance(sample, DiverseSample) for sample in samples)
    assert all(sample.image.size == (200, 150) for sample in samples)
    pixels = [np.asarray(sample.image, dtype=int) for sample in samples]
    assert max(np.abs(pixels[0] - other).max() for other in pixels[1:]) > 10  # they differ
    again = sampler.sample(grey, k=4, seed=7)
    assert all(np.array_equal(np.asarray(image), p) for image, p in zip(again, pixels))
    other_seed = sampler.sample(grey, k=4, seed=8)
    assert any(not np.array_equal(np.asarray(image), p) for image, p in zip(other_seed, pixels))
    for sample in samples:  # the hints: points inside the photo, coloured #rrggbb
        assert sample.hints and all(0 <= x < 200 and 0 <= y < 150 and len(colour) == 7 and colour[0] == "#"
                                    for x, y, colour in sample.hints)
    assert [len(sample.hints) for sample in samples] == [len(samples[0].hints)] * 4  # the same spots, other colours
    assert any(a != b for a, b in zip(samples[0].hints, samples[1].hints))


def test_a_hint_network_sample_is_what_colorize_makes_of_its_hints(hinted_checkpoint, grey):
    """Fed back through the network alone (no logits written), a sample is exactly the default
    colorizer's answer to its hints: a person can keep it and refine it with more points."""
    colorizer = Colorizer.load(hinted_checkpoint, device="cpu", precision="fp32")
    sampler = RegionSampler(colorizer, condition=False)
    samples = sampler.sample(grey, k=3, seed=2, with_hints=True)
    for sample in samples:
        again = colorizer.colorize(grey, hints=sample.hints)
        assert np.abs(np.asarray(again, dtype=int) - np.asarray(sample.image, dtype=int)).max() <= 1


def test_a_photos_samples_depend_on_its_seed_alone_not_on_its_batch(plain_checkpoint, grey, photos):
    sampler = load_sampler(plain_checkpoint, device="cpu")
    first = sampler.colorizer.input_from_lightness(torch.from_numpy(np.asarray(grey, dtype=np.float32) / 2.55)[None])
    other = sampler.colorizer.input_from_lightness(torch.rand(1, 150, 200) * 100)
    alone = sampler.sample_ab(first[None], 3, seed=4)
    batched = sampler.sample_ab(torch.stack((other, first)), 3, seed=[9, 4])
    # (a batch of two convolves in another order: the same up to float rounding)
    assert torch.allclose(batched.ab[1], alone.ab[0], atol=1e-3) and batched.hints[1] == alone.hints[0]


def test_where_the_model_is_sure_every_sample_agrees(plain_checkpoint, grey):
    """A network sure of one colour everywhere (its head biased to one bin) gives k equal samples."""
    colorizer = Colorizer.load(plain_checkpoint, device="cpu", precision="fp32")
    final = colorizer.generator.output  # the bin logits' 1x1 convolution
    with torch.no_grad():
        final.weight.zero_()
        final.bias.zero_()
        final.bias[40] = 30.0
    images = RegionSampler(colorizer).sample(grey, k=3, seed=0)
    assert all(np.array_equal(np.asarray(images[0]), np.asarray(image)) for image in images[1:])


# --- the command line -----------------------------------------------------------------------

def test_sample_diverse_writes_k_samples_with_their_hints_and_a_seed_reproduces(tmp_path, hinted_checkpoint, grey):
    photo = tmp_path / "photo.png"
    grey.save(photo)
    runner = CliRunner()
    outputs = []
    for run in ("a", "b"):
        result = runner.invoke(app, ["sample-diverse", str(photo), "-k", "3", "--model", str(hinted_checkpoint), "-o",
                                     str(tmp_path / run), "--seed", "5", "--json", "-q", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs.append(result)
    record = json.loads(outputs[0].stdout.splitlines()[0])
    assert record["status"] == "ok" and len(record["labels"]) == 3 and len(record["hints"]) == 3
    assert all(len(point) == 3 and point[2].startswith("#") for points in record["hints"] for point in points)
    for i in (1, 2, 3):
        first, second = Image.open(tmp_path / "a" / f"photo_{i}.png"), Image.open(tmp_path / "b" / f"photo_{i}.png")
        assert first.size == (200, 150) and np.array_equal(np.asarray(first), np.asarray(second))


def test_models_says_which_give_per_object_samples():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    kinds = {row["name"]: row["diverse_samples"] for row in json.loads(result.stdout)}
    assert kinds["effnet-unet"] == "per object" and kinds["divcolor"] == "whole-photo tints"
    assert kinds["cvae-l2"] == "near-identical" and kinds["cnn-l1"] is None
