"""pix2pix for colorization (paper 002 sections 4.2-5.2; paper 001 section 4).

Generator: the U-Net of ``networks/unet.py`` (L in, ab out). Critic: the 70x70 PatchGAN on
(L, ab). Losses: BCE cGAN (eq. 14-17) plus lambda * L1 with lambda = 100 (eq. 19); two Adam
optimisers, lr 2e-4, betas (0.5, 0.999); N(0, 0.02) initialisation.

Differences from the paper, deliberate: the default size is 256 like the paper, but the shipped
weights were trained at a smaller size and width on CPU (see weights/README.md); at inference
dropout is off (deterministic output: pix2pix's test-time dropout is the `pix2pix-dropout`
diverse sampler instead).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import (
    clip_weights_,
    ebgan_discriminator_loss,
    ebgan_generator_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    pull_away_term,
    reconstruction_energy,
    wgan_critic_loss,
    wgan_generator_loss,
)
from ..networks.ebgan import AutoencoderDiscriminator
from ..networks.patchgan import PatchDiscriminator
from ..registry import Config, ModelSpec, attach_recipe
from .recipe import Batch, Recipe

GAN_LOSSES = ("vanilla", "lsgan", "ebgan", "wgan", "wgan-gp")

# The GAN-family keys with pix2pix's behaviour as values: models that expose the choice of GAN
# (resnet18 and those of gan_family.py) put these in their default config.
GAN_DEFAULTS: Config = {
    "gan": "vanilla",
    "n_critic": 1,
    "critic_norm": "batch",
    "optimizer": "adam",
    "clip_value": 0.01,
    "gp_weight": 10.0,
    "ebgan_margin": 1.0,
    "pt_weight": 0.1,
    "l1_pretrain_epochs": 0,
}


class Pix2PixRecipe(Recipe):
    """pix2pix's training step; the optional config key ``gan`` swaps the adversarial loss.

    ``gan``: "vanilla" (pix2pix's own BCE, eq. 14-17, the default), "lsgan", "ebgan" (auto-encoder
    discriminator + pull-away term), "wgan" (weight clipping) or "wgan-gp" (gradient penalty); the
    models using them and their paper hyper-parameters are in ``gan_family.py``. The other optional
    keys, read with pix2pix's behaviour as default so pix2pix's own config stays as it was:
    ``n_critic`` (critic updates per generator update), ``critic_norm``, ``optimizer`` (adam |
    rmsprop), ``clip_value``, ``gp_weight``, ``ebgan_margin``, ``pt_weight``, ``l1_pretrain_epochs``.

    One ``train_step`` = one critic update on a fresh batch; every ``n_critic``-th step also
    updates the generator on that batch (WGAN's Algorithm 1 draws a new minibatch for each
    critic iteration), so an epoch is still one pass over the data. During the first
    ``l1_pretrain_epochs`` epochs (paper 003's first phase) the generator alone trains on L1.
    """

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        self.gan = config.get("gan", "vanilla")
        if self.gan not in GAN_LOSSES:
            raise ValueError(f"unknown gan '{self.gan}' (one of {', '.join(GAN_LOSSES)})")
        self.n_critic = int(config.get("n_critic", 1))
        if self.n_critic < 1:
            raise ValueError("n_critic must be at least 1")
        optimizer = config.get("optimizer", "adam")
        if optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"unknown optimizer '{optimizer}' (adam or rmsprop)")
        self.networks["generator"] = spec.build(config)
        self.networks["discriminator"] = self.build_critic()
        make_optimizer = self.adam if optimizer == "adam" else self.rmsprop
        self.optimizers["generator"] = make_optimizer(self.networks["generator"])
        self.optimizers["discriminator"] = make_optimizer(self.networks["discriminator"])
        self.steps_done = 0  # train_step calls so far
        self.critic_steps = 0  # adversarial steps so far (the generator steps on every n_critic-th)
        self.pretrain_steps = 0  # L1-only steps, fixed by prepare() from l1_pretrain_epochs

    def build_critic(self) -> nn.Module:
        norm = self.config.get("critic_norm", "batch")
        if self.gan == "ebgan":
            return AutoencoderDiscriminator(in_channels=3, ndf=self.config["ndf"], d_layers=self.config["d_layers"], norm=norm)
        return PatchDiscriminator(in_channels=3, ndf=self.config["ndf"], n_layers=self.config["d_layers"], norm=norm)

    def rmsprop(self, module: nn.Module) -> torch.optim.RMSprop:
        return torch.optim.RMSprop(module.parameters(), lr=self.config["lr"])

    def prepare(self, dataset: torch.utils.data.Dataset) -> None:
        super().prepare(dataset)
        # the epochs of this process: under torchrun each rank steps through its share of the data
        # only, so counting the whole dataset would make the L1 phase world_size times too long
        steps_per_epoch = self.steps_per_epoch if self.steps_per_epoch is not None else len(dataset) // self.config["batch_size"]
        self.pretrain_steps = round(float(self.config.get("l1_pretrain_epochs", 0)) * steps_per_epoch)

    # --- the losses of each GAN ----------------------------------------------------------
    def critic_loss(self, lightness: torch.Tensor, ab: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        critic = self.networks["discriminator"]
        if self.gan == "ebgan":
            real_energy = reconstruction_energy(*critic(lightness, ab)[:2])
            fake_energy = reconstruction_energy(*critic(lightness, fake)[:2])
            loss = ebgan_discriminator_loss(real_energy, fake_energy, self.config["ebgan_margin"])
            return loss, {"energy_real": real_energy.mean().item(), "energy_fake": fake_energy.mean().item()}
        real_scores, fake_scores = critic(lightness, ab), critic(lightness, fake)
        if self.gan == "lsgan":
            return lsgan_discriminator_loss(real_scores, fake_scores), {}
        if self.gan in ("wgan", "wgan-gp"):
            loss = wgan_critic_loss(real_scores, fake_scores)
            return loss, {"wasserstein": -loss.item()}
        return gan_discriminator_loss(real_scores, fake_scores), {}

    def generator_adversarial_loss(self, lightness: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        critic = self.networks["discriminator"]
        if self.gan == "ebgan":
            image, reconstruction, code = critic(lightness, fake)
            return ebgan_generator_loss(reconstruction_energy(image, reconstruction)) + self.config["pt_weight"] * pull_away_term(code)
        scores = critic(lightness, fake)
        if self.gan == "lsgan":
            return lsgan_generator_loss(scores)
        if self.gan in ("wgan", "wgan-gp"):
            return wgan_generator_loss(scores)
        return gan_generator_loss(scores)

    # --- one step ------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        lightness, ab = batch["L"], batch["ab"]
        generator, critic = self.networks["generator"], self.networks["discriminator"]
        self.steps_done += 1
        if self.steps_done <= self.pretrain_steps:
            with self.autocast():
                recon = F.l1_loss(generator(lightness).float(), ab)
            self.optimize("generator", recon)
            return {"recon": recon.item()}
        self.critic_steps += 1
        generator_turn = self.critic_steps % self.n_critic == 0
        with self.autocast(), torch.set_grad_enabled(generator_turn):
            fake = generator(lightness)
        with self.autocast():
            d_loss, logs = self.critic_loss(lightness, ab, fake.detach())
        if self.gan == "wgan-gp":
            # in fp32 outside autocast: the penalty differentiates through a gradient
            penalty = gradient_penalty(lambda mixed: critic(lightness.float(), mixed), ab, fake)
            logs["gp"] = penalty.item()
            d_loss = d_loss + self.config["gp_weight"] * penalty
        self.optimize("discriminator", d_loss)
        if self.gan == "wgan":
            clip_weights_(critic, self.config["clip_value"])
        logs = {"d": d_loss.item(), **logs}
        if not generator_turn:
            return {**logs, "recon": F.l1_loss(fake.float(), ab).item()}
        with self.frozen(critic), self.autocast():
            g_gan = self.generator_adversarial_loss(lightness, fake)
            recon = F.l1_loss(fake.float(), ab)
            g_loss = g_gan + self.config["l1_lambda"] * recon
        self.optimize("generator", g_loss)
        return {**logs, "g_gan": g_gan.item(), "recon": recon.item()}

    def extra_metadata(self) -> dict[str, Any]:
        if "gan" not in self.config:  # pix2pix itself: nothing to resume beyond the trainer's step
            return {}
        return {"gan_schedule": {"steps": self.steps_done, "critic_steps": self.critic_steps, "pretrain_steps": self.pretrain_steps}}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        schedule = extra.get("gan_schedule", {})
        self.steps_done = schedule.get("steps", self.steps_done)
        self.critic_steps = schedule.get("critic_steps", self.critic_steps)
        self.pretrain_steps = schedule.get("pretrain_steps", self.pretrain_steps)


# The critic and optimisation settings of paper 002 section 5.2, shared by both of its generators.
CGAN_TRAINING_DEFAULTS: Config = {
    "ndf": 64,
    "d_layers": 3,
    "lr": 2e-4,
    "betas": [0.5, 0.999],
    "l1_lambda": 100.0,
    "batch_size": 16,
}

# pix2pix's training keys are the critic and optimisation settings above; the GAN-family keys
# (GAN_DEFAULTS) are read with pix2pix's behaviour as their default.
attach_recipe("pix2pix", Pix2PixRecipe, CGAN_TRAINING_DEFAULTS, tiny={"ndf": 8})
