"""Quantised ab colours for colorization as classification (Zhang, Isola, Efros 2016, sec. 2.1-2.3).

The ab plane is cut into 10x10 bins; only bins the sRGB gamut reaches at some lightness are kept
(Zhang et al. keep 313; this grid over [-110, 110] with a half-bin tolerance keeps a similar
set). Pure, batched, device-agnostic torch functions, like ``recolor.color``:

* :func:`gamut_bin_centres` the kept bin centres, normalised ab (Q, 2)
* :func:`soft_encode`       ground-truth ab -> soft targets on the 5 nearest bins (Gaussian, sigma 5)
* :func:`annealed_mean`     logits -> ab, the mean of the distribution re-sharpened by temperature T
* :func:`rebalancing_weights` class weights from the empirical bin distribution (sec. 2.2)

and the plain square grid of the same 10x10 bins over [-110, 110)^2, without the gamut test:

* :func:`ab_bin_index`      flat grid bin of every pixel (paper 004's histogram H: its weighted
                            error in :mod:`recolor.metrics`, divcolor's colourfulness loss)
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .color import AB_SCALE, lab_to_rgb, rgb_to_lab

BIN_SIZE = 10.0  # Lab units
GAMUT_TOLERANCE = 5.0  # a bin is kept when the gamut comes within half a bin of its centre
SOFT_NEIGHBOURS = 5
SOFT_SIGMA = 5.0  # Lab units
AB_BINS_PER_AXIS = int(2 * AB_SCALE / BIN_SIZE)  # the square grid: 22 bins of 10 over [-110, 110) per axis


@functools.lru_cache(maxsize=1)
def _gamut_bin_centres_lab() -> torch.Tensor:
    # explicit CPU: the first call may come while a network is built on the meta device
    grid = torch.arange(-110.0, 110.0 + 1e-6, BIN_SIZE, dtype=torch.float64, device="cpu")
    a, b = torch.meshgrid(grid, grid, indexing="ij")
    a, b = a.flatten(), b.flatten()
    lightness = torch.linspace(1.0, 99.0, 99, dtype=torch.float64, device="cpu")[:, None].expand(-1, a.numel())
    lab = torch.stack((lightness, a.expand_as(lightness), b.expand_as(lightness)))  # (3, 99, N)
    round_trip = rgb_to_lab(lab_to_rgb(lab))  # colours outside the gamut come back clipped
    reached = ((round_trip - lab)[1:].norm(dim=0) < GAMUT_TOLERANCE).any(dim=0)
    return torch.stack((a[reached], b[reached]), dim=1).float()


def ab_bin_index(ab: torch.Tensor, bins_per_axis: int = AB_BINS_PER_AXIS) -> torch.Tensor:
    """Flat square-grid bin (a_bin * bins_per_axis + b_bin) of every pixel of normalised ab (..., 2, H, W) -> (..., H, W).

    The grid cuts [-110, 110)^2 Lab units into ``bins_per_axis`` equal steps per axis (10x10 Lab-unit
    bins by default); values outside are put in the border bins.
    """
    step = 2 * AB_SCALE / bins_per_axis
    cells = torch.floor((ab.float() * AB_SCALE + AB_SCALE) / step).long().clamp_(0, bins_per_axis - 1)
    return cells[..., 0, :, :] * bins_per_axis + cells[..., 1, :, :]


def gamut_bin_centres(device: torch.device | str | None = None) -> torch.Tensor:
    """The in-gamut bin centres as normalised ab (ab / 110), shape (Q, 2)."""
    return (_gamut_bin_centres_lab() / AB_SCALE).to(device)


def _squared_distances(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) normalised ab, (Q, 2) centres -> (B, H, W, Q) squared distances in Lab units."""
    points = ab.float().permute(0, 2, 3, 1) * AB_SCALE
    return torch.cdist(points.reshape(-1, 2), centres.float() * AB_SCALE).pow(2).reshape(*points.shape[:3], -1)


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, neighbours: int = SOFT_NEIGHBOURS, sigma: float = SOFT_SIGMA) -> torch.Tensor:
    """Soft targets (B, Q, H, W): Gaussian weights on the ``neighbours`` nearest bins (Zhang sec. 2.1)."""
    distances = _squared_distances(ab, centres)
    nearest, index = distances.topk(neighbours, dim=-1, largest=False)
    weights = torch.softmax(-nearest / (2 * sigma**2), dim=-1)
    target = torch.zeros_like(distances).scatter_(-1, index, weights)
    return target.permute(0, 3, 1, 2)


def nearest_bin(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index (B, H, W) of the bin nearest each pixel's ab."""
    return _squared_distances(ab, centres).argmin(dim=-1)


def annealed_mean(logits: torch.Tensor, centres: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised ab (B, 2, H, W) from bin logits (B, Q, H, W) (Zhang sec. 2.3).

    ``temperature`` 1 is the distribution's mean (safe but desaturated), towards 0 its mode
    (vivid but patchy); Zhang et al. use 0.38.
    """
    probabilities = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("bqhw,qc->bchw", probabilities, centres.to(probabilities))


def rebalancing_weights(bin_counts: torch.Tensor, centres: torch.Tensor, mix: float = 0.5, sigma: float = SOFT_SIGMA) -> torch.Tensor:
    """Per-bin loss weights w ∝ ((1 - mix) * p~ + mix / Q)^-1 with E_p~[w] = 1 (Zhang eq. 3-4).

    p~ is the empirical bin distribution smoothed with a Gaussian of ``sigma`` Lab units.
    """
    probabilities = bin_counts.double() / bin_counts.sum().clamp_min(1)
    distances = torch.cdist(centres.double() * AB_SCALE, centres.double() * AB_SCALE).pow(2)
    kernel = torch.exp(-distances / (2 * sigma**2))
    smoothed = kernel @ probabilities
    smoothed = smoothed / smoothed.sum()
    weights = 1.0 / ((1 - mix) * smoothed + mix / len(centres))
    return (weights / (weights * smoothed).sum()).float()


def bin_histogram(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Pixel counts per bin (Q,) of a batch of normalised ab (B, 2, H, W)."""
    return torch.bincount(nearest_bin(ab, centres).flatten(), minlength=len(centres)).double()


def weighted_soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Zhang's multinomial loss: -sum_q target log softmax(logits), each pixel weighted by the
    weight of its most likely target bin."""
    loss = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)  # (B, H, W)
    if weights is not None:
        loss = loss * weights.to(loss.device)[target.argmax(dim=1)]
    return loss.mean()


def distribution_modes(probabilities: torch.Tensor, centres: torch.Tensor, k: int, separation: float = 20.0,
                       sigma: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``k`` distinct colours of one pixel's bin distribution ``(Q,)``: the peaks of the
    distribution smoothed by a Gaussian of ``sigma`` Lab units, each at least ``separation`` from
    the others, every bin's probability given to its nearest peak (so the masses sum to 1, as
    ideepcolor's suggestions cluster samples of the distribution into a few modes).

    Returns normalised ab ``(m, 2)`` (each the probability-weighted mean of its bins) and their
    masses ``(m,)``, likeliest first; m <= k."""
    lab = centres.double() * AB_SCALE
    p = probabilities.double().clamp_min(0)
    p = p / p.sum().clamp_min(1e-12)
    distances = torch.cdist(lab, lab)
    smoothed = torch.exp(-distances.pow(2) / (2 * sigma**2)) @ p
    peaks: list[int] = []
    available = torch.ones_like(smoothed, dtype=torch.bool)
    while len(peaks) < k and bool(available.any()):
        peak = int(torch.where(available, smoothed, torch.full_like(smoothed, -1.0)).argmax())
        peaks.append(peak)
        available &= distances[peak] >= separation
    owner = distances[:, peaks].argmin(dim=1)
    masses = torch.zeros(len(peaks), dtype=torch.float64).index_add_(0, owner, p)
    sums = torch.zeros(len(peaks), 2, dtype=torch.float64).index_add_(0, owner, p[:, None] * lab)
    means = torch.where(masses[:, None] > 0, sums / masses.clamp_min(1e-12)[:, None], lab[peaks])
    order = masses.argsort(descending=True)
    return (means[order] / AB_SCALE).float(), masses[order].float()
