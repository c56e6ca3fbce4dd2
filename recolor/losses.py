"""Adversarial and reconstruction losses, written once for every recipe.

Each function takes the critic's raw outputs (logits / scores), never sigmoid outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Paper 002 eq. 14-16: (BCE(1, D(real)) + BCE(0, D(fake))) / 2."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Paper 002 eq. 17, the non-saturating generator loss: BCE(1, D(fake))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
