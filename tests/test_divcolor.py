"""Paper 004: the colour-field VAE losses, the MDN, diverse sampling, the diversity metrics, the CLI."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.checkpoint import load_checkpoint
from recolor.cli import app
from recolor.data import ColorPhotoDataset
from recolor.diverse import kmeans
from recolor.evaluate import EvalSettings, evaluate
from recolor.imageio import decode_photo
from recolor.losses import kl_divergence_normal
from recolor.metrics import error_of_best, per_pixel_variance
from recolor.registry import get_model_spec
from recolor.training.divcolor import (
    colourfulness_loss,
    colourfulness_loss_weights,
    gradient_loss,
    mahalanobis_loss,
    mdn_closest_component_loss,
    principal_components,
)
from recolor.training.loop import TrainSettings, Trainer, build_recipe

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one intra-op thread

TINY = {
    "image_size": 64, "width": 8, "latent_dim": 8, "mdn_channels": [8, 8, 8, 8, 8], "mdn_hidden": 16,
    "pca_components": 4, "stats_images": 24, "batch_size": 4,
}


# --- decoder losses against hand computations ---------------------------------------------

def test_colourfulness_loss_weights_each_pixel_by_its_true_colours_bin():
    bin_weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # 2 x 2 bins: a < 0 / a >= 0, b < 0 / b >= 0
    target = torch.tensor([[[[-0.5, 0.5]], [[0.5, -0.5]]]])  # pixel 0: (a, b) = (-0.5, 0.5), pixel 1: (0.5, -0.5)
    predicted = torch.zeros_like(target)
    # pixel 0 -> bin (0, 1) weight 2, pixel 1 -> bin (1, 0) weight 3; squared error 0.5 at each
    assert colourfulness_loss(predicted, target, bin_weights).item() == pytest.approx(2 * 0.5 + 3 * 0.5)
    # per-image sum, batch mean: a second image with zero error halves it
    both = colourfulness_loss(torch.cat((predicted, target)), torch.cat((target, target)), bin_weights)
    assert both.item() == pytest.approx(2.5 / 2)


def test_mahalanobis_loss_by_hand_and_against_the_papers_literal_formula():
    components = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])  # flattened (2, 1, 2) fields: D = 4
    variances = torch.tensor([4.0, 1.0])
    target = torch.tensor([2.0, 1.0, 3.0, 1.0]).reshape(1, 2, 1, 2)
    predicted = torch.zeros_like(target)
    # along: 2^2/4 + 1^2/1 = 2; residual (0, 0, 3, 1): (9 + 1) / sigma_2^2 = 10
    assert mahalanobis_loss(predicted, target, components, variances).item() == pytest.approx(12.0)

    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(8, 3, generator=generator)).Q.t()  # 3 orthonormal rows in R^8
    sigma2 = torch.tensor([3.0, 2.0, 0.5])
    c, f = torch.randn(2, 8, generator=generator), torch.randn(2, 8, generator=generator)
    literal = []
    for ci, fi in zip(c, f):
        along = sum(((ci - fi) @ basis[k]) ** 2 / sigma2[k] for k in range(3))
        c_res = ci - sum((ci @ basis[k]) * basis[k] for k in range(3))
        f_res = fi - sum((fi @ basis[k]) * basis[k] for k in range(3))
        literal.append(along + (c_res - f_res).pow(2).sum() / sigma2[-1])
    ours = mahalanobis_loss(f.reshape(2, 2, 2, 2), c.reshape(2, 2, 2, 2), basis, sigma2)
    assert ours.item() == pytest.approx(float(torch.stack(literal).mean()), rel=1e-5)


def test_gradient_loss_by_hand():
    target = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).reshape(1, 1, 2, 2)
    # horizontal differences 1 and 2, vertical 2 and 3: 1 + 4 + 4 + 9
    assert gradient_loss(torch.zeros_like(target), target).item() == pytest.approx(18.0)
    # a constant offset has the same gradients: no loss
    assert gradient_loss(target + 0.3, target).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_divergence_by_hand():
    # the encoder's KL term is the shared recolor.losses.kl_divergence_normal
    assert kl_divergence_normal(torch.zeros(2, 3), torch.zeros(2, 3)).item() == pytest.approx(0.0)
    # mean 1, variance e: 0.5 * (1 + e - 1 - 1) per dimension, 3 dimensions
    assert kl_divergence_normal(torch.ones(1, 3), torch.ones(1, 3)).item() == pytest.approx(1.5 * (math.e - 1))


def test_statistics_pca_and_colourfulness_loss_weights():
    generator = torch.Generator().manual_seed(1)
    directions = torch.linalg.qr(torch.randn(8, 2, generator=generator)).Q.t()
    data = torch.randn(500, 1, generator=generator) * 3 * directions[0] + torch.randn(500, 1, generator=generator) * directions[1]
    components, variances = principal_components(data, 3)
    assert abs(float(components[0] @ directions[0])) == pytest.approx(1.0, abs=1e-2)
    assert variances[0].item() == pytest.approx(9.0, rel=0.2) and variances[1].item() == pytest.approx(1.0, rel=0.2)
    assert components[2].abs().max() == 0 and variances[2] == variances[1]  # rank 2: the third is empty
    # 1/H weights: rare colours weigh more, and the mean weight over the training pixels is 1
    fields = torch.zeros(1, 2, 10, 10)
    fields[0, :, 0, :3] = 0.5  # 3 of 100 pixels are colourful, the rest grey
    weights = colourfulness_loss_weights(fields, bins=4, sigma=0.0, uniform_mix=0.0)
    grey, colourful = weights[2, 2], weights[3, 3]
    assert (colourful / grey).item() == pytest.approx(0.97 / 0.03, rel=1e-4)  # 1/H
    assert (0.97 * grey + 0.03 * colourful).item() == pytest.approx(1.0, rel=1e-5)
    # mixed with the uniform distribution over the 2 occupied bins (Zhang et al.'s lambda = 0.5)
    mixed = colourfulness_loss_weights(fields, bins=4, sigma=0.0, uniform_mix=0.5)
    assert (mixed[3, 3] / mixed[2, 2]).item() == pytest.approx((0.5 * 0.97 + 0.25) / (0.5 * 0.03 + 0.25), rel=1e-4)


# --- the MDN ------------------------------------------------------------------------------

def test_mdn_loss_optimises_only_the_closest_component():
    z = torch.zeros(1, 2)
    means = torch.tensor([[[3.0, 0.0], [1.0, 0.0]]], requires_grad=True)
    logits = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)  # weights 0.25, 0.75
    loss = mdn_closest_component_loss(z, means, torch.log_softmax(logits, dim=1), variance=0.1)
    assert loss.item() == pytest.approx(-math.log(0.75) + 1.0 / 0.2, rel=1e-5)
    loss.backward()
    assert means.grad[0, 0].abs().sum() == 0 and means.grad[0, 1].abs().sum() > 0


def tiny_net(feature_checkpoint, **overrides):
    spec = get_model_spec("divcolor")
    config = spec.config({**TINY, "feature_ngf": 8, "feature_norm": "batch", "feature_checkpoint": str(feature_checkpoint), **overrides})
    return spec.build(config).eval()


def set_mixture(net, means, logits):
    """Make the MDN output fixed means and mixture logits whatever the input."""
    last = net.mdn.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat((means.flatten(), logits)))


def test_topk_sampling_orders_means_by_mixture_weight(tiny_pix2pix_checkpoint):
    torch.manual_seed(0)
    net = tiny_net(tiny_pix2pix_checkpoint)
    means = torch.randn(8, 8)
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0, -1.0, 0.5, -2.0, 1.5])
    set_mixture(net, means, logits)
    lightness = torch.rand(2, 1, 64, 64) * 2 - 1
    ab, weights = net.sample(lightness, 3, "topk")
    order = [1, 3, 7]  # logits 3 > 2 > 1.5
    assert torch.allclose(weights[0], torch.softmax(logits, 0)[order])
    assert torch.allclose(ab[0], net.decode(means[order][None], lightness[:1])[0], atol=1e-5)
    assert torch.allclose(net(lightness)[0], ab[0, 0], atol=1e-5)  # forward = the heaviest component
    with pytest.raises(ValueError):
        net.sample(lightness, 9, "topk")


def test_random_sampling_is_reproducible_per_photo(tiny_pix2pix_checkpoint):
    torch.manual_seed(0)
    net = tiny_net(tiny_pix2pix_checkpoint)
    lightness = torch.rand(2, 1, 64, 64) * 2 - 1
    first, _ = net.sample(lightness, 6, "random", seeds=[5, 5])
    again, _ = net.sample(lightness, 6, "random", seeds=[5, 5])
    other, _ = net.sample(lightness, 6, "random", seeds=[6, 6])
    alone, _ = net.sample(lightness[1:], 6, "random", seeds=[5])
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert torch.allclose(first[1], alone[0], atol=1e-5)  # independent of the rest of the batch
    assert (first[0, 0] - first[0, 1]).abs().mean() > 0  # the draws differ


def test_ours_plus_skip_decoder_uses_the_grey_image(tiny_pix2pix_checkpoint):
    torch.manual_seed(0)
    net = tiny_net(tiny_pix2pix_checkpoint, grey_skip=True)
    z = torch.randn(1, 1, 8)
    dark, bright = -torch.ones(1, 1, 64, 64), torch.ones(1, 1, 64, 64) * 0.5
    assert (net.decode(z, dark) - net.decode(z, bright)).abs().mean() > 1e-4


# --- diversity metrics and clustering -----------------------------------------------------

def test_error_of_best_and_variance_by_hand():
    samples = torch.tensor([[0.0, 0.0], [0.3, 0.4]]).reshape(1, 2, 2, 1, 1)
    target = torch.tensor([0.3, 0.2]).reshape(1, 2, 1, 1)
    # errors: sample 1 (0.3 + 0.2) / 2 = 0.25, sample 2 (0 + 0.2) / 2 = 0.1
    assert error_of_best(samples, target).item() == pytest.approx(0.1)
    # variances over the 2 samples: a 0.15^2, b 0.2^2 -> mean 0.03125
    assert per_pixel_variance(samples).item() == pytest.approx(0.03125)
    same = samples[:, :1].expand(1, 3, 2, 1, 1)
    assert per_pixel_variance(same).item() == 0


def test_kmeans_finds_separated_clusters_largest_first():
    generator = torch.Generator().manual_seed(0)
    small = torch.randn(10, 4, generator=generator) * 0.01 + 5
    large = torch.randn(30, 4, generator=generator) * 0.01 - 5
    centres, sizes = kmeans(torch.cat((small, large)), 2, seed=3)
    assert sizes.tolist() == [30, 10]
    assert torch.allclose(centres[0], large.mean(0), atol=1e-4) and torch.allclose(centres[1], small.mean(0), atol=1e-4)


# --- training, checkpoint, sampling through the CLI ---------------------------------------

@pytest.fixture(scope="module")
def tiny_divcolor(tmp_path_factory, tiny_photo_folder, tiny_pix2pix_checkpoint):
    """A divcolor run of a few steps through the real Trainer; returns its run folder."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("divcolor_run")
    spec = get_model_spec("divcolor")
    config = spec.config({**TINY, "feature_checkpoint": str(tiny_pix2pix_checkpoint)})
    recipe = build_recipe("divcolor", config, torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=64)
    settings = TrainSettings(out_dir=out, epochs=1, batch_size=4, workers=0, max_steps=4, progress=False, samples=2)
    Trainer(recipe, data, None, settings).fit()
    return out


def test_training_stores_statistics_and_the_grey_encoder(tiny_divcolor, tiny_pix2pix_checkpoint):
    records = [json.loads(line) for line in (tiny_divcolor / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r[key]) for r in records for key in ("hist", "mah", "grad", "kl", "mdn", "recon"))
    checkpoint = load_checkpoint(tiny_divcolor / "last.safetensors")
    assert checkpoint.config["feature_ngf"] == 8 and checkpoint.config["feature_norm"] == "batch"
    statistics = checkpoint.sub_state("statistics")
    assert statistics["pca_components"].shape == (4, 2 * 64 * 64) and statistics["images"].item() == 24
    assert torch.allclose(statistics["pca_components"] @ statistics["pca_components"].t(), torch.eye(4), atol=1e-4)
    assert statistics["pca_variances"][0] >= statistics["pca_variances"][-1] > 0
    # the frozen pix2pix encoder weights were copied in, and did not change during training
    pix2pix = load_checkpoint(tiny_pix2pix_checkpoint).tensors
    exported = load_checkpoint(tiny_divcolor / "model.safetensors").tensors
    for key in ("down.0.0.weight", "down.3.1.weight", "down.3.2.running_var"):
        assert torch.equal(exported[f"features.{key}"], pix2pix[key])


def test_evaluate_scores_divcolors_diversity(tiny_divcolor, tiny_photo_folder):
    """Paper 004's Table 3 as `recolor evaluate --metric diversity` measures it, on divcolor's mixture."""
    result = evaluate(EvalSettings(data=tiny_photo_folder, models=[str(tiny_divcolor / "model.safetensors")], metrics=["diversity"],
                                   size=64, limit=3, samples=5, device="cpu", report_samples=0))
    values = result.rows[-1].values
    assert result.info["photos"] == 3 and 0 < values["error_of_best"] < 1 and values["variance"] > 0
    assert result.row("grey").values["variance"] is None  # a deterministic row draws nothing


def sample_diverse(*args):
    return runner.invoke(app, ["sample-diverse", *map(str, args)])


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory, photos):
    path = tmp_path_factory.mktemp("diverse_in") / "coffee.png"
    Image.fromarray(photos["coffee"]).resize((150, 100)).convert("L").save(path)
    return path


def test_cli_writes_k_different_full_size_colorizations_and_a_sheet(tmp_path, tiny_divcolor, photo_path):
    out = tmp_path / "out"
    result = sample_diverse(photo_path, "-k", 5, "--model", tiny_divcolor / "last.safetensors", "-o", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][0])
    assert record["status"] == "ok" and len(record["labels"]) == 5
    paths = [out / f"coffee_{i}.png" for i in range(1, 6)]
    assert sorted(p.name for p in out.iterdir()) == sorted([p.name for p in paths] + ["coffee_sheet.png"])
    pictures = []
    for path in paths:
        with Image.open(path) as image:
            assert image.size == (150, 100) and image.mode == "RGB"
            pictures.append(np.asarray(image).astype(np.int16))
        assert (decode_photo(path).lightness - decode_photo(photo_path).lightness).abs().mean() < 1.0
    assert all(np.abs(pictures[i] - pictures[j]).mean() > 0 for i in range(5) for j in range(i + 1, 5))
    with Image.open(out / "coffee_sheet.png") as sheet:
        assert sheet.width > 6 * 100 and sheet.height > 100  # input + 5 tiles of 100 px height, labels below


def test_cli_same_seed_same_bytes(tmp_path, tiny_divcolor, photo_path):
    def run(folder, seed):
        result = sample_diverse(photo_path, "-k", 3, "--model", tiny_divcolor / "model.safetensors", "-o", folder, "--method", "random", "--seed", seed, "-q")
        assert result.exit_code == 0, result.output
        return [(folder / f"coffee_{i}.png").read_bytes() for i in range(1, 4)]

    first, again, other = run(tmp_path / "a", 7), run(tmp_path / "b", 7), run(tmp_path / "c", 8)
    assert first == again
    assert first != other


def test_cli_dropout_baseline_and_errors(tmp_path, tiny_divcolor, photo_path, tiny_pix2pix_checkpoint):
    out = tmp_path / "drop"
    result = sample_diverse(photo_path, "-k", 3, "--model", tiny_pix2pix_checkpoint, "--draws", 32, "-o", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    record = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][0])
    counts = [int(label.split("/")[0]) for label in record["labels"]]
    assert sum(counts) == 32 and counts == sorted(counts, reverse=True)  # k-means clusters, largest first
    assert Image.open(out / "coffee_1.png").size == (150, 100)
    # bad usage: exit 2 with a one-line reason, nothing written
    model = tiny_divcolor / "model.safetensors"
    for args, message in [
        (["-k", 9, "--model", model], "at most 8"),
        (["--method", "best", "--model", model], "unknown method"),
        (["--model", "no-such-model"], "unknown model"),
        (["--model", photo_path], "not a readable safetensors"),
    ]:
        failed = sample_diverse(photo_path, *args, "-o", tmp_path / "bad", "-q")
        assert failed.exit_code == 2 and message in failed.output, failed.output
    assert not (tmp_path / "bad").exists()
    # a missing file among good ones: the good one is written, exit code 1
    mixed = sample_diverse(tmp_path / "missing.png", photo_path, "-k", 2, "--model", model, "-o", tmp_path / "mixed", "-q")
    assert mixed.exit_code == 1 and (tmp_path / "mixed" / "coffee_2.png").is_file()
    # a text file is named as what it is, not as an unwritable output extension
    (tmp_path / "notes.txt").write_text("not an image")
    text = sample_diverse(tmp_path / "notes.txt", "-k", 2, "--model", model, "-o", tmp_path / "text", "-q")
    assert text.exit_code == 1 and "notes.txt: not an image file" in text.output and "extension" not in text.output


def test_colorize_runs_divcolor_as_a_single_colorization(tmp_path, tiny_divcolor, photo_path):
    result = runner.invoke(app, ["colorize", str(photo_path), "-o", str(tmp_path / "one"), "--model", str(tiny_divcolor / "model.safetensors"), "-q"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "one" / "coffee.png").size == (150, 100)
