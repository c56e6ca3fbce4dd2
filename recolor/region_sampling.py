"""Per-object diverse colorization from a classification network's own colour distribution.

The default model (effnet-unet) predicts, for every pixel at 1/4 of its input, a distribution
over the gamut's ab bins. Drawing each pixel on its own gives confetti (Deshpande et al. 2017);
this module draws *regions* instead, in four steps:

1. **Regions.** SLIC superpixels of the lightness at the network's 1/4 grid (scikit-image), then
   neighbours merged while their average distributions are alike (scikit-image's hierarchical
   region-adjacency-graph merging; total-variation distance of the distributions smoothed over
   nearby bins): an object the model hesitates about in one way becomes one region.
2. **Modes.** Each region's average distribution is clustered into its distinct colours
   (:func:`recolor.ab_bins.distribution_modes`, as ideepcolor's suggestions are); modes lighter
   than ``min_mass`` are dropped, so where the model is sure only one is left and every sample
   agrees (sky, grass), and where it is not (clothes, cars, flowers) the samples differ.
3. **Draws.** One mode per region and sample, seeded: ``topk`` shares the k samples out among a
   region's modes in proportion to their masses (sample 1 takes every region's likeliest mode,
   the others are dealt at random), ``random`` draws each independently by mass.
4. **Colour.** The drawn colour becomes a point hint at the centre of each of the region's
   superpixels (a list of ``(x, y, "#rrggbb")``, the hints that produced the sample). A
   hint-taking network (the default) is run again with those points, so it spreads the colour
   to the object's edges itself, and a sample is exactly ``colorize(photo, hints=...)``. For a
   network without hints (for a hint network too with ``condition=True``) the drawn mode is
   written into the region's logits instead (each bin's logit raised by its closeness to the mode); decoded as
   the model decodes (colour boost, annealed mean). Writing it into a hint network's logits as
   well (the default until the thirteenth session, when its hint spread still followed points
   loosely) made samples that an ImageNet classifier recognised less often (photos/val, 120
   photos, agreement with its top-1 on the real photo, ``benchmarks/diverse_plausibility.py``:
   0.618 with, 0.633 without, 0.658 for the single colorization).

Pure functions on one photo plus :class:`RegionSampler`, the sampler behind
:func:`recolor.diverse.load_sampler` for such networks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .ab_bins import distribution_modes
from .color import AB_SCALE, denormalize_ab, denormalize_l, lab_to_srgb_levels, rgb_from_xyz_matrix
from .diverse import DiverseSampler, DiverseSamples, photo_seeds
from .hints import HintPoint, global_hint_length, local_hint_image, points_at_lightness

SUPERPIXELS = 48  # SLIC superpixels asked for on the 1/4 grid (64x64 for a 256 input)
MERGE_DISTANCE = 0.3  # neighbours whose smoothed distributions differ by less (total variation) merge
LARGEST_REGION = 0.35  # share of the photo past which regions stop merging
MAX_MODES = 4
MIN_MASS = 0.12  # a region's colours lighter than this are not drawn
MODE_SIGMA = 12.0  # Lab units: how close a bin must be to the drawn mode to keep its logit
HINTLESS_FLOOR = 0.02  # a bin far from the mode keeps this share of its probability (hint-free networks)


def smoothing_kernel(centres: torch.Tensor, sigma: float = 10.0) -> torch.Tensor:
    """(Q, Q) Gaussian weights between bin centres (``sigma`` Lab units), rows summing to 1."""
    distances = torch.cdist(centres.double(), centres.double()) * AB_SCALE
    kernel = torch.exp(-distances.pow(2) / (2 * sigma**2))
    return (kernel / kernel.sum(dim=1, keepdim=True)).float()


def segment_regions(lightness: np.ndarray, probabilities: torch.Tensor, kernel: torch.Tensor,
                    superpixels: int = SUPERPIXELS, merge_distance: float = MERGE_DISTANCE,
                    largest: float = LARGEST_REGION) -> tuple[np.ndarray, np.ndarray]:
    """Superpixels and regions of one photo on the network's 1/4 grid.

    ``lightness`` (h, w) in 0..1, ``probabilities`` (Q, h, w). Returns two label maps (h, w):
    SLIC superpixels of the lightness (0..S-1) and the regions they merge into (0..R-1), none
    merged past a ``largest`` share of the photo (a region drawn as one changes as one)."""
    from skimage import graph
    from skimage.segmentation import slic

    pixels = slic(lightness.astype(np.float64), n_segments=superpixels, compactness=0.05, channel_axis=None,
                  start_label=0, enforce_connectivity=True)
    count = int(pixels.max()) + 1
    flat = torch.from_numpy(pixels.reshape(-1)).long()
    sums = torch.zeros(count, probabilities.shape[0]).index_add_(0, flat, probabilities.flatten(1).T.float())
    sizes = torch.bincount(flat, minlength=count).float()
    smoothed = (sums / sizes.clamp_min(1)[:, None]) @ kernel
    rag = graph.RAG(pixels)
    for node in rag.nodes:
        rag.nodes[node].update(labels=[node], distribution=smoothed[node], size=float(sizes[node]))
    cap = largest * pixels.size

    def weight(graph_, a: int, b: int) -> float:
        if graph_.nodes[a]["size"] + graph_.nodes[b]["size"] > cap:
            return float("inf")
        return 0.5 * float((graph_.nodes[a]["distribution"] - graph_.nodes[b]["distribution"]).abs().sum())

    for a, b in rag.edges:
        rag.edges[a, b]["weight"] = weight(rag, a, b)

    def merge(graph_, source, target):
        s, t = graph_.nodes[source], graph_.nodes[target]
        total = s["size"] + t["size"]
        t["distribution"] = (s["distribution"] * s["size"] + t["distribution"] * t["size"]) / total
        t["size"] = total

    regions = graph.merge_hierarchical(pixels, rag, thresh=merge_distance, rag_copy=False, in_place_merge=True,
                                       merge_func=merge, weight_func=lambda g, s, t, n: {"weight": weight(g, t, n)})
    _, regions = np.unique(regions, return_inverse=True)
    return pixels, regions.reshape(pixels.shape)


def region_modes(probabilities: torch.Tensor, regions: np.ndarray, centres: torch.Tensor, max_modes: int = MAX_MODES,
                 min_mass: float = MIN_MASS) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per region: its average distribution's distinct colours (m, 2) normalised ab and their
    masses (m,), likeliest first, renormalised after the modes under ``min_mass`` are dropped
    (the likeliest always stays)."""
    flat = torch.from_numpy(regions.reshape(-1)).long()
    count = int(flat.max()) + 1
    sums = torch.zeros(count, probabilities.shape[0]).index_add_(0, flat, probabilities.flatten(1).T.float().cpu())
    found = []
    for row in sums:
        modes, masses = distribution_modes(row, centres.cpu(), max_modes)
        keep = masses >= min_mass
        keep[0] = True
        found.append((modes[keep], masses[keep] / masses[keep].sum()))
    return found


def draw_modes(masses: list[torch.Tensor], k: int, method: str, generator: torch.Generator) -> torch.Tensor:
    """Which mode (index) each of k samples takes in each region: (k, R).

    ``topk``: a region's modes are dealt out to the samples in proportion to their masses
    (systematic sampling: a mode of mass >= 1/k is in at least one sample), sample 1 gets the
    likeliest, the rest in random order; ``random``: independent draws by mass."""
    choices = torch.zeros(k, len(masses), dtype=torch.long)
    for region, weights in enumerate(masses):
        if len(weights) == 1:
            continue
        if method == "random":
            choices[:, region] = torch.multinomial(weights, k, replacement=True, generator=generator)
            continue
        offset = float(torch.rand((), generator=generator))
        positions = (torch.arange(k, dtype=torch.float64) + offset) / k
        dealt = torch.searchsorted(torch.cumsum(weights.double(), 0), positions, right=True).clamp_max(len(weights) - 1)
        rest = dealt[1:][torch.randperm(k - 1, generator=generator)] if k > 1 else dealt[1:]
        choices[:, region] = torch.cat((torch.zeros(1, dtype=torch.long), rest))
    return choices


def superpixel_centres(pixels: np.ndarray) -> list[tuple[int, int]]:
    """(row, column) of each superpixel's most interior cell (farthest from its border)."""
    from scipy import ndimage

    centres = []
    for label in range(int(pixels.max()) + 1):
        inside = np.pad(pixels == label, 1)
        depth = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
        row, column = np.unravel_index(int(depth.argmax()), depth.shape)
        centres.append((int(row), int(column)))
    return centres


def mode_colour(ab: torch.Tensor, lightness: float) -> tuple[int, int, int]:
    """The sRGB colour (0-255) of normalised ``ab`` (2,) at ``lightness`` (0..100)."""
    rgb = lab_to_srgb_levels(torch.full((1, 1), lightness), denormalize_ab(ab.float()).view(2, 1, 1),
                             rgb_from_xyz_matrix(torch.device("cpu")), 255.0)
    return tuple(int(v) for v in rgb[0, 0].round().clamp(0, 255).tolist())


def condition_logits(logits: torch.Tensor, regions: np.ndarray, chosen_ab: torch.Tensor, centres: torch.Tensor,
                     sigma: float = MODE_SIGMA, floor: float = HINTLESS_FLOOR) -> torch.Tensor:
    """(Q, h, w) logits with each region's bins weighted by their closeness to its drawn colour:
    logit + log(exp(-d^2 / 2 sigma^2) + floor), d the bin's distance (Lab) to ``chosen_ab[region]``."""
    distances = torch.cdist(chosen_ab.float().to(centres.device) * AB_SCALE, centres.float() * AB_SCALE)  # (R, Q)
    bonus = torch.log(torch.exp(-distances.pow(2) / (2 * sigma**2)) + floor)
    index = torch.from_numpy(regions).long().to(logits.device)
    return logits + bonus.to(logits)[index].permute(2, 0, 1)


class RegionSampler(DiverseSampler):
    """k per-object colorizations from a classification network's per-pixel bin distributions."""

    kind = "regions"

    def __init__(self, colorizer, draws: int = 0, chunk: int | None = None, superpixels: int = SUPERPIXELS,
                 merge_distance: float = MERGE_DISTANCE, min_mass: float = MIN_MASS, max_modes: int = MAX_MODES,
                 condition: bool = False, largest: float = LARGEST_REGION) -> None:
        super().__init__(colorizer, max(1, draws), chunk)
        self.condition, self.largest = condition, largest
        self.superpixels, self.merge_distance, self.min_mass, self.max_modes = superpixels, merge_distance, min_mass, max_modes
        self.centres = self.generator.bin_centres.detach().float().cpu()
        self.kernel = smoothing_kernel(self.centres)

    def _logits(self, x: torch.Tensor, local: torch.Tensor | None = None, skips: list | None = None) -> torch.Tensor:
        """Quarter-resolution logits (B, Q, h, w); a hint-taking network gets ``local`` hints (or
        none), and the encoder's ``skips`` of the photo when they are already known."""
        network = self.generator
        batch = x.shape[0] if local is None else local.shape[0]
        with self.colorizer._autocast():
            if not network.takes_hints:
                return network.quarter_output(x).float()
            local = local.to(x) if local is not None else x.new_zeros(batch, 3, *x.shape[-2:])
            if skips is None:
                skips = network.encode(x)
            skips = [skip.expand(batch, *skip.shape[1:]) for skip in skips]  # one photo, several hint sets
            return network.decode(skips, local, x.new_zeros(batch, global_hint_length())).float()

    def _decode(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return (self.generator.to_ab(logits, size).float() * self.colorizer.chroma).clamp(-1, 1)

    @torch.no_grad()
    def sample_ab(self, lightness: torch.Tensor, k: int, method: str = "topk", seed: int | Sequence[int] = 0) -> DiverseSamples:
        self.check(k, method)
        x = self._input(lightness)
        seeds = photo_seeds(seed, x.shape[0])
        logits = self._logits(x)
        fields, labels, hints = [], [], []
        for row in range(x.shape[0]):
            ab, row_labels, row_hints = self._sample_one(x[row : row + 1], logits[row], k, method, seeds[row])
            fields.append(ab)
            labels.append(row_labels)
            hints.append(row_hints)
        return DiverseSamples(torch.stack(fields), labels, hints)

    def _sample_one(self, x: torch.Tensor, logits: torch.Tensor, k: int, method: str, seed: int):
        network = self.generator
        size = tuple(x.shape[-2:])
        boosted = logits + network.colour_boost * network.bin_log_weights.view(-1, 1, 1).to(logits)
        probabilities = torch.softmax(boosted, dim=0).cpu()
        grid = probabilities.shape[-2:]
        quarter_l = F.adaptive_avg_pool2d(denormalize_l(x.float()), grid)[0, 0].cpu()
        pixels, regions = segment_regions((quarter_l / 100).numpy(), probabilities, self.kernel, self.superpixels,
                                          self.merge_distance, self.largest)
        modes = region_modes(probabilities, regions, self.centres, self.max_modes, self.min_mass)
        generator = torch.Generator().manual_seed(int(seed))
        choices = draw_modes([masses for _, masses in modes], k, method, generator)
        # each superpixel's region, its interior spot and the lightness there: where a hint goes
        owners = [int(np.bincount(regions[pixels == p]).argmax()) for p in range(int(pixels.max()) + 1)]
        spots = superpixel_centres(pixels)
        uncertain = [len(masses) > 1 for _, masses in modes]
        hints, labels = [], []
        for sample in range(k):
            # x, y as fractions of the width and height (the photo's size is not known here), a
            # quarter cell's centre: 4c + 2.5 of the input, safely inside its pixel after rescaling
            hints.append([HintPoint((column + 0.625) / grid[1], (row + 0.625) / grid[0],
                                    mode_colour(modes[owner][0][choices[sample, owner]], float(quarter_l[row, column])))
                          for (row, column), owner in zip(spots, owners) if uncertain[owner]])
            changed = int((choices[sample] > 0).sum())
            labels.append(f"{changed}/{len(modes)} new" if changed else "likeliest")
        if not any(uncertain):  # sure everywhere: k times the single colorization
            return self._decode(logits[None], size).expand(k, -1, -1, -1).cpu(), labels, hints
        field_logits = logits[None].expand(k, -1, -1, -1)
        if network.takes_hints:  # the draws as points: the network spreads each to its object's edges
            skips = network.encode(x) if hasattr(network, "encode") else None
            # the points' colours as colorize gives them to the network (at the input's lightness):
            # with condition=False a sample is exactly colorize(photo, hints=sample.hints)
            lightness = denormalize_l(x.float())[0]
            local = torch.stack([local_hint_image(points_at_lightness(points, (1.0, 1.0), lightness), (1.0, 1.0), size)
                                 for points in hints])
            field_logits = torch.cat([self._logits(x, local[start:start + self.chunk], skips)
                                      for start in range(0, k, self.chunk)])
        fields = []
        for sample in range(k):
            sample_logits = field_logits[sample]
            if self.condition or not network.takes_hints:  # the drawn colours written into the logits
                chosen = torch.stack([region_ab[choices[sample, r]] for r, (region_ab, _) in enumerate(modes)])
                sample_logits = condition_logits(sample_logits, regions, chosen, network.bin_centres)
            fields.append(self._decode(sample_logits[None], size)[0].cpu())
        return torch.stack(fields), labels, hints
