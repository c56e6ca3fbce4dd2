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

import torch.nn.functional as F

from ..losses import gan_discriminator_loss, gan_generator_loss
from ..networks.patchgan import PatchDiscriminator
from ..networks.unet import UNetGenerator
from ..registry import Config, ModelSpec, register_model
from .recipe import Batch, Recipe

UNET_ARCHITECTURE_KEYS = ("ngf", "num_downs", "dropout", "dropout_layers", "norm")


def build_unet(config: Config) -> UNetGenerator:
    return UNetGenerator(in_channels=1, out_channels=2, **{key: config[key] for key in UNET_ARCHITECTURE_KEYS})


class Pix2PixRecipe(Recipe):
    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        self.networks["generator"] = spec.build(config)
        self.networks["discriminator"] = PatchDiscriminator(in_channels=3, ndf=config["ndf"], n_layers=config["d_layers"], norm="batch")
        self.optimizers["generator"] = self.adam(self.networks["generator"])
        self.optimizers["discriminator"] = self.adam(self.networks["discriminator"])

    def train_step(self, batch: Batch) -> dict[str, float]:
        lightness, ab = batch["L"], batch["ab"]
        generator, critic = self.networks["generator"], self.networks["discriminator"]
        with self.autocast():
            fake = generator(lightness)
            d_loss = gan_discriminator_loss(critic(lightness, ab), critic(lightness, fake.detach()))
        self.optimize("discriminator", d_loss)
        with self.frozen(critic), self.autocast():
            g_gan = gan_generator_loss(critic(lightness, fake))
            recon = F.l1_loss(fake.float(), ab)
            g_loss = g_gan + self.config["l1_lambda"] * recon
        self.optimize("generator", g_loss)
        return {"d": d_loss.item(), "g_gan": g_gan.item(), "recon": recon.item()}


PIX2PIX_DEFAULTS: Config = {
    "image_size": 256,
    "ngf": 64,
    "num_downs": 8,
    "dropout": 0.5,
    "dropout_layers": 3,
    "norm": "batch",
    "ndf": 64,
    "d_layers": 3,
    "lr": 2e-4,
    "betas": [0.5, 0.999],
    "l1_lambda": 100.0,
    "batch_size": 16,
}

register_model(
    ModelSpec(
        name="pix2pix",
        description="pix2pix U-Net generator + 70x70 PatchGAN, BCE cGAN + 100*L1 (the shipped default)",
        paper="002 sec. 4-5, App. A.1/A.3; 001 sec. 4",
        build=build_unet,
        default_config=PIX2PIX_DEFAULTS,
        recipe=Pix2PixRecipe,
    )
)
