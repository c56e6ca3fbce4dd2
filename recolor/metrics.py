"""Evaluation metrics of the papers, as pure functions on torch tensors.

Conventions (every function states its own too):

* ``ab`` tensors are *normalised* ab (``ab / 110``, the project's network space), shaped
  ``(B, 2, H, W)``; errors on them are therefore in units of 110 Lab units (multiply by 110 for
  Lab units). Paper 004's tables use a comparable normalised scale (its errors are ~0.03).
* ``rgb`` tensors are sRGB in [0, 1], shaped ``(B, 3, H, W)``.
* Per-image functions return ``(B,)``; a set's figure is the mean over its images (all images of
  an evaluation set have the same size, so this equals the mean over all pixels of the set).

Pixel metrics: :func:`ab_l1`, :func:`ab_l1_grid`, :func:`weighted_ab_error` (paper 004, Table 2),
:func:`psnr`, :func:`ssim`, :func:`colourfulness` (Hasler and Suesstrunk 2003).
Diversity (paper 004, Table 3): :func:`error_of_best`, :func:`per_pixel_variance` (samples
shaped (B, k, 2, H, W)).
Classifier-based (paper 003): :func:`accuracy`, :func:`cim` (eq. 9-10), :func:`omega` (eq. 11).
Distribution (paper 000): :func:`inception_score`, :func:`frechet_distance`.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .ab_bins import AB_BINS_PER_AXIS, ab_bin_index

# --- ab errors ------------------------------------------------------------------------------

GRID_POINTS = 8


def ab_l1(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute ab error over all pixels and both channels, (B,), normalised units."""
    return (pred_ab.float() - true_ab.float()).abs().mean(dim=(-3, -2, -1))


def centre_grid(height: int, width: int, points: int = GRID_POINTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of paper 004's "8x8 uniformly spaced grid in the center of image".

    Definition used here (the paper gives none more precise): the central half of the image
    (rows H/4 .. 3H/4, columns W/4 .. 3W/4) is cut into 8x8 equal cells and the pixel at each
    cell's centre is taken: row_i = floor(H/4 + (i + 1/2) * H/16), i = 0..7 (likewise columns).
    On 32x32 CIFAR images that is every other pixel of the central 16x16; on 256x256, every
    16th pixel of the central 128x128. Sparse points avoid counting many correlated neighbours.
    """
    def axis(n: int) -> torch.Tensor:
        positions = [math.floor(n / 4 + (i + 0.5) * n / (2 * points)) for i in range(points)]
        return torch.tensor([min(max(p, 0), n - 1) for p in positions], dtype=torch.long)

    return axis(height), axis(width)


def grid_pixels(tensor: torch.Tensor, points: int = GRID_POINTS) -> torch.Tensor:
    """The centre-grid pixels of (..., C, H, W) as (..., C, points, points)."""
    rows, cols = centre_grid(tensor.shape[-2], tensor.shape[-1], points)
    rows, cols = rows.to(tensor.device), cols.to(tensor.device)
    return tensor.index_select(-2, rows).index_select(-1, cols)


def ab_l1_grid(pred_ab: torch.Tensor, true_ab: torch.Tensor, points: int = GRID_POINTS) -> torch.Tensor:
    """:func:`ab_l1` over the 8x8 centre grid of :func:`centre_grid` only, (B,)."""
    return ab_l1(grid_pixels(pred_ab, points), grid_pixels(true_ab, points))


# --- paper 004's weighted absolute error -------------------------------------------------------

# the ab quantisation of Zhang et al. 2016, which paper 004 uses: 10x10 Lab-unit bins over [-110, 110)^2
AB_BINS = AB_BINS_PER_AXIS**2  # 484 (recolor.ab_bins.ab_bin_index)


def ab_histogram(ab: torch.Tensor) -> torch.Tensor:
    """Pixel counts per ab bin of a batch of normalised ab (..., 2, H, W): (484,) float64."""
    return torch.bincount(ab_bin_index(ab).flatten(), minlength=AB_BINS).double()


def inverse_frequency_weights(counts: torch.Tensor) -> torch.Tensor:
    """Paper 004's evaluation weights 1/H_b, H the normalised histogram (sums to 1); 0 for empty bins.

    Raw inverse frequencies, unlike the smoothed and uniform-mixed training weights of divcolor's
    colourfulness loss (:func:`recolor.training.divcolor.colourfulness_loss_weights`).

    Empty bins never weigh anything: the weight of a pixel is looked up at its ground-truth
    colour, which by construction falls in an occupied bin of the ground-truth histogram.
    Note E_pixels[1/H] = number of occupied bins, which is why paper 004's weighted errors are
    ~100-300 times its plain errors.
    """
    probability = counts.double() / counts.sum().clamp_min(1)
    return torch.where(probability > 0, 1.0 / probability.clamp_min(1e-300), torch.zeros_like(probability))


def weighted_ab_error(pred_ab: torch.Tensor, true_ab: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-image mean of w[bin(true_p)] * |pred_p - true_p| over pixels p, (B,) (paper 004, Table 2).

    ``|.|`` is the mean absolute difference over the two ab channels (as :func:`ab_l1`, so with
    all weights 1 this *is* ab_l1); ``weights`` come from :func:`inverse_frequency_weights` of the
    ground-truth set.
    """
    error = (pred_ab.float() - true_ab.float()).abs().mean(dim=-3).double()
    pixel_weights = weights.to(error.device)[ab_bin_index(true_ab)]
    return (pixel_weights * error).mean(dim=(-2, -1))


def binned_ab_error(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
    """Sums of per-pixel ab errors grouped by the ground-truth bin, (484,) float64.

    With these sums a set's weighted error can be computed in one streaming pass, before the
    ground-truth histogram is complete: mean_p w[b_p] e_p = sum_b w_b E_b / n_pixels.
    """
    error = (pred_ab.float() - true_ab.float()).abs().mean(dim=-3).double()
    return torch.bincount(ab_bin_index(true_ab).flatten(), weights=error.flatten(), minlength=AB_BINS)


def weighted_error_from_bins(error_sums: torch.Tensor, pixel_count: int, weights: torch.Tensor) -> float:
    """The set's weighted absolute error from :func:`binned_ab_error` sums (equals the mean of
    :func:`weighted_ab_error` over equally sized images)."""
    return float((error_sums.double() * weights.double()).sum() / max(pixel_count, 1))


# --- RGB fidelity ------------------------------------------------------------------------------

def psnr(pred_rgb: torch.Tensor, true_rgb: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB over the three RGB channels, (B,); +inf for identical images."""
    mse = (pred_rgb.double() - true_rgb.double()).pow(2).mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_kernel(sigma: float, truncate: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def ssim(pred_rgb: torch.Tensor, true_rgb: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004), mean over channels, (B,).

    Matches ``skimage.metrics.structural_similarity(..., channel_axis=0, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)``: an 11x11 Gaussian window
    (truncated at 3.5 sigma), K1 = 0.01, K2 = 0.03, averaged over the pixels whose window lies
    fully inside the image. Images must be at least 11 pixels on each side.
    """
    x, y = pred_rgb.double(), true_rgb.double()
    batch, channels, height, width = x.shape
    kernel = _gaussian_kernel(sigma, 3.5, x.dtype, x.device)
    size = kernel.numel()
    if height < size or width < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size} pixels, got {height}x{width}")

    def blur(image: torch.Tensor) -> torch.Tensor:
        flat = image.reshape(batch * channels, 1, *image.shape[-2:])
        flat = F.conv2d(flat, kernel.view(1, 1, size, 1))
        flat = F.conv2d(flat, kernel.view(1, 1, 1, size))
        return flat.reshape(batch, channels, *flat.shape[-2:])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(-3, -2, -1))


# --- colourfulness -----------------------------------------------------------------------------

def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk (2003) colourfulness M of each image, (B,), on the 0..255 scale.

    rg = R - G, yb = (R + G)/2 - B over the pixels of an image;
    M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2)
    (population standard deviations). A grey image scores 0; the paper's scale calls ~33
    "moderately", ~59 "quite" and ~82 "highly" colourful.
    """
    rgb = rgb.double() * 255.0
    red, green, blue = rgb.unbind(dim=-3)
    rg = (red - green).flatten(-2)
    yb = (0.5 * (red + green) - blue).flatten(-2)
    spread = torch.sqrt(rg.var(dim=-1, unbiased=False) + yb.var(dim=-1, unbiased=False))
    centre = torch.sqrt(rg.mean(dim=-1) ** 2 + yb.mean(dim=-1) ** 2)
    return spread + 0.3 * centre


# --- diversity (paper 004, Table 3) ------------------------------------------------------------
# k colorizations of each photo, ``samples`` shaped (B, k, 2, H, W) in normalised ab. The paper's
# figures are at 64x64 in its own ab / 128 units, so for the same colours our error reads 128/110 =
# 1.16 times larger and our variance 1.35 times larger.

def _check_samples(samples: torch.Tensor) -> torch.Tensor:
    if samples.ndim != 5 or samples.shape[2] != 2:
        raise ValueError(f"samples must be shaped (B, k, 2, H, W), got {tuple(samples.shape)}")
    return samples.float()


def error_of_best(samples: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per photo (B,): the smallest, over the k samples, mean absolute ab error to the ground truth
    ``target`` (B, 2, H, W) ("mean absolute error per pixel", section 7.2: over pixels and both channels)."""
    samples = _check_samples(samples)
    errors = (samples - target.float()[:, None]).abs().mean(dim=(2, 3, 4))
    return errors.min(dim=1).values


def per_pixel_variance(samples: torch.Tensor) -> torch.Tensor:
    """Per photo (B,): the variance across the k samples (population variance, divided by k) at
    each pixel and channel, averaged: the paper's proxy for diversity."""
    samples = _check_samples(samples)
    return samples.var(dim=1, unbiased=False).mean(dim=(1, 2, 3))


def local_diversity_share(samples: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per photo (B,): the part of the samples' differences that is not one global shift.

    For each pair of samples, d the per-pixel ab difference (a 2-vector), the share is
    mean |d - mean(d)| / mean |d| over the pixels; the photo's figure is its pairs' mean. A uniform
    tint scores 0; a change confined to a fraction f of the photo scores 2 (1 - f) (1 for half the
    photo, near 2 for a small object). Pairs that do not differ are left out; NaN when none differ."""
    samples = _check_samples(samples)
    first, second = torch.triu_indices(samples.shape[1], samples.shape[1], offset=1)
    if not len(first):
        raise ValueError("the local diversity share needs at least two samples per photo")
    shares = []
    for i, j in zip(first.tolist(), second.tolist()):  # pair by pair: bounded memory
        d = samples[:, i] - samples[:, j]
        total = d.norm(dim=1).mean(dim=(-2, -1))
        local = (d - d.mean(dim=(-2, -1), keepdim=True)).norm(dim=1).mean(dim=(-2, -1))
        shares.append(torch.where(total > eps, local / total.clamp_min(eps), torch.full_like(total, float("nan"))))
    return torch.stack(shares, dim=1).nanmean(dim=1)


# --- classifier-based (paper 003) --------------------------------------------------------------

def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images classified as their label: ``scores`` are probabilities or logits
    (N, C), or already the predicted class indices (N,)."""
    predicted = scores.argmax(dim=-1) if scores.ndim == 2 else scores
    return float((predicted.long() == labels.long().to(predicted.device)).double().mean())


def true_class_probability(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p(label | image) for each image, (N,)."""
    return probabilities.gather(-1, labels.long().to(probabilities.device).view(-1, 1)).squeeze(-1)


def cim_weights(p_colour: torch.Tensor, p_grey: torch.Tensor) -> torch.Tensor:
    """Eq. 9: w_i = |p_i^colour - p_i^grey|, the importance of colour for classifying image i."""
    return (p_colour.double() - p_grey.double()).abs()


def cim(p_colour: torch.Tensor, p_grey: torch.Tensor, p_fake: torch.Tensor) -> float:
    """Colour Importance Metric, eq. 10: sum_i w_i p_i^fake / sum_i w_i, in [0, 1].

    Each argument is (M,): the classifier's probability of the right class for the colour
    original, its greyscale copy (3 equal channels) and the recolorized image. NaN when no image
    needs colour (all weights 0).
    """
    weights = cim_weights(p_colour, p_grey)
    total = weights.sum()
    if total <= 0:
        return float("nan")
    return float((weights * p_fake.double()).sum() / total)


def _parameters(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model, nn.Module):
        return dict(model.named_parameters())
    return dict(model)


def omega(model_a: nn.Module | Mapping[str, torch.Tensor], model_b: nn.Module | Mapping[str, torch.Tensor]) -> float:
    """Eq. 11: ||w^(A) - w^(B)||_2^2 over all trainable parameters of two identical classifiers.

    Accepts modules (their ``named_parameters``: batch-norm running statistics are buffers, not
    weights, and are left out) or plain name -> tensor mappings.
    """
    a, b = _parameters(model_a), _parameters(model_b)
    if a.keys() != b.keys():
        raise ValueError("omega needs two models of the same architecture (parameter names differ)")
    total = torch.zeros((), dtype=torch.float64)
    for name, tensor in a.items():
        other = b[name]
        if tensor.shape != other.shape:
            raise ValueError(f"omega: parameter '{name}' has shape {tuple(tensor.shape)} vs {tuple(other.shape)}")
        total += (tensor.detach().double().cpu() - other.detach().double().cpu()).pow(2).sum()
    return float(total)


# --- distribution metrics (paper 000) -------------------------------------------------------

def inception_score(probabilities: torch.Tensor, splits: int = 1) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016), mean and std over ``splits``.

    ``probabilities`` is (N, C) softmax output of the backbone. The N images are cut into
    ``splits`` consecutive parts (10 in the usual protocol), p(y) is the mean within each part.
    Ranges from 1 (every image gets the same distribution) to C.
    """
    probs = probabilities.double()
    splits = max(1, min(int(splits), probs.shape[0]))
    scores = []
    for part in torch.tensor_split(probs, splits):
        marginal = part.mean(dim=0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(dim=1)
        scores.append(torch.exp(kl.mean()))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False)) if splits > 1 else 0.0


class FeatureMoments:
    """Running mean and covariance of feature vectors (float64), so FID streams over any N."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        features = features.detach().double().cpu().flatten(1)
        self.count += features.shape[0]
        self.total += features.sum(dim=0)
        self.outer += features.T @ features

    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    def covariance(self) -> torch.Tensor:
        """Unbiased (N - 1) covariance, as numpy.cov in the reference FID code."""
        mean = self.mean()
        if self.count < 2:
            return torch.zeros_like(self.outer)
        return (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017), in float64.

    Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the
    symmetric S_a^(1/2) S_b S_a^(1/2) (similar to S_a S_b), which stays real and stable even
    when the covariances are singular (fewer images than feature dimensions).
    """
    mean_a, mean_b, cov_a, cov_b = (t.double() for t in (mean_a, mean_b, cov_a, cov_b))
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    value = (mean_a - mean_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_sqrt
    return float(value.clamp_min(0))


def fid(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between two sets of feature vectors (N, D) and (M, D)."""
    moments = []
    for features in (features_a, features_b):
        accumulator = FeatureMoments(features.shape[-1])
        accumulator.update(features)
        moments.append(accumulator)
    return frechet_distance(moments[0].mean(), moments[0].covariance(), moments[1].mean(), moments[1].covariance())


def mean_of(values: Iterable[float]) -> float:
    """Mean of a sequence of floats (NaN when empty)."""
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")
