"""One small accumulator per figure of ``recolor evaluate``: ``update`` with every batch, ``result`` per row.

An accumulator fills one key of the metric table (:data:`.catalogue.METRICS`) for every row (the
baselines ``real`` and ``grey``, then each model or predictions folder). :data:`ACCUMULATORS` maps
each ``--metric`` option to a function that makes its accumulators, so the scoring loop only
updates whatever was asked for. What several figures share (an output's Lab, the classifier's
outputs, the diverse samples) a :class:`ScoredBatch` computes once, when first asked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .. import metrics as M
from ..color import normalize_l, rgb_to_lab_normalized
from .catalogue import REAL_ROW_METRICS
from .contenders import join_samples
from .settings import EvalSettings


def as_float(rgb_u8: torch.Tensor) -> torch.Tensor:
    return rgb_u8.float() / 255.0


class ScoredBatch:
    """One batch of ground-truth photos and every row's output for them.

    ``rows_u8`` maps row names to uint8 RGB (B, 3, S, S), ``real`` (the ground truth) first;
    ``labels`` are the photos' classes when a classifier judges, else None.
    """

    def __init__(self, truth: torch.Tensor, lightness: torch.Tensor, rows_u8: dict[str, torch.Tensor],
                 labels: torch.Tensor | None = None, start: int = 0, classifier: Any = None, backbone: Any = None) -> None:
        self.truth = truth  # float RGB in [0, 1]
        self.lightness = lightness  # L (B, 1, S, S) in 0..100
        self.true_ab = rgb_to_lab_normalized(truth)[1]
        self.rows_u8 = rows_u8
        self.labels = labels
        self.start = start  # position of the batch's first photo: seeds the diverse draws
        self._classifier, self._backbone = classifier, backbone
        self._cache: dict[tuple, Any] = {}

    @property
    def rows(self) -> list[str]:
        return list(self.rows_u8)

    @property
    def size(self) -> int:
        return self.truth.shape[0]

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def rgb(self, row: str) -> torch.Tensor:
        return self.cached(("rgb", row), lambda: as_float(self.rows_u8[row]))

    def pred_ab(self, row: str) -> torch.Tensor:
        return self.cached(("ab", row), lambda: rgb_to_lab_normalized(self.rgb(row))[1])

    def classifier_outputs(self, row: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(class probabilities, features) of the classifier for the row's images."""
        return self.cached(("classifier", row), lambda: self._classifier.outputs(self.rgb(row)))

    def backbone_outputs(self, row: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self._backbone is self._classifier:  # one network for both: one forward pass
            return self.classifier_outputs(row)
        return self.cached(("backbone", row), lambda: self._backbone.outputs(self.rgb(row)))


class GroundTruth:
    """What the scoring learns about the ground truth over all batches: its ab histogram (paper
    004's H, whose 1/H weighs the weighted error), the photos' labels and how many were scored."""

    def __init__(self) -> None:
        self.histogram = torch.zeros(M.AB_BINS, dtype=torch.float64)
        self.labels: list[torch.Tensor] = []
        self.photos = 0

    def add(self, batch: ScoredBatch) -> None:
        self.histogram += M.ab_histogram(batch.true_ab)
        if batch.labels is not None:
            self.labels.append(batch.labels)
        self.photos += batch.size

    def all_labels(self) -> torch.Tensor | None:
        return torch.cat(self.labels) if self.labels else None


@dataclass
class Setup:
    """What accumulators may need besides the batches."""

    settings: EvalSettings
    rows: list[str]  # every row name, in table order
    truth: GroundTruth
    classifier: Any = None
    backbone: Any = None
    samplers: dict[str, Any] = field(default_factory=dict)  # row name -> recolor.diverse sampler, for rows that sample
    log: Callable[[str], None] | None = None


# --- the accumulators -------------------------------------------------------------------------

class Accumulator:
    """One figure (``key``) for every row, built up batch by batch."""

    key = ""

    def update(self, batch: ScoredBatch) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Work that needs every batch first (Omega's fine-tuning); called once, before any result."""

    def result(self, row: str) -> dict[str, float | None]:
        """``{key: value}`` for ``row``, plus the value's spread where the figure has one."""
        raise NotImplementedError


class PerPhotoMean(Accumulator):
    """The mean over the photos of a per-photo figure (B,); a row ``measure`` answers None for has none.

    The ground truth is measured only ``with_real``: against itself most figures are trivial.
    """

    def __init__(self, key: str, measure: Callable[[ScoredBatch, str], torch.Tensor | None], with_real: bool = False,
                 skip_undefined: bool = False) -> None:
        self.key, self.measure, self.with_real = key, measure, with_real
        self.skip_undefined = skip_undefined  # photos whose figure is NaN (undefined for them) are left out
        self.per_photo: dict[str, list[torch.Tensor]] = {}

    def update(self, batch: ScoredBatch) -> None:
        for row in batch.rows:
            if row == "real" and not self.with_real:
                continue
            values = self.measure(batch, row)
            if values is not None:
                self.per_photo.setdefault(row, []).append(values.detach().double().cpu())

    def values(self, row: str) -> torch.Tensor | None:
        return torch.cat(self.per_photo[row]) if row in self.per_photo else None

    def result(self, row: str) -> dict[str, float | None]:
        values = self.values(row)
        if values is not None and self.skip_undefined:
            values = values[~values.isnan()]
        return {self.key: float(values.mean()) if values is not None and values.numel() else None}


def paired_difference(values: torch.Tensor | None, reference: torch.Tensor | None) -> tuple[float | None, float | None]:
    """Mean and standard error of the per-photo differences ``values - reference`` (same photos, same order).

    A model and the grey output are scored on the same photos, so the paired error is far
    smaller than the spread of either mean: it says whether a lead over grey is more than noise.
    """
    if values is None or reference is None or not values.numel():
        return None, None
    difference = values - reference
    if difference.numel() < 2:
        return float(difference.mean()), None
    return float(difference.mean()), float(difference.std() / math.sqrt(difference.numel()))


class PairedWithGrey(Accumulator):
    """``source``'s per-photo figure minus the grey output's, mean ± standard error (``<key>_se``)."""

    def __init__(self, key: str, source: PerPhotoMean) -> None:
        self.key, self.source = key, source

    def update(self, batch: ScoredBatch) -> None:
        pass  # reads the source's per-photo values

    def result(self, row: str) -> dict[str, float | None]:
        mean, error = (None, None) if row == "grey" else paired_difference(self.source.values(row), self.source.values("grey"))
        return {self.key: mean, f"{self.key}_se": error}


class RelativeToReal(Accumulator):
    """``source``'s mean divided by the ground truth's."""

    def __init__(self, key: str, source: PerPhotoMean) -> None:
        self.key, self.source = key, source

    def update(self, batch: ScoredBatch) -> None:
        pass

    def result(self, row: str) -> dict[str, float | None]:
        mean, real = self.source.result(row)[self.source.key], self.source.result("real")[self.source.key]
        return {self.key: mean / real if mean is not None and real else None}


class WeightedError(Accumulator):
    """Paper 004's weighted ab error over the pixels ``select`` keeps. Its 1/H weights come from
    the histogram of the whole ground truth, known only at the end, so per ground-truth bin the
    error sums stream (:func:`recolor.metrics.binned_ab_error`)."""

    def __init__(self, key: str, truth: GroundTruth, select: Callable[[torch.Tensor], torch.Tensor] = lambda ab: ab) -> None:
        self.key, self.truth, self.select = key, truth, select
        self.error_sums: dict[str, torch.Tensor] = {}
        self.pixels: dict[str, int] = {}

    def update(self, batch: ScoredBatch) -> None:
        true_ab = self.select(batch.true_ab)
        for row in batch.rows:
            if row == "real":
                continue
            pred_ab = self.select(batch.pred_ab(row))
            self.error_sums[row] = self.error_sums.get(row, torch.zeros(M.AB_BINS, dtype=torch.float64)) + M.binned_ab_error(pred_ab, true_ab)
            self.pixels[row] = self.pixels.get(row, 0) + pred_ab[:, 0].numel()

    def result(self, row: str) -> dict[str, float | None]:
        if row not in self.error_sums:
            return {self.key: None}
        weights = M.inverse_frequency_weights(self.truth.histogram)
        return {self.key: M.weighted_error_from_bins(self.error_sums[row], self.pixels[row], weights)}


class DiverseDraws:
    """k colorizations of every photo by each row that samples, drawn once per batch and shared by
    the diversity figures; compared in Lab at the evaluation size, joined as ``colorize`` joins."""

    def __init__(self, samplers: dict[str, Any], k: int, method: str, seed: int) -> None:
        self.samplers, self.k, self.method, self.seed = samplers, k, method, seed

    def rgb(self, batch: ScoredBatch, row: str) -> torch.Tensor | None:
        """uint8 RGB (B, k, 3, S, S) of the row's samples, or None for a row that does not sample."""
        sampler = self.samplers.get(row)
        if sampler is None:
            return None
        return batch.cached(("diverse", row), lambda: self._draw(batch, sampler))

    def ab(self, batch: ScoredBatch, row: str) -> torch.Tensor | None:
        """Normalised ab (B, k, 2, S, S) of the row's samples, or None for a row that does not sample."""
        rgb = self.rgb(batch, row)
        return None if rgb is None else batch.cached(("diverse ab", row), lambda: rgb_to_lab_normalized(as_float(rgb))[1])

    def _draw(self, batch: ScoredBatch, sampler: Any) -> torch.Tensor:
        size = (sampler.colorizer.size,) * 2
        small = F.interpolate(batch.lightness, size=size, mode="bilinear", antialias=True, align_corners=False)
        # one seed per photo, from its place in the whole run: the figures do not depend on --batch-size
        seeds = [self.seed + batch.start + index for index in range(small.shape[0])]
        drawn = sampler.sample_ab(normalize_l(small), self.k, self.method, seeds).ab
        return join_samples(batch.lightness, drawn)


class BestVersusSingle(Accumulator):
    """Best-of-k ab L1 over the row's own single colorization's ab L1 (ratio of the means over the
    photos): below 1, one of the k samples is closer to the truth than the single answer."""

    key = "best_vs_single"

    def __init__(self, draws: DiverseDraws) -> None:
        self.draws = draws
        self.per_photo: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}  # row -> (best, single) per photo

    def update(self, batch: ScoredBatch) -> None:
        for row in batch.rows:
            samples = self.draws.ab(batch, row)
            if samples is not None:
                best, single = self.per_photo.setdefault(row, ([], []))
                best.append(M.error_of_best(samples, batch.true_ab).double().cpu())
                single.append(M.ab_l1(batch.pred_ab(row), batch.true_ab).double().cpu())

    def result(self, row: str) -> dict[str, float | None]:
        if row not in self.per_photo:
            return {self.key: None}
        best, single = (torch.cat(values).mean() for values in self.per_photo[row])  # summed as the photos' means are
        return {self.key: float(best / single) if single > 0 else None}


class Accuracy(Accumulator):
    """Paper 003: the fraction of photos the classifier puts in their class."""

    key = "accuracy"

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self.predicted: dict[str, list[torch.Tensor]] = {}

    def update(self, batch: ScoredBatch) -> None:
        for row in batch.rows:
            self.predicted.setdefault(row, []).append(batch.classifier_outputs(row)[0].argmax(dim=-1))

    def result(self, row: str) -> dict[str, float | None]:
        return {self.key: M.accuracy(torch.cat(self.predicted[row]), self.truth.all_labels())}


class ColourImportance(Accumulator):
    """Paper 003's CIM: p(true class) of a row's images, weighted by how much colour matters to
    the classifier (the colour original's probability against the grey input's)."""

    key = "cim"

    def __init__(self) -> None:
        self.p_true: dict[str, list[torch.Tensor]] = {}

    def update(self, batch: ScoredBatch) -> None:
        for row in batch.rows:
            probabilities = batch.classifier_outputs(row)[0]
            self.p_true.setdefault(row, []).append(M.true_class_probability(probabilities, batch.labels))

    def result(self, row: str) -> dict[str, float | None]:
        p_true = {name: torch.cat(self.p_true[name]) for name in ("real", "grey", row)}
        return {self.key: M.cim(p_true["real"], p_true["grey"], p_true[row])}


class Omega(Accumulator):
    """Paper 003's Omega: copies of the classifier fine-tuned alike on each row's images (the first
    ``omega_images`` photos), each compared with the copy fine-tuned on the ground truth."""

    key = "omega"

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.images: dict[str, list[torch.Tensor]] = {}
        self.count = 0
        self.distances: dict[str, float] = {}

    def update(self, batch: ScoredBatch) -> None:
        room = self.setup.settings.omega_images - self.count
        if room > 0:
            resize = self.setup.classifier.resize
            for row in batch.rows:
                self.images.setdefault(row, []).append((resize(batch.rgb(row)[:room]) * 255).round().to(torch.uint8).cpu())
        self.count = min(self.setup.settings.omega_images, self.count + batch.size)

    def finish(self) -> None:
        from ..classifiers import finetune

        setup, settings = self.setup, self.setup.settings
        if setup.log:
            setup.log(f"Omega: fine-tuning {len(setup.rows)} copies of {setup.classifier.name} for {settings.omega_steps} steps each")
        labels = setup.truth.all_labels()[: self.count]
        trained = {row: finetune(setup.classifier, torch.cat(self.images[row])[: self.count], labels, settings.omega_steps,
                                 settings.omega_batch, settings.omega_lr, settings.seed) for row in setup.rows}
        self.distances = {row: M.omega(trained["real"], model) for row, model in trained.items()}

    def result(self, row: str) -> dict[str, float | None]:
        return {self.key: self.distances.get(row)}


class InceptionScore(Accumulator):
    """Paper 000's IS of the backbone's class probabilities, with its std over the splits (``is_std``)."""

    key = "is"

    def __init__(self, splits: int) -> None:
        self.splits = splits
        self.probabilities: dict[str, list[torch.Tensor]] = {}

    def update(self, batch: ScoredBatch) -> None:
        for row in batch.rows:
            self.probabilities.setdefault(row, []).append(batch.backbone_outputs(row)[0])

    def result(self, row: str) -> dict[str, float | None]:
        mean, std = M.inception_score(torch.cat(self.probabilities[row]), self.splits)
        return {self.key: mean, "is_std": std}


class FrechetDistance(Accumulator):
    """FID: the Fréchet distance of a row's backbone features from the ground truth's (streamed moments)."""

    key = "fid"

    def __init__(self) -> None:
        self.moments: dict[str, M.FeatureMoments] = {}

    def update(self, batch: ScoredBatch) -> None:
        for row in batch.rows:
            features = batch.backbone_outputs(row)[1]
            if row not in self.moments:
                self.moments[row] = M.FeatureMoments(features.shape[-1])
            self.moments[row].update(features)

    def result(self, row: str) -> dict[str, float | None]:
        mine, real = self.moments[row], self.moments["real"]
        return {self.key: M.frechet_distance(mine.mean(), mine.covariance(), real.mean(), real.covariance())}


# --- the catalogue: --metric option -> its accumulators, in table order -------------------------

def _ab_l1(setup: Setup) -> list[Accumulator]:
    ab_l1 = PerPhotoMean("ab_l1", lambda batch, row: M.ab_l1(batch.pred_ab(row), batch.true_ab))
    grid = PerPhotoMean("ab_l1_grid", lambda batch, row: M.ab_l1_grid(batch.pred_ab(row), batch.true_ab))
    return [ab_l1, grid, PairedWithGrey("ab_l1_vs_grey", ab_l1)]


def _weighted(setup: Setup) -> list[Accumulator]:
    return [WeightedError("weighted_error", setup.truth), WeightedError("weighted_error_grid", setup.truth, M.grid_pixels)]


def _colourfulness(setup: Setup) -> list[Accumulator]:
    colourfulness = PerPhotoMean("colourfulness", lambda batch, row: M.colourfulness(batch.rgb(row)), with_real=True)
    return [colourfulness, RelativeToReal("colourfulness_rel", colourfulness)]


def _diversity(setup: Setup) -> list[Accumulator]:
    settings = setup.settings
    draws = DiverseDraws(setup.samplers, settings.samples, settings.sample_method, settings.seed)

    def of_samples(figure: Callable[[torch.Tensor, ScoredBatch], torch.Tensor]):
        def measure(batch: ScoredBatch, row: str) -> torch.Tensor | None:
            samples = draws.ab(batch, row)
            return None if samples is None else figure(samples, batch)
        return measure

    def sample_accuracy(batch: ScoredBatch, row: str) -> torch.Tensor | None:
        rgb = draws.rgb(batch, row)
        if rgb is None or batch.labels is None:
            return None
        predicted = setup.classifier.outputs(as_float(rgb.flatten(0, 1)))[0].argmax(dim=-1).view(rgb.shape[:2])
        return (predicted.cpu() == batch.labels.cpu().view(-1, 1)).double().mean(dim=1)

    figures = [PerPhotoMean("error_of_best", of_samples(lambda samples, batch: M.error_of_best(samples, batch.true_ab))),
               BestVersusSingle(draws),
               PerPhotoMean("variance", of_samples(lambda samples, batch: M.per_pixel_variance(samples))),
               PerPhotoMean("local_share", of_samples(lambda samples, batch: M.local_diversity_share(samples)), skip_undefined=True)]
    if setup.classifier is not None:  # the judge on every sample, when it judges the single colorizations
        figures.append(PerPhotoMean("sample_accuracy", sample_accuracy))
    return figures


ACCUMULATORS: dict[str, Callable[[Setup], list[Accumulator]]] = {
    "ab-l1": _ab_l1,
    "weighted": _weighted,
    "psnr": lambda setup: [PerPhotoMean("psnr", lambda batch, row: M.psnr(batch.rgb(row), batch.truth))],
    "ssim": lambda setup: [PerPhotoMean("ssim", lambda batch, row: M.ssim(batch.rgb(row), batch.truth))],
    "colourfulness": _colourfulness,
    "diversity": _diversity,
    "accuracy": lambda setup: [Accuracy(setup.truth)],
    "cim": lambda setup: [ColourImportance()],
    "omega": lambda setup: [Omega(setup)],
    "is": lambda setup: [InceptionScore(setup.settings.is_splits)],
    "fid": lambda setup: [FrechetDistance()],
}


def make_accumulators(options: list[str], setup: Setup) -> list[Accumulator]:
    """The accumulators of ``options`` (in canonical order), so in the table's order of keys."""
    return [accumulator for option in options for accumulator in ACCUMULATORS[option](setup)]


def row_values(row: str, accumulators: list[Accumulator]) -> dict[str, float | None]:
    """One row's figures in table order; None for the ground truth where it is trivially perfect."""
    values: dict[str, float | None] = {}
    for accumulator in accumulators:
        if row == "real" and accumulator.key not in REAL_ROW_METRICS:
            values[accumulator.key] = None
        else:
            values.update(accumulator.result(row))
    return values
