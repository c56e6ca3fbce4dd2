"""pix2pix with the pre-trained ResNet-18 U-Net generator (paper 002 sections 4.2, 5.2, appendix A.2).

Everything but the generator is the pix2pix recipe: 70x70 PatchGAN, BCE cGAN + 100 * L1, two Adam
optimisers (lr 2e-4, betas (0.5, 0.999)), batch 16 at 256x256, decoder and critic N(0, 0.02).

``encoder_weights`` chooses the encoder's starting point: "imagenet" (torchvision's ImageNet
weights, the paper's choice, downloaded once), a path to a local ResNet-18 state dict
(.safetensors or .pth), or "none" (random initialisation). The weights are loaded in
:meth:`prepare`, i.e. only when a fresh training run starts: building the generator (inference,
resumed runs) never downloads, every weight then comes from the checkpoint.

The adversarial loss is pix2pix's BCE by default; the GAN-family keys of ``gan_family.py`` are in
this model's config too (``--set gan=lsgan``, or ``gan=wgan`` with ``optimizer=rmsprop``,
``lr=5e-5``, ``n_critic=5``, ...).

Command line: ``recolor train --model resnet18 --encoder-weights imagenet|none|PATH``.
"""
from __future__ import annotations

from typing import Any

import torch

from ..networks.resnet_unet import load_encoder_weights
from ..registry import Config, ModelSpec, attach_recipe
from .distributed import unwrap
from .pix2pix import CGAN_TRAINING_DEFAULTS, GAN_DEFAULTS, Pix2PixRecipe


class ResNetUNetRecipe(Pix2PixRecipe):
    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        self.encoder_init = "from checkpoint"

    def prepare(self, dataset: torch.utils.data.Dataset) -> None:
        super().prepare(dataset)
        self.encoder_init = load_encoder_weights(unwrap(self.generator).encoder, self.config["encoder_weights"])

    def extra_metadata(self) -> dict[str, Any]:
        return {**super().extra_metadata(), "encoder_init": self.encoder_init}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        super().load_extra_metadata(extra)
        self.encoder_init = extra.get("encoder_init", self.encoder_init)


attach_recipe("resnet18", ResNetUNetRecipe, {
    "encoder_weights": "imagenet",  # what initialises the encoder when a run starts
    **CGAN_TRAINING_DEFAULTS,
    **GAN_DEFAULTS,  # the adversarial loss is a choice here too: --set gan=lsgan ...
}, tiny={"encoder_weights": "none", "ndf": 8})
