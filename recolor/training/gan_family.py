"""The GAN family of paper 001 (section 3) and the WGAN-GP of paper 003, on pix2pix's networks.

Every model here is the pix2pix recipe (U-Net generator, conditional 70x70 PatchGAN critic on
(L, ab), lambda * L1 added to the generator's loss) with another adversarial loss, selected by the
config key ``gan``; the losses themselves are in ``recolor/losses.py``. The ResNet-18 generator
takes the same keys (``recolor train --model resnet18 --set gan=lsgan``).

* ``pix2pix-lsgan``: least squares, a = 0, b = 1, c = 1 (paper 001 sec. 3.2); the critic outputs
  raw scores.
* ``pix2pix-ebgan``: the discriminator is an auto-encoder (``networks/ebgan.py``) whose
  reconstruction MSE is the energy; L_D = D(x) + max(0, m - D(G(x))), L_G = D(G(x)) + 0.1 PT
  (paper 001 sec. 3.3). The pull-away term acts on the auto-encoder's code of the generated batch,
  as in EBGAN (paper 001 writes "a batch of images" for S).
* ``pix2pix-wgan``: critic loss E[D(fake)] - E[D(real)], every critic parameter clipped to
  [-0.01, 0.01] after each update, 5 critic updates per generator update, RMSProp with lr 5e-5
  for both networks (paper 001 sec. 3.4).
* ``wgan-gp``: paper 003 sec. IV: the PatchGAN critic with instance normalisation, gradient
  penalty weight 10, 5 critic updates per generator update, Adam lr 1e-4, betas (0, 0.9) (the
  WGAN-GP values paper 003 says it takes from [4]), batch 32 (its Table 1), and its two phases:
  60 epochs of L1 alone, then the adversarial loss -D + lambda * L1 with lambda = 1 (eq. 8).
  Train it with ``--epochs 120`` for the paper's 60 + 60.

Differences from the papers, deliberate:
* Paper 001 gives no EBGAN margin. Our energy is a per-pixel mean squared error on data in
  [-1, 1] (about 0.3 for an untrained auto-encoder), so the default margin is m = 1.0
  (``--set ebgan_margin=...``).
* WGAN's extra critic iterations (100 per generator step for the first 25 generator steps and
  every 500th) are not done: always n_critic = 5.
* Paper 003 gives the critic's Adam betas only; the generator uses the same optimiser settings
  (as in WGAN-GP) in both phases. Its U-Net differs from pix2pix's only in where the skip
  connections are taken (after the LeakyReLU); we use the pix2pix U-Net.
* L1 weight for the paper-001 variants: 100 as pix2pix (paper 001 sec. 4 adopts pix2pix's
  L1 + adversarial objective without giving lambda).
"""
from __future__ import annotations

from ..registry import Config, attach_recipe
from .pix2pix import CGAN_TRAINING_DEFAULTS, GAN_DEFAULTS, Pix2PixRecipe


def family_config(**changes) -> Config:
    return {**CGAN_TRAINING_DEFAULTS, **GAN_DEFAULTS, **changes}


FAMILY = {
    "pix2pix-lsgan": family_config(gan="lsgan"),
    "pix2pix-ebgan": family_config(gan="ebgan"),
    "pix2pix-wgan": family_config(gan="wgan", optimizer="rmsprop", lr=5e-5, n_critic=5, clip_value=0.01),
    "wgan-gp": family_config(gan="wgan-gp", critic_norm="instance", lr=1e-4, betas=[0.0, 0.9], n_critic=5, gp_weight=10.0,
                             l1_lambda=1.0, l1_pretrain_epochs=60, batch_size=32),
}

for name, training_defaults in FAMILY.items():
    attach_recipe(name, Pix2PixRecipe, training_defaults, tiny={"ndf": 8, "l1_pretrain_epochs": 0})
