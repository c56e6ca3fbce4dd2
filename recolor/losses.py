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


def kl_divergence_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions, averaged over the batch.

    Kingma & Welling's closed form (paper 000 section 2.2.3): -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    mu, logvar = mu.float(), logvar.float()
    per_element = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())
    return per_element.flatten(1).sum(dim=1).mean()


def gradient_penalty(critic_fn, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty E[(||grad D(x_hat)||_2 - 1)^2] at x_hat = eps * real + (1 - eps) * fake.

    Gulrajani et al. 2017 (paper 000 eq. 5, paper 003): eps ~ U[0, 1] per sample. ``critic_fn``
    maps a batch shaped like ``real`` to scores, so a conditional critic is passed as e.g.
    ``lambda x: critic(lightness, x)``. The weight (lambda = 10) is the caller's. The result keeps
    its graph (create_graph) so the penalty trains the critic.
    """
    real, fake = real.detach().float(), fake.detach().float()
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    mixed = (eps * real + (1.0 - eps) * fake).requires_grad_(True)
    scores = critic_fn(mixed)
    (grad,) = torch.autograd.grad(scores.float().sum(), mixed, create_graph=True)
    norm = grad.flatten(1).pow(2).sum(dim=1).add(1e-12).sqrt()  # the epsilon keeps d(norm) finite at 0
    return (norm - 1.0).pow(2).mean()


# --- the GAN family of paper 001 section 3 (WGAN-GP's penalty is gradient_penalty above) ---------

def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, a: float = 0.0, b: float = 1.0) -> torch.Tensor:
    """LSGAN (paper 001 sec. 3.2): 1/2 E[(D(x) - b)^2] + 1/2 E[(D(G(z)) - a)^2], a = 0 fake, b = 1 real."""
    return 0.5 * (real_scores.float() - b).pow(2).mean() + 0.5 * (fake_scores.float() - a).pow(2).mean()


def lsgan_generator_loss(fake_scores: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """LSGAN (paper 001 sec. 3.2): 1/2 E[(D(G(z)) - c)^2] with c = 1 (the generator wants "real")."""
    return 0.5 * (fake_scores.float() - c).pow(2).mean()


def reconstruction_energy(inputs: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """EBGAN's energy (paper 001 sec. 3.3): the auto-encoder's mean squared error, one value per sample."""
    return (reconstruction.float() - inputs.float()).pow(2).flatten(1).mean(dim=1)


def ebgan_discriminator_loss(real_energy: torch.Tensor, fake_energy: torch.Tensor, margin: float) -> torch.Tensor:
    """EBGAN (paper 001 sec. 3.3): L_D = D(x) + max(0, m - D(G(z))), averaged over the batch."""
    return real_energy.mean() + F.relu(margin - fake_energy).mean()


def ebgan_generator_loss(fake_energy: torch.Tensor) -> torch.Tensor:
    """EBGAN (paper 001 sec. 3.3): L_G = D(G(z)) (the pull-away term is added separately)."""
    return fake_energy.mean()


def pull_away_term(representations: torch.Tensor) -> torch.Tensor:
    """PT(S) = 1/(N(N-1)) sum_i sum_{j != i} (S_i.S_j / (|S_i| |S_j|))^2 over a batch of N samples.

    Paper 001 sec. 3.3 (EBGAN-PT). ``representations`` is (N, ...), flattened per sample; EBGAN
    applies it to the auto-encoder's encoder output for generated samples. Needs N >= 2.
    """
    count = representations.shape[0]
    if count < 2:
        raise ValueError("the pull-away term needs a batch of at least 2 samples")
    unit = F.normalize(representations.float().flatten(1), dim=1)
    cosine = unit @ unit.t()
    off_diagonal = cosine.pow(2).sum() - cosine.diagonal().pow(2).sum()
    return off_diagonal / (count * (count - 1))


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN (paper 001 sec. 3.4, paper 003 eq. 7): the critic maximises E[D(real)] - E[D(fake)]."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """WGAN (paper 003 eq. 8, adversarial part): -E[D(x, G(x))]."""
    return -fake_scores.float().mean()


@torch.no_grad()
def clip_weights_(module: torch.nn.Module, limit: float) -> None:
    """WGAN's Lipschitz constraint (paper 001 sec. 3.4): clamp every critic parameter to [-c, c]."""
    for parameter in module.parameters():
        parameter.clamp_(-limit, limit)
