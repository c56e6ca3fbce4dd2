"""Diversity metrics for k colorizations of one photo (paper 004, Table 3).

All functions take normalised ab (ab / 110, the project's convention) shaped ``samples`` (B, k, 2,
H, W) and ``target`` (B, 2, H, W), and return one value per photo (B,); :func:`diversity_metrics`
averages them. The paper's figures are at 64x64 in its own ab / 128 units, so for the same colours
our error and distance read 128/110 = 1.16 times larger and our variance 1.35 times larger.

* error-of-best (Eob.): the error of the sample closest to the ground truth, "mean absolute error
  per pixel" (section 7.2) here the mean of |ab - ab_true| over pixels and both channels;
* variance: the per-pixel, per-channel variance across the k samples (population variance,
  divided by k), averaged over pixels and channels; the paper's proxy for diversity;
* mean pairwise ab distance: the Euclidean ab distance between two samples at a pixel, averaged
  over pixels and over all k(k-1)/2 pairs; ``pairwise_lab`` gives it in Lab units.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .color import AB_SCALE, rgb_to_lab_normalized, rgb_to_lightness, normalize_l

if TYPE_CHECKING:
    from .diverse import DiverseSampler

EVALUATION_SIZE = 64  # paper 004 evaluates 64x64 colour fields


def _check(samples: torch.Tensor) -> torch.Tensor:
    if samples.ndim != 5 or samples.shape[2] != 2:
        raise ValueError(f"samples must be shaped (B, k, 2, H, W), got {tuple(samples.shape)}")
    return samples.float()


def error_of_best(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per photo: min over the k samples of the mean absolute ab error to the ground truth."""
    samples = _check(samples)
    errors = (samples - target.float()[:, None]).abs().mean(dim=(2, 3, 4))
    return errors.min(dim=1).values


def per_pixel_variance(samples: torch.Tensor) -> torch.Tensor:
    """Per photo: variance across the k samples at each pixel and channel, averaged."""
    samples = _check(samples)
    return samples.var(dim=1, unbiased=False).mean(dim=(1, 2, 3))


def mean_pairwise_distance(samples: torch.Tensor) -> torch.Tensor:
    """Per photo: Euclidean ab distance per pixel, averaged over pixels and over all pairs (0 for k = 1)."""
    samples = _check(samples)
    batch, k = samples.shape[:2]
    if k < 2:
        return torch.zeros(batch)
    first, second = torch.triu_indices(k, k, offset=1)
    distances = (samples[:, first] - samples[:, second]).pow(2).sum(dim=2).sqrt()  # (B, pairs, H, W)
    return distances.mean(dim=(1, 2, 3))


def diversity_metrics(samples: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Averages over the photos: ``eob``, ``variance``, ``pairwise`` (normalised ab), ``pairwise_lab``."""
    pairwise = float(mean_pairwise_distance(samples).mean())
    return {
        "eob": float(error_of_best(samples, target).mean()),
        "variance": float(per_pixel_variance(samples).mean()),
        "pairwise": pairwise,
        "pairwise_lab": pairwise * AB_SCALE,
    }


def _resize(planes: torch.Tensor, size: int) -> torch.Tensor:
    if planes.shape[-2:] == (size, size):
        return planes.float()
    return F.interpolate(planes.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def measure_diversity(sampler: "DiverseSampler", rgb: torch.Tensor, k: int = 5, method: str = "topk", seed: int = 0,
                      size: int = EVALUATION_SIZE) -> dict[str, float]:
    """Table 3 for a batch of colour photos ``rgb`` (B, 3, H, W), uint8 or float in [0, 1].

    The sampler sees each photo's lightness at its own input size; its k colour fields and the
    true ab are compared at ``size`` x ``size`` (64 in the paper).
    """
    rgb = rgb.float() / 255.0 if not rgb.is_floating_point() else rgb.float()
    target = rgb_to_lab_normalized(_resize(rgb, size).clamp(0, 1))[1]
    model_size = sampler.colorizer.size
    lightness = normalize_l(rgb_to_lightness(_resize(rgb, model_size).clamp(0, 1)))
    samples = sampler.sample_ab(lightness, k, method, seed).ab.cpu()
    batch, count = samples.shape[:2]
    fields = _resize(samples.reshape(batch * count, *samples.shape[2:]), size).reshape(batch, count, 2, size, size)
    return {**diversity_metrics(fields, target), "images": batch, "k": k}
