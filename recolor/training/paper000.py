"""Paper 000's colorization models: CNN, CVAE, CWGAN-GP (+L1), AGE and IntroVAE, at 64x64.

All of them predict RGB in [-1, 1] as the paper does (section 3: "Here, I use RGB space"), so
they register with ``output="rgb"`` and are trained against the photo's RGB scaled to [-1, 1].
At colorize time only the prediction's colours are used: :func:`recolor.color.output_to_ab`
converts the RGB to Lab and keeps its ab, and inference joins that ab to the input photo's own
full-resolution lightness, so a model's lightness errors never reach the output.

Networks: ``recolor/networks/paper000.py`` (architecture tables and their deviations there).
The generator inference runs takes only the normalised L (B, 1, 64, 64): the latent models draw
their z inside ``forward`` (``inference_z``):

* CVAE, AGE, IntroVAE: ``inference_z="mean"`` (z = 0, the prior's mean and mode). A colorizer
  should give the same colours for the same photo every time, and z = 0 is the centre of the
  prior the KL term pulls every posterior toward, so it gives the model's most typical
  colouring. The paper's diverse samples are one config key away (``inference_z="sample"``, or
  ``colorizer.generator.inference_z = "sample"`` in Python).
* CWGAN-GP: ``inference_z="sample"``: its generator was only ever trained on (and judged by the
  critic at) prior samples, whose norm is about sqrt(512) ~ 22.6; z = 0 is far from anything it
  saw, so it samples like the paper does (section 5.2: "CWGAN-GP tends to generate more diverse
  images").

Hyper-parameters are the paper's; where it gives none we say what we chose:

* batch size: not given anywhere in the paper; 64 (Gulrajani et al.'s CIFAR-10 WGAN-GP setting).
* CNN (section 3.1): Adam, fixed lr 1e-3; no betas given, so PyTorch's (0.9, 0.999); L1 or L2 loss
  (mean over pixels: the paper gives no reduction for the CNN).
* CVAE (section 4.1): Adam lr 1e-3, betas (0.5, 0.999); loss = reconstruction "without averaging
  the size" (summed over the pixels of an image) + KL, both averaged over the batch.
* CWGAN-GP (section 5.1): lambda 10; Adam lr 1e-3 decayed linearly to 0 over 100 epochs (stated
  for the +L1 variant as "same Adam Optimizer", so applied to both); betas not given, we use the
  paper's (0.5, 0.999); critic steps per generator step not given for plain CWGAN-GP (only
  "1:1 in this case" for +L1), so 5, Gulrajani et al.'s value; the +L1 total is "the summation"
  of the two losses, so the L1 (mean over pixels) has weight 1.
* AGE (Algorithm 1, section 6.1) and IntroVAE (Algorithm 2, section 6.2): Adam lr 1e-3, betas
  (0.5, 0.999); IntroVAE alpha 0.5, beta 0.4, m 120. See the recipes for how each algorithm line
  is read.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import gradient_penalty, kl_divergence_normal
from ..networks.paper000 import (
    ENCODER_CHANNELS,
    ResidualCritic,
    VAEEncoder,
)
from ..registry import Config, ModelSpec, attach_recipe
from .recipe import Batch, Recipe

PAPER = "000"


def rgb_target(batch: Batch) -> torch.Tensor:
    """The photo's RGB scaled to [-1, 1], what paper 000's networks predict."""
    return batch["rgb"] * 2.0 - 1.0


def check_loss(kind: str) -> str:
    if kind not in ("l1", "l2"):
        raise ValueError(f"loss must be 'l1' or 'l2', got '{kind}'")
    return kind


def pixel_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str, per_image_sum: bool = False) -> torch.Tensor:
    """L1 or L2 (squared error); mean over everything, or summed per image then averaged over the batch."""
    check_loss(kind)
    error = (prediction.float() - target).abs() if kind == "l1" else (prediction.float() - target).pow(2)
    return error.flatten(1).sum(dim=1).mean() if per_image_sum else error.mean()


def adam_over(modules: Iterable[nn.Module], config: Config) -> torch.optim.Adam:
    parameters = [p for module in modules for p in module.parameters()]
    return torch.optim.Adam(parameters, lr=config["lr"], betas=tuple(config["betas"]))


def build_encoder(config: Config) -> VAEEncoder:
    return VAEEncoder(config["image_size"], config["encoder_channels"], config["latent_dim"])


# --- recipes ------------------------------------------------------------------------------------

class CNNRecipe(Recipe):
    """Section 3: the dilated CNN regressed on RGB with an L1 or L2 loss, Adam lr 1e-3."""

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        check_loss(config["loss"])
        self.networks["generator"] = spec.build(config)
        self.optimizers["generator"] = self.adam(self.networks["generator"])

    def train_step(self, batch: Batch) -> dict[str, float]:
        with self.autocast():
            prediction = self.generator(batch["L"])
        recon = pixel_loss(prediction, rgb_target(batch), self.config["loss"])
        self.optimize("generator", recon)
        return {"recon": recon.item()}


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Kingma & Welling's trick: z = mu + sigma * eps, eps ~ N(0, I)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


class CVAERecipe(Recipe):
    """Section 4: encoder (Table 2) + conditional (Table 3) + decoder (Table 4), loss = recon + KL.

    One Adam over all three networks (the paper: "Adam Optimizer with the fixed learning rate of
    0.001 and betas = (0.5, 0.999)"). ``recon`` in the log is the per-pixel mean (comparable
    across models); the optimised term is the per-image sum, as the paper states.
    """

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        check_loss(config["loss"])
        self.networks["generator"] = spec.build(config)
        self.networks["encoder"] = build_encoder(config)
        self.optimizers["cvae"] = adam_over((self.networks["encoder"], self.networks["generator"]), config)

    def train_step(self, batch: Batch) -> dict[str, float]:
        target = rgb_target(batch)
        with self.autocast():
            mu, logvar = self.networks["encoder"](target)
            z = reparameterize(mu.float(), logvar.float())
            prediction = self.generator(batch["L"], z)
        recon_sum = pixel_loss(prediction, target, self.config["loss"], per_image_sum=True)
        kl = kl_divergence_normal(mu, logvar)
        self.optimize("cvae", recon_sum + kl)
        return {"recon": recon_sum.item() / target[0].numel(), "kl": kl.item()}


class AGERecipe(Recipe):
    """Algorithm 1 (section 6.1), with the CVAE's networks and L1 in latent and output space.

        Z ~ N(0, I);  X_gen = Dec(Z, grey);  Z_gen = Enc(X_gen);  Z_real = Enc(X_real)
        L_adv = L1(Z_gen, Z_real)                          -> step on theta
        X_gen2 = Dec(Z_gen, grey);  L_rec = L1(X_gen2, X_real)  -> step on phi

    Which parameters theta and phi are is not stated. ``age_parameters`` chooses:

    * ``"joint"`` (default): both steps update encoder, conditional branch and decoder, each
      with its own Adam (lr 1e-3, betas (0.5, 0.999), "used for Encoder, Conditional and
      Decoder"). This is the reading that matches the paper's results: its AGE reaches a lower
      L1 distance than CWGAN-GP + L1 (section 7), which needs the decoder to see L_rec.
    * ``"split"``: theta = generator (conditional + decoder), phi = encoder, as Algorithm 2
      names them and as in Ulyanov et al.'s AGE (the generator learns only through latent
      space). Without AGE's divergence term nothing bounds the encoder's scale, and in our
      short runs L_rec does not fall while L_adv grows; it is kept for comparison.

    The encoder's code is its mean head (AGE has no KL term, so its log-variance head is unused;
    it is kept so the architecture is the CVAE's, as section 6 says). Both L1s are per-element
    means (the paper gives no reduction for AGE). For L_rec, Z_gen is re-encoded from the same
    X_gen after the theta step (backpropagating through the first encoding would use weights the
    step has already changed).
    """

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        if config["age_parameters"] not in ("joint", "split"):
            raise ValueError(f"age_parameters must be 'joint' or 'split', got '{config['age_parameters']}'")
        self.networks["generator"] = spec.build(config)
        self.networks["encoder"] = build_encoder(config)
        generator, encoder = self.networks["generator"], self.networks["encoder"]
        self.split = config["age_parameters"] == "split"
        self.optimizers["latent"] = adam_over((generator,) if self.split else (generator, encoder), config)
        self.optimizers["reconstruction"] = adam_over((encoder,) if self.split else (generator, encoder), config)

    def encode(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.networks["encoder"](rgb)[0].float()

    def train_step(self, batch: Batch) -> dict[str, float]:
        generator, encoder = self.networks["generator"], self.networks["encoder"]
        lightness, target = batch["L"], rgb_target(batch)
        z = torch.randn(target.shape[0], self.config["latent_dim"], device=target.device)
        held_for_latent = (encoder,) if self.split else ()
        with self.frozen(*held_for_latent), self.autocast():
            generated = generator(lightness, z)
            z_generated = self.encode(generated)
            z_real = self.encode(target)
        latent_loss = F.l1_loss(z_generated, z_real)
        self.optimize("latent", latent_loss)
        held_for_reconstruction = (generator,) if self.split else ()
        with self.frozen(*held_for_reconstruction), self.autocast():
            z_generated = self.encode(generated.detach())
            second = generator(lightness, z_generated)
        recon = pixel_loss(second, target, "l1")
        self.optimize("reconstruction", recon)
        return {"recon": recon.item(), "latent": latent_loss.item()}


class IntroVAERecipe(Recipe):
    """Algorithm 2 (section 6.2), with the CVAE's networks; L_REG is the KL to N(0, I).

        Z = Enc(X) (reparameterised), Zp ~ N(0, I), Xr = Dec(Z), Xp = Dec(Zp), L_AE = L1(Xr, X)
        encoder:   L_REG(Z) + alpha ([m - L_REG(Enc(ng(Xr)))]+ + [m - L_REG(Enc(ng(Xp)))]+) + beta L_AE
        generator: alpha (L_REG(Enc(Xr)) + L_REG(Enc(Xp))) + beta L_AE   (encoder held fixed)

    The printed algorithm shows alpha on the first term of each sum only; we read the lost
    brackets as Huang et al.'s IntroVAE (eq. 11-12 there), which weights both by alpha. L_AE is
    summed over the pixels of an image (like the CVAE's loss and Huang et al.), so it is on the
    scale of the margin m = 120 and of the summed KL. The generator step re-decodes Xr and Xp
    (the encoder step ran with the generator frozen) from the same Z and Zp.
    """

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        self.networks["generator"] = spec.build(config)
        self.networks["encoder"] = build_encoder(config)
        self.optimizers["encoder"] = self.adam(self.networks["encoder"])
        self.optimizers["generator"] = self.adam(self.networks["generator"])

    def regularisation(self, rgb: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.networks["encoder"](rgb)
        return kl_divergence_normal(mu, logvar)

    def train_step(self, batch: Batch) -> dict[str, float]:
        generator, encoder = self.networks["generator"], self.networks["encoder"]
        alpha, beta, margin = self.config["alpha"], self.config["beta"], self.config["margin"]
        lightness, target = batch["L"], rgb_target(batch)
        z_prior = torch.randn(target.shape[0], self.config["latent_dim"], device=target.device)
        # encoder step: reconstruct, and push the codes of generated images beyond the margin
        with self.frozen(generator), self.autocast():
            mu, logvar = encoder(target)
            z = reparameterize(mu.float(), logvar.float())
            reconstructed = generator(lightness, z)
            sampled = generator(lightness, z_prior)
            reg_real = kl_divergence_normal(mu, logvar)
            reg_rec = self.regularisation(reconstructed.detach())
            reg_prior = self.regularisation(sampled.detach())
        ae = pixel_loss(reconstructed, target, "l1", per_image_sum=True)
        encoder_loss = reg_real + alpha * (F.relu(margin - reg_rec) + F.relu(margin - reg_prior)) + beta * ae
        self.optimize("encoder", encoder_loss)
        # generator step: make the (updated) encoder give generated images small KL, and reconstruct
        with self.frozen(encoder), self.autocast():
            reconstructed = generator(lightness, z.detach())
            sampled = generator(lightness, z_prior)
            generator_adv = alpha * (self.regularisation(reconstructed) + self.regularisation(sampled))
        ae = pixel_loss(reconstructed, target, "l1", per_image_sum=True)
        self.optimize("generator", generator_adv + beta * ae)
        return {"recon": ae.item() / target[0].numel(), "kl_real": reg_real.item(), "kl_rec": reg_rec.item(),
                "kl_prior": reg_prior.item(), "encoder": encoder_loss.item()}


class CWGANGPRecipe(Recipe):
    """Section 5.1: conditional WGAN-GP; the critic sees the grey image with the colour image.

    critic:    D(L, fake) - D(L, real) + 10 * GP          (every batch)
    generator: -D(L, G(L, z)) [+ l1_weight * L1(G, real)] (every ``n_critic``-th batch)

    The learning rate falls linearly from ``lr`` to 0 over ``lr_decay_epochs`` epochs (the
    Trainer's schedule, ``schedule.LinearDecaySchedule``; ``--decay-epochs`` replaces it).
    ``recon`` is the L1 of the generated image to the photo: the optimised term for cwgan-gp-l1,
    a figure to watch for cwgan-gp. ``wasserstein`` is the critic's estimate D(real) - D(fake).
    """

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        if int(config["n_critic"]) < 1:
            raise ValueError("n_critic must be at least 1")
        self.networks["generator"] = spec.build(config)
        self.networks["critic"] = ResidualCritic(config["critic_width"])
        self.optimizers["generator"] = self.adam(self.networks["generator"])
        self.optimizers["critic"] = self.adam(self.networks["critic"])
        self.batches_seen = 0  # decides the generator's turns (every n_critic-th batch)

    def train_step(self, batch: Batch) -> dict[str, float]:
        generator, critic = self.networks["generator"], self.networks["critic"]
        lightness, target = batch["L"], rgb_target(batch)
        z = torch.randn(target.shape[0], self.config["latent_dim"], device=target.device)
        generator_turn = (self.batches_seen + 1) % int(self.config["n_critic"]) == 0
        with self.autocast():
            with torch.set_grad_enabled(generator_turn):  # keep the generator's graph only when it steps
                fake = generator(lightness, z)
            real_score = critic(lightness, target).float().mean()
            fake_score = critic(lightness, fake.detach()).float().mean()
            penalty = gradient_penalty(lambda rgb: critic(lightness, rgb), target, fake)
        critic_loss = fake_score - real_score + self.config["gp_weight"] * penalty
        self.optimize("critic", critic_loss)
        recon = pixel_loss(fake.detach(), target, "l1")
        losses = {"recon": recon.item(), "critic": critic_loss.item(), "wasserstein": (real_score - fake_score).item(), "gp": penalty.item()}
        self.batches_seen += 1
        if generator_turn:
            with self.frozen(critic), self.autocast():
                adversarial = -critic(lightness, fake).float().mean()
            generator_loss = adversarial
            if self.config["l1_weight"]:
                generator_loss = generator_loss + self.config["l1_weight"] * pixel_loss(fake, target, "l1")
            self.optimize("generator", generator_loss)
            losses["generator"] = adversarial.item()
        return losses

    def extra_metadata(self) -> dict[str, Any]:
        return {"batches_seen": self.batches_seen}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        self.batches_seen = int(extra.get("batches_seen", 0))


# --- training defaults, attached to the networks' registrations -------------------------------

COMMON_TRAINING: Config = {"batch_size": 64, "lr": 1e-3}
CNN_TRAINING: Config = {**COMMON_TRAINING, "loss": "l1", "betas": [0.9, 0.999]}
VAE_TRAINING: Config = {**COMMON_TRAINING, "betas": [0.5, 0.999], "encoder_channels": list(ENCODER_CHANNELS)}
WGAN_TRAINING: Config = {
    **COMMON_TRAINING,
    "betas": [0.5, 0.999],
    "critic_width": 128,
    "gp_weight": 10.0,
    "n_critic": 5,
    "l1_weight": 0.0,
    "lr_decay_epochs": 100,
}

TINY_TRAINING: Config = {"encoder_channels": [4, 8, 16], "critic_width": 4}  # for the registry-wide test

for _name, _recipe, _training in [
    ("cnn-l1", CNNRecipe, {**CNN_TRAINING, "loss": "l1"}),
    ("cnn-l2", CNNRecipe, {**CNN_TRAINING, "loss": "l2"}),
    ("cvae-l1", CVAERecipe, {**VAE_TRAINING, "loss": "l1"}),
    ("cvae-l2", CVAERecipe, {**VAE_TRAINING, "loss": "l2"}),
    ("cwgan-gp", CWGANGPRecipe, WGAN_TRAINING),
    ("cwgan-gp-l1", CWGANGPRecipe, {**WGAN_TRAINING, "n_critic": 1, "l1_weight": 1.0}),
    ("age", AGERecipe, {**VAE_TRAINING, "age_parameters": "joint"}),
    ("introvae", IntroVAERecipe, {**VAE_TRAINING, "alpha": 0.5, "beta": 0.4, "margin": 120.0}),
]:
    attach_recipe(_name, _recipe, _training, tiny={key: value for key, value in TINY_TRAINING.items() if key in _training})
