"""Paper 000's models: KL and gradient penalty by hand, shapes against Tables 1-4, short training
runs that lower the reconstruction loss, and `recolor train` -> Colorizer end to end."""
from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from recolor.cli import app
from recolor.data import ColorPhotoDataset
from recolor.inference import Colorizer
from recolor.losses import gradient_penalty, kl_divergence_normal
from recolor.networks.paper000 import ConditionalBranch, ConditionalGenerator, DilatedCNN, ResidualCritic, VAEEncoder
from recolor.registry import get_model_spec
from recolor.training.loop import lab_batch

PAPER000_MODELS = ["cnn-l1", "cnn-l2", "cvae-l1", "cvae-l2", "cwgan-gp", "cwgan-gp-l1", "age", "introvae"]

# narrower copies for speed; latent_dim stays the paper's 512 (the VAE-GAN hybrids learn much
# more slowly with a small latent)
SMALL_GENERATOR = {"cond_channels": [4, 16, 32], "zmap_channels": 8, "decoder_channels": [32, 32, 32, 16, 8]}
SMALL_VAE = {**SMALL_GENERATOR, "encoder_channels": [4, 16, 32]}
SMALL_WGAN = {**SMALL_GENERATOR, "critic_width": 8}
TINY = {
    "cnn": {"channels": [4, 8, 16, 16, 16, 8, 4]},
    "vae": {"cond_channels": [4, 8, 16], "zmap_channels": 4, "decoder_channels": [8, 8, 8, 8, 8], "latent_dim": 16, "encoder_channels": [4, 8, 16]},
    "wgan": {"cond_channels": [4, 8, 16], "zmap_channels": 4, "decoder_channels": [8, 8, 8, 8, 8], "latent_dim": 16, "critic_width": 4},
}


def tiny_overrides(model: str) -> dict:
    return TINY["cnn" if model.startswith("cnn") else "wgan" if model.startswith("cwgan") else "vae"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one intra-op thread


@pytest.fixture(scope="module")
def batch(tiny_photo_folder):
    """Eight deterministic 64x64 crops of the tiny photo folder as a Lab training batch."""
    dataset = ColorPhotoDataset(tiny_photo_folder, size=64, train=False)
    rgb = torch.stack([dataset[i]["rgb"] for i in range(8)])
    return lab_batch(rgb, torch.device("cpu"), channels_last=False)


def first_images(batch: dict, count: int) -> dict:
    """The first ``count`` images of a batch (the WGAN-GP steps, with their double backward, are the slowest)."""
    return {key: value[:count] for key, value in batch.items()}


def make_recipe(model: str, overrides: dict, seed: int = 0):
    torch.manual_seed(seed)
    spec = get_model_spec(model)
    return spec.recipe(spec, spec.config(overrides), torch.device("cpu"))


# --- losses ----------------------------------------------------------------------------------

def test_kl_divergence_normal_matches_hand_computation():
    mu = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [math.log(0.25), 0.0]])
    # per element 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2):
    # image 1: 0 + 0.5 * (4 + 1 - 1 - ln 4);  image 2: 0.5 * (0.25 + 4 - 1 + ln 4) + 0
    expected = (0.5 * (4 - math.log(4)) + 0.5 * (3.25 + math.log(4))) / 2
    assert kl_divergence_normal(mu, logvar).item() == pytest.approx(expected, rel=1e-6)
    # torch.distributions' closed form for N(mu, sigma^2) against N(0, 1) agrees, summed per image, batch-averaged
    normal = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    reference = torch.distributions.kl_divergence(normal, torch.distributions.Normal(0.0, 1.0)).sum(dim=1).mean()
    assert kl_divergence_normal(mu, logvar).item() == pytest.approx(reference.item(), rel=1e-6)
    assert kl_divergence_normal(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0
    # any latent shape: summed over everything but the batch
    assert kl_divergence_normal(mu.view(2, 1, 2, 1), logvar.view(2, 1, 2, 1)).item() == pytest.approx(expected, rel=1e-6)


def test_gradient_penalty_of_a_conditioned_linear_critic():
    # D(c, x) = <w, x> + sum(c): its gradient in x is w everywhere, so GP = (||w|| - 1)^2
    torch.manual_seed(0)
    w = torch.randn(3, 4, 4)
    w = (3.0 * w / w.norm()).requires_grad_(True)
    condition = torch.randn(5, 1, 4, 4)
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    penalty = gradient_penalty(lambda x: (x * w).flatten(1).sum(1) + condition.flatten(1).sum(1), real, fake)
    assert penalty.item() == pytest.approx(4.0, rel=1e-5)
    penalty.backward()  # the penalty trains the critic: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(w.grad, 2 * 2.0 * w.detach() / 3.0, atol=1e-5)


# --- networks against the paper's tables -----------------------------------------------------

def layer_outputs(module: nn.Module, *inputs, kinds=(nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) -> list[tuple]:
    """(channels, side) of every convolution (or features of every dense layer), in call order."""
    shapes: list[tuple] = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:2]) + tuple(o.shape[3:4])))
             for m in module.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        module(*inputs)
    for hook in hooks:
        hook.remove()
    return shapes


def test_dilated_cnn_follows_table_1():
    cnn = DilatedCNN().eval()
    grey = torch.rand(2, 1, 64, 64) * 2 - 1
    assert layer_outputs(cnn, grey) == [(16, 32), (64, 16), (256, 8), (256, 8), (256, 8), (128, 16), (64, 32), (3, 64)]
    convolutions = [m for m in cnn.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.dilation[0] for m in convolutions] == [1, 1, 1, 2, 2, 1, 1, 1]
    assert [isinstance(m, nn.ConvTranspose2d) for m in convolutions] == [False] * 5 + [True] * 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == 7  # all but the output layer
    out = cnn(grey)
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1


def test_cvae_networks_follow_tables_2_to_4():
    encoder = VAEEncoder().eval()
    colour = torch.rand(2, 3, 64, 64) * 2 - 1
    # Table 2: 5x5/16, 3x3/64, 3x3/256 (stride 2, padding 1), then two dense 512 heads
    assert layer_outputs(encoder, colour) == [(16, 31), (64, 16), (256, 8), (512,), (512,)]
    mu, logvar = encoder(colour)
    assert mu.shape == logvar.shape == (2, 512)
    # Table 3
    branch = ConditionalBranch().eval()
    grey = torch.rand(2, 1, 64, 64) * 2 - 1
    assert layer_outputs(branch, grey) == [(16, 31), (64, 16), (256, 8)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in branch.modules()) == 2  # not after the last
    # Table 4: dense 4096 (= 64x8x8), joined with the grey features, 256-256-256-128-64-3
    generator = ConditionalGenerator().eval()
    shapes = layer_outputs(generator, grey, torch.randn(2, 512))
    assert shapes[3] == (4096,)
    assert shapes[4:] == [(256, 8), (256, 8), (256, 8), (128, 16), (64, 32), (3, 64)]
    assert generator.decoder[0].in_channels == 64 + 256
    out = generator(grey, torch.randn(2, 512))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1


def test_critic_sees_the_grey_image_and_has_no_normalisation():
    critic = ResidualCritic(width=16)
    assert critic.stem[0].in_channels == 4  # grey L + RGB
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)) for m in critic.modules())
    grey, rgb = torch.rand(3, 1, 64, 64), torch.rand(3, 3, 64, 64)
    scores = critic(grey, rgb)
    assert scores.shape == (3,)
    assert not torch.allclose(critic(-grey, rgb), scores)  # the grey image changes the score


def test_every_paper000_generator_maps_grey_l_to_rgb():
    grey = torch.rand(2, 1, 64, 64) * 2 - 1
    for name in PAPER000_MODELS:
        spec = get_model_spec(name)
        assert spec.output == "rgb"
        assert spec.default_config["image_size"] == 64
        out = spec.build(spec.config(tiny_overrides(name))).eval()(grey)
        assert out.shape == (2, 3, 64, 64), name


def test_vaes_decode_the_prior_mean_and_gans_sample():
    grey = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        cvae = get_model_spec("cvae-l1").build(get_model_spec("cvae-l1").config(TINY["vae"])).eval()
        assert torch.equal(cvae(grey), cvae(grey))
        assert torch.equal(cvae(grey), cvae(grey, torch.zeros(2, 16)))
        gan = get_model_spec("cwgan-gp").build(get_model_spec("cwgan-gp").config(TINY["wgan"])).eval()
        assert not torch.allclose(gan(grey), gan(grey))
        cvae.inference_z = "sample"
        assert not torch.allclose(cvae(grey), cvae(grey))


# --- training --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "model, overrides, steps",
    [
        ("cnn-l1", {}, 10),  # the paper's widths
        ("cnn-l2", {"channels": [8, 16, 64, 64, 64, 32, 16]}, 10),
        ("cvae-l1", SMALL_VAE, 12),
        ("cvae-l2", SMALL_VAE, 12),
        ("age", SMALL_VAE, 12),
        ("introvae", SMALL_VAE, 15),
        ("cwgan-gp-l1", SMALL_WGAN, 12),
    ],
)
def test_short_run_lowers_reconstruction_loss(batch, model, overrides, steps):
    recipe = make_recipe(model, overrides)
    if model.startswith("cwgan"):
        batch = first_images(batch, 4)
    recon = [recipe.train_step(batch)["recon"] for _ in range(steps)]
    assert all(math.isfinite(value) for value in recon)
    first, last = sum(recon[:3]) / 3, sum(recon[-3:]) / 3
    assert last < 0.9 * first, f"{model}: recon {first:.4f} -> {last:.4f}"


def test_cwgan_gp_critic_learns_and_generator_steps_every_fifth_batch(batch):
    batch = first_images(batch, 4)
    recipe = make_recipe("cwgan-gp", SMALL_WGAN)
    assert recipe.config["n_critic"] == 5 and recipe.config["gp_weight"] == 10.0
    generator_before = [p.detach().clone() for p in recipe.generator.parameters()]
    history = [recipe.train_step(batch) for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(generator_before, recipe.generator.parameters()))
    assert all("generator" not in h for h in history)
    history += [recipe.train_step(batch) for _ in range(16)]
    assert ["generator" in h for h in history] == [(i + 1) % 5 == 0 for i in range(20)]
    assert not all(torch.equal(a, b) for a, b in zip(generator_before, recipe.generator.parameters()))
    # the critic learns to separate photos from generated colourings: its loss starts near
    # 10 * GP = 10 (zero gradients) and falls as its estimate of W(real, fake) grows
    assert history[0]["critic"] == pytest.approx(10.0, abs=0.1)
    assert history[-1]["wasserstein"] > history[0]["wasserstein"] + 1.0
    assert history[-1]["critic"] < history[0]["critic"] - 1.0


def test_cwgan_learning_rate_decays_linearly_from_the_first_step_through_the_trainer(tmp_path, tiny_photo_folder):
    from recolor.training.loop import Trainer, TrainSettings

    data = ColorPhotoDataset(tiny_photo_folder, size=64)  # 24 photos / 4 = 6 batches an epoch
    used = []

    def run(epochs, resume, decay_epochs=0, out="wgan"):
        recipe = make_recipe("cwgan-gp-l1", {**TINY["wgan"], "batch_size": 4, "lr_decay_epochs": 2})

        def recording_step(batch):
            used.append(recipe.optimizers["generator"].param_groups[0]["lr"])
            return {"recon": 0.5}

        recipe.train_step = recording_step
        settings = TrainSettings(out_dir=tmp_path / out, epochs=epochs, batch_size=4, workers=0, progress=False,
                                 save_every=1, decay_epochs=decay_epochs)
        Trainer(recipe, data, None, settings).fit(resume=resume)

    # paper 000: from 1e-3 at the first step down to 0 after lr_decay_epochs = 2 epochs (12 batches),
    # whatever --epochs is; a resumed run goes on with the same schedule
    run(epochs=1, resume=False)
    run(epochs=3, resume=True)
    assert used == pytest.approx([1e-3 * max(0.0, 1 - step / 12) for step in range(18)])
    # --decay-epochs replaces the recipe's schedule: constant, then down over the last epoch
    used.clear()
    run(epochs=2, resume=False, decay_epochs=1, out="pix2pix_schedule")
    assert used == pytest.approx([1e-3 * min(1.0, (12 - step) / 6) for step in range(12)])


def test_age_parameter_readings(batch):
    joint = make_recipe("age", TINY["vae"])
    everything = {id(p) for name in ("generator", "encoder") for p in joint.networks[name].parameters()}
    for optimizer in joint.optimizers.values():
        assert {id(p) for group in optimizer.param_groups for p in group["params"]} == everything
    split = make_recipe("age", {**TINY["vae"], "age_parameters": "split"})
    latent_params = {id(p) for group in split.optimizers["latent"].param_groups for p in group["params"]}
    reconstruction_params = {id(p) for group in split.optimizers["reconstruction"].param_groups for p in group["params"]}
    assert latent_params == {id(p) for p in split.networks["generator"].parameters()}
    assert reconstruction_params == {id(p) for p in split.networks["encoder"].parameters()}
    assert math.isfinite(split.train_step(batch)["recon"])


# --- command line end to end -----------------------------------------------------------------

@pytest.mark.parametrize("model", PAPER000_MODELS)
def test_recolor_train_then_colorize(model, tiny_photo_folder, grey_photo_path, tmp_path):
    run = tmp_path / "run"
    sets = [arg for key, value in tiny_overrides(model).items() for arg in ("--set", f"{key}={value}".replace(" ", ""))]
    result = CliRunner().invoke(app, ["train", "--model", model, "--data", str(tiny_photo_folder), "--out", str(run),
                                      "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--workers", "0", "-q", *sets])
    assert result.exit_code == 0, result.output
    colorizer = Colorizer.load(run / "model.safetensors", device="cpu")
    assert colorizer.name == model and colorizer.size == 64
    coloured = colorizer.colorize(grey_photo_path)
    assert coloured.size == Image.open(grey_photo_path).size
    assert coloured.mode == "RGB"


def test_bad_loss_name_is_a_clear_error(tiny_photo_folder, tmp_path):
    result = CliRunner().invoke(app, ["train", "--model", "cnn-l1", "--data", str(tiny_photo_folder), "--out", str(tmp_path / "run"),
                                      "--max-steps", "1", "--workers", "0", "--set", "loss=l3"])
    assert result.exit_code == 2
    assert "loss must be 'l1' or 'l2'" in result.output


def test_cvae_encoder_log_variance_is_softly_bounded():
    from recolor.networks.paper000 import LOGVAR_BOUND

    encoder = VAEEncoder().eval()
    colour = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        encoder.logvar.bias.zero_()
        encoder.logvar.weight.zero_()
        assert encoder(colour)[1].abs().max() == 0  # identity near 0: small values pass unchanged
        encoder.logvar.bias.copy_(torch.linspace(-1000, 1000, encoder.logvar.bias.numel()))
        logvar = encoder(colour)[1]
    assert logvar.abs().max() <= LOGVAR_BOUND and logvar.max() > 0.99 * LOGVAR_BOUND and logvar.min() < -0.99 * LOGVAR_BOUND
    assert torch.isfinite(kl_divergence_normal(torch.zeros_like(logvar), logvar))
