"""The GAN family (paper 001 sec. 3, paper 003 WGAN-GP) and the ResNet-18 U-Net generator (paper 002 App. A.2)."""
from __future__ import annotations

import math
import urllib.error

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from recolor.checkpoint import load_checkpoint, save_checkpoint
from recolor.cli import app
from recolor.color import rgb_to_lab_normalized
from recolor.data import ColorPhotoDataset
from recolor.inference import Colorizer
from recolor.losses import (
    clip_weights_,
    ebgan_discriminator_loss,
    ebgan_generator_loss,
    gradient_penalty,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    pull_away_term,
    reconstruction_energy,
    wgan_critic_loss,
    wgan_generator_loss,
)
from recolor.networks import resnet_unet
from recolor.networks.ebgan import AutoencoderDiscriminator
from recolor.networks.resnet_unet import EncoderWeightsError, ResNetUNetGenerator, load_encoder_weights, resnet18_encoder
from recolor.registry import get_model_spec
from recolor.training.loop import build_recipe

UNET_TINY = {"image_size": 32, "ngf": 8, "num_downs": 5, "dropout": 0.0, "ndf": 8, "batch_size": 8}
RESNET_TINY = {"image_size": 32, "ndf": 8, "batch_size": 8, "encoder_weights": "none"}
CLI_TINY = {"ngf": 8, "num_downs": 5, "ndf": 8}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one intra-op thread


def tiny_config(name: str, **changes) -> dict:
    spec = get_model_spec(name)
    return spec.config({**(RESNET_TINY if name == "resnet18" else UNET_TINY), **changes})


@pytest.fixture(scope="module")
def batch(tiny_photo_folder) -> dict[str, torch.Tensor]:
    data = ColorPhotoDataset(tiny_photo_folder, size=32, train=False)
    rgb = torch.stack([data[i]["rgb"] for i in range(8)]).float() / 255
    lightness, ab = rgb_to_lab_normalized(rgb)
    return {"L": lightness, "ab": ab, "rgb": rgb}


def parameters(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


@torch.no_grad()
def generator_l1(recipe, batch) -> float:
    return (recipe.generator(batch["L"]).float() - batch["ab"]).abs().mean().item()


# --- the losses against hand computations ----------------------------------------------------

def test_lsgan_losses_use_targets_zero_for_fake_and_one_for_real():
    real, fake = torch.tensor([0.5, 1.5]), torch.tensor([0.2, -0.4])
    # 1/2 mean((real - 1)^2) + 1/2 mean((fake - 0)^2) = 1/2 * 0.25 + 1/2 * 0.1
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(0.175)
    # 1/2 mean((fake - 1)^2) = 1/2 * (0.64 + 1.96) / 2
    assert lsgan_generator_loss(fake).item() == pytest.approx(0.65)
    assert lsgan_discriminator_loss(torch.ones(3), torch.zeros(3)).item() == 0.0
    assert lsgan_generator_loss(torch.ones(3)).item() == 0.0


def test_ebgan_energy_and_margin_loss_by_hand():
    inputs = torch.zeros(2, 1, 1, 2)
    reconstruction = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 2.0]]]])
    assert reconstruction_energy(inputs, reconstruction).tolist() == pytest.approx([1.0, 2.0])
    real_energy = torch.tensor([0.1, 0.3])
    fake_energy = torch.tensor([0.5, 2.0], requires_grad=True)
    loss = ebgan_discriminator_loss(real_energy, fake_energy, margin=1.0)
    # mean(real) + mean(max(0, 1 - fake)) = 0.2 + (0.5 + 0) / 2
    assert loss.item() == pytest.approx(0.45)
    loss.backward()
    # a fake already beyond the margin gets no push; one inside it is pushed up
    assert fake_energy.grad.tolist() == pytest.approx([-0.5, 0.0])
    assert ebgan_generator_loss(torch.tensor([0.5, 2.0])).item() == pytest.approx(1.25)


def test_pull_away_term_by_hand():
    samples = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    # squared cosines: (a,b) 1/2, (a,c) 0, (b,c) 1/2, each pair counted twice, over N(N-1) = 6
    assert pull_away_term(samples).item() == pytest.approx(2 * (0.5 + 0.0 + 0.5) / 6)
    assert pull_away_term(torch.tensor([[3.0, 4.0], [6.0, 8.0]])).item() == pytest.approx(1.0)
    assert pull_away_term(torch.eye(4).view(4, 2, 2)).item() == pytest.approx(0.0)
    with pytest.raises(ValueError):
        pull_away_term(torch.ones(1, 3))


def test_wgan_losses_and_weight_clipping():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-0.5 - 2.0)
    assert wgan_generator_loss(fake).item() == pytest.approx(0.5)
    critic = AutoencoderDiscriminator(in_channels=3, ndf=4, d_layers=2)
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.normal_(0, 1)
    first = next(critic.parameters())
    inside = first.detach().abs() < 0.01
    before = first.detach().clone()
    clip_weights_(critic, 0.01)
    assert all(p.abs().max().item() <= 0.01 for p in critic.parameters())
    assert torch.equal(first.detach()[inside], before[inside])  # values already in range are untouched
    assert (first.detach().abs() == 0.01).any()


def test_gradient_penalty_matches_an_independent_autograd_computation():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1)

    def critic(ab):
        return torch.tanh(conv(ab)).pow(2).mean(dim=(1, 2, 3))

    real, fake = torch.randn(4, 2, 5, 5), torch.randn(4, 2, 5, 5)
    torch.manual_seed(7)
    penalty = gradient_penalty(critic, real, fake)
    torch.manual_seed(7)
    eps = torch.rand(4, 1, 1, 1)  # the same draw: eps ~ U[0, 1] per sample
    expected = []
    for i in range(4):
        point = (eps[i] * real[i] + (1 - eps[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(point).sum(), point)
        expected.append((grad.norm() - 1) ** 2)
    assert penalty.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    penalty.backward()  # the penalty trains the critic: it has a graph to the critic's weights
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    # a linear critic has gradient w everywhere: the penalty is (|w| - 1)^2 exactly
    weight = torch.full((2, 5, 5), 0.1)
    linear = gradient_penalty(lambda x: (x * weight).sum(dim=(1, 2, 3)), real, fake)
    assert linear.item() == pytest.approx((math.sqrt(50 * 0.01) - 1) ** 2, rel=1e-5)


# --- ResNet-18 U-Net generator -----------------------------------------------------------------

def test_resnet_unet_shapes_and_parameter_counts_match_the_paper():
    generator = ResNetUNetGenerator()
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(generator.encoder) == 11_176_512  # Figure 12
    assert count(generator.decoder) + count(generator.output) == 3_544_066  # Figure 13
    lightness = torch.rand(2, 1, 64, 64) * 2 - 1
    skips = generator.encode(lightness)
    assert [tuple(s.shape[1:]) for s in skips] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    output = generator(lightness)
    assert output.shape == (2, 2, 64, 64) and output.abs().max() <= 1
    assert generator.multiple == 32


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_encoder_weights_path_loads_a_local_resnet18_state_dict(tmp_path, tiny_photo_folder, suffix):
    torch.manual_seed(3)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / f"resnet18{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    recipe = build_recipe("resnet18", tiny_config("resnet18", encoder_weights=str(path)), torch.device("cpu"))
    encoder = recipe.generator.encoder
    assert not torch.equal(encoder.conv1.weight, state["conv1.weight"])  # building alone loads nothing
    recipe.prepare(ColorPhotoDataset(tiny_photo_folder, size=32))  # what a fresh training run does
    loaded = encoder.state_dict()
    assert set(loaded) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert recipe.extra_metadata()["encoder_init"] == f"weights from {path}"


def test_encoder_weights_errors_are_clear(tmp_path, monkeypatch):
    encoder = resnet18_encoder()
    with pytest.raises(EncoderWeightsError, match="no such encoder weights file"):
        load_encoder_weights(encoder, tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv1.weight": torch.zeros(1)}, str(wrong))
    with pytest.raises(EncoderWeightsError, match="not a ResNet-18 state dict"):
        load_encoder_weights(encoder, wrong)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(EncoderWeightsError) as failure:
        load_encoder_weights(encoder, "imagenet")
    message = str(failure.value)
    assert "could not download" in message and "--encoder-weights PATH" in message and resnet_unet.IMAGENET_URL in message


def test_resnet18_inference_never_downloads(tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("inference tried to download encoder weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    spec = get_model_spec("resnet18")
    config = spec.config({"image_size": 32})
    assert config["encoder_weights"] == "imagenet"  # the paper's default, yet nothing is fetched below
    generator = spec.build(config)
    path = save_checkpoint(tmp_path / "r.safetensors", generator.state_dict(), "resnet18", config, dtype=torch.float16)
    colorizer = Colorizer.from_checkpoint(load_checkpoint(path), device="cpu", precision="fp32")
    assert colorizer.colorize(Image.new("L", (40, 30), 128)).size == (40, 30)


# --- the recipes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pix2pix-lsgan", "pix2pix-ebgan", "pix2pix-wgan", "resnet18"])
def test_short_run_of_each_gan_lowers_the_reconstruction_loss(batch, name):
    torch.manual_seed(0)
    recipe = build_recipe(name, tiny_config(name), torch.device("cpu"))
    critic = recipe.networks["discriminator"]
    before = generator_l1(recipe, batch)
    critic_before = parameters(critic)
    logs = [recipe.train_step(batch) for _ in range(15)]
    assert all(math.isfinite(v) for log in logs for v in log.values())
    assert generator_l1(recipe, batch) < 0.95 * before
    assert not torch.equal(parameters(critic), critic_before)  # the critic trained too
    assert any("g_gan" in log for log in logs)


def test_each_gan_builds_its_own_critic_and_optimiser():
    ebgan = build_recipe("pix2pix-ebgan", tiny_config("pix2pix-ebgan"), torch.device("cpu"))
    assert isinstance(ebgan.networks["discriminator"], AutoencoderDiscriminator)
    wgan = build_recipe("pix2pix-wgan", tiny_config("pix2pix-wgan"), torch.device("cpu"))
    assert isinstance(wgan.optimizers["discriminator"], torch.optim.RMSprop)
    assert wgan.optimizers["generator"].param_groups[0]["lr"] == 5e-5
    gp = build_recipe("wgan-gp", tiny_config("wgan-gp"), torch.device("cpu"))
    modules = list(gp.networks["discriminator"].modules())
    assert any(isinstance(m, nn.InstanceNorm2d) for m in modules) and not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    assert gp.optimizers["discriminator"].param_groups[0]["betas"] == (0.0, 0.9)
    with pytest.raises(ValueError, match="unknown gan"):
        build_recipe("resnet18", tiny_config("resnet18", gan="dcgan"), torch.device("cpu"))


def test_wgan_steps_the_generator_every_fifth_critic_step_and_keeps_weights_clipped(batch):
    torch.manual_seed(0)
    recipe = build_recipe("pix2pix-wgan", tiny_config("pix2pix-wgan"), torch.device("cpu"))
    changed = []
    for _ in range(10):
        before = parameters(recipe.generator)
        recipe.train_step(batch)
        changed.append(not torch.equal(parameters(recipe.generator), before))
        assert parameters(recipe.networks["discriminator"]).abs().max() <= 0.01
    assert changed == [False, False, False, False, True] * 2


def test_wgan_gp_trains_l1_alone_first_then_adversarially_with_lambda_one(batch):
    torch.manual_seed(0)
    config = tiny_config("wgan-gp", l1_pretrain_epochs=1.5)
    assert config["l1_lambda"] == 1.0 and config["gp_weight"] == 10.0 and config["n_critic"] == 5
    recipe = build_recipe("wgan-gp", config, torch.device("cpu"))
    recipe.prepare(list(range(16)))  # 16 images, batch 8: 2 steps per epoch, so 3 L1-only steps
    assert recipe.pretrain_steps == 3
    critic_before, before = parameters(recipe.networks["discriminator"]), generator_l1(recipe, batch)
    logs = [recipe.train_step(batch) for _ in range(3)]
    assert all(set(log) == {"recon"} for log in logs)
    assert torch.equal(parameters(recipe.networks["discriminator"]), critic_before)  # the critic waits
    assert generator_l1(recipe, batch) < before
    changed = []
    for _ in range(5):
        generator_before = parameters(recipe.generator)
        log = recipe.train_step(batch)
        changed.append(not torch.equal(parameters(recipe.generator), generator_before))
        assert log["gp"] >= 0 and "wasserstein" in log
    assert changed == [False, False, False, False, True]
    assert recipe.extra_metadata()["gan_schedule"] == {"steps": 8, "critic_steps": 5, "pretrain_steps": 3}


def test_pix2pix_config_is_unchanged_by_the_gan_family():
    assert sorted(get_model_spec("pix2pix").default_config) == sorted(
        ["image_size", "ngf", "num_downs", "dropout", "dropout_layers", "norm", "ndf", "d_layers", "lr", "betas", "l1_lambda", "batch_size"]
    )
    recipe = build_recipe("pix2pix", tiny_config("pix2pix"), torch.device("cpu"))
    assert recipe.gan == "vanilla" and recipe.n_critic == 1 and recipe.extra_metadata() == {}


@pytest.mark.parametrize("name", ["resnet18", "pix2pix-lsgan", "pix2pix-ebgan", "pix2pix-wgan", "wgan-gp"])
def test_cli_trains_each_model_and_colorizer_loads_it(tmp_path, tiny_photo_folder, name):
    out = tmp_path / "run"
    arguments = ["train", "--model", name, "--data", str(tiny_photo_folder), "--out", str(out), "--epochs", "1", "--max-steps", "2",
                 "--size", "32", "--batch-size", "4", "--workers", "0", "--quiet", "--precision", "fp32"]
    if name == "resnet18":
        arguments += ["--encoder-weights", "none", "--set", "ndf=8"]
    else:
        arguments += [item for key, value in CLI_TINY.items() for item in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    training = load_checkpoint(out / "last.safetensors")
    assert training.model == name and training.extra["trainer"]["step"] == 2
    colorizer = Colorizer.load(out / "model.safetensors", device="cpu")
    assert colorizer.name == name and colorizer.colorize(Image.new("RGB", (48, 40), (90, 90, 90))).size == (48, 40)


def test_cli_rejects_an_unknown_gan_and_a_missing_encoder_file(tmp_path, tiny_photo_folder):
    common = ["train", "--model", "resnet18", "--data", str(tiny_photo_folder), "--out", str(tmp_path / "run"), "--size", "32",
              "--batch-size", "4", "--workers", "0", "--quiet", "--max-steps", "1"]
    result = CliRunner().invoke(app, common + ["--encoder-weights", "none", "--set", "gan=dcgan"])
    assert result.exit_code == 2 and "unknown gan 'dcgan'" in " ".join(result.output.split())
    result = CliRunner().invoke(app, common + ["--encoder-weights", str(tmp_path / "nope.pth")])
    assert result.exit_code == 2 and "no such encoder weights file" in " ".join(result.output.split())
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_the_written_out_imagenet_url_is_torchvisions():
    from torchvision.models import ResNet18_Weights

    assert resnet_unet.IMAGENET_URL == ResNet18_Weights.IMAGENET1K_V1.url
