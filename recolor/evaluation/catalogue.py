"""The metric table of ``recolor evaluate``: every figure it can report, and the ``--metric``
option that selects it (one option may select several figures, e.g. ``ab-l1`` three)."""
from __future__ import annotations

from dataclasses import dataclass

from .settings import EvaluationError


@dataclass(frozen=True)
class MetricInfo:
    key: str
    label: str
    better: str  # "lower" | "higher" | "≈ 1" | "≈ real"
    option: str  # the --metric name that selects it
    description: str
    digits: int = 4


METRICS: dict[str, MetricInfo] = {m.key: m for m in [
    MetricInfo("ab_l1", "ab L1", "lower", "ab-l1",
               "mean |pred - true| over both ab channels and all pixels, in ab/110 units (x110 = Lab units)"),
    MetricInfo("ab_l1_grid", "ab L1 grid", "lower", "ab-l1",
               "ab L1 on the 8x8 centre grid only: the cell centres of an 8x8 split of the central half of the image (paper 004)"),
    MetricInfo("ab_l1_vs_grey", "ab L1 - grey", "lower", "ab-l1",
               "paired per-photo difference of ab L1 from the grey output's, mean ± its standard error (below 0: better than grey)"),
    MetricInfo("weighted_error", "weighted err", "lower", "weighted",
               "paper 004 Table 2: per-pixel ab error weighted by 1/H(true colour), H the normalised 10x10-Lab-unit ab histogram of the ground-truth set", 3),
    MetricInfo("weighted_error_grid", "weighted err grid", "lower", "weighted",
               "weighted ab error on the 8x8 centre grid (weights from the whole ground-truth histogram)", 3),
    MetricInfo("psnr", "PSNR dB", "higher", "psnr", "peak signal-to-noise ratio of the 8-bit RGB output, mean over photos", 2),
    MetricInfo("ssim", "SSIM", "higher", "ssim", "structural similarity on RGB (Gaussian 11x11 window, sigma 1.5), mean over photos and channels"),
    MetricInfo("colourfulness", "colourfulness", "≈ real", "colourfulness",
               "Hasler and Suesstrunk (2003) M on the 0-255 scale, mean over photos (grey = 0)", 1),
    MetricInfo("colourfulness_rel", "colourful/real", "≈ 1", "colourfulness",
               "mean colourfulness divided by the ground truth's mean colourfulness", 3),
    MetricInfo("error_of_best", "error-of-best", "lower", "diversity",
               "paper 004 Table 3: per photo the smallest ab L1 among k samples, in ab/110 units"),
    MetricInfo("best_vs_single", "best/single", "lower", "diversity",
               "error-of-best divided by the row's single colorization's ab L1 (below 1: a sample beats the single answer)", 3),
    MetricInfo("variance", "sample variance", "higher", "diversity",
               "paper 004 Table 3: per-pixel variance of ab over k samples, mean over pixels, (ab/110)^2", 6),
    MetricInfo("local_share", "local diversity", "higher", "diversity",
               "per pair of samples, mean|d - mean(d)| / mean|d| of the ab difference d: 0 for a global tint, 1 or more for changes confined to objects"),
    MetricInfo("sample_accuracy", "sample accuracy", "higher", "diversity",
               "the classifier's accuracy on the k samples (mean over samples and photos), next to the single colorization's accuracy"),
    MetricInfo("accuracy", "accuracy", "higher", "accuracy", "paper 003: classifier accuracy on the images"),
    MetricInfo("cim", "CIM", "higher", "cim",
               "paper 003 eq. 9-10: mean of p(true class | image) weighted by w = |p(colour original) - p(grey)|"),
    MetricInfo("omega", "Omega", "lower", "omega",
               "paper 003 eq. 11: squared L2 distance between the weights of two copies of the classifier fine-tuned identically on the real and on these images"),
    MetricInfo("is", "IS", "higher", "is", "paper 000: Inception Score exp(E KL(p(y|x) || p(y))) of the backbone's class probabilities", 3),
    MetricInfo("fid", "FID", "lower", "fid", "Frechet distance between the backbone features of these images and of the real photos", 3),
    # videos only (recolor/video/scoring.py): a folder of clips as --data
    MetricInfo("flicker", "flicker", "lower", "flicker",
               "warping error of Lai et al. (2018) on ab/110: mean |ab_t - ab_t+1 warped by the grey input's flow| over followed pixels"),
    MetricInfo("cdc", "CDC", "lower", "cdc", "colour distribution consistency (NTIRE 2023): JS divergence of RGB histograms, frames t to t+1, 2, 4", 5),
]}

# the options only a folder of clips has (recolor/video/scoring.py); "all" means the photos' options
VIDEO_ONLY_OPTIONS = ["flicker", "cdc"]
# the --metric options in table order (ab-l1, weighted, psnr, ..., fid)
METRIC_OPTIONS = [option for option in dict.fromkeys(info.option for info in METRICS.values()) if option not in VIDEO_ONLY_OPTIONS]
PIXEL_OPTIONS = ["ab-l1", "weighted", "psnr", "ssim", "colourfulness"]
CLASSIFIER_OPTIONS = {"accuracy", "cim", "omega"}
BACKBONE_OPTIONS = {"is", "fid"}
# metrics shown for the ground truth itself: the rest are trivially perfect on it (error 0, FID 0)
REAL_ROW_METRICS = {"colourfulness", "colourfulness_rel", "accuracy", "cim", "is"}
_ALIASES = {"ab-l1": "ab-l1", "abl1": "ab-l1", "l1": "ab-l1", "weighted-error": "weighted", "colorfulness": "colourfulness",
            "inception-score": "is", "error-of-best": "diversity", "variance": "diversity"}


def parse_metric_options(names: list[str] | None) -> list[str] | None:
    """``--metric`` values -> option names in canonical order (None = the default set)."""
    if not names:
        return None
    chosen: set[str] = set()
    for raw in names:
        for part in raw.split(","):
            name = part.strip().lower().replace("_", "-")
            if not name:
                continue
            if name == "all":
                chosen.update(METRIC_OPTIONS)
                continue
            name = _ALIASES.get(name, name)
            if name not in METRIC_OPTIONS + VIDEO_ONLY_OPTIONS:
                raise EvaluationError(f"unknown metric '{part.strip()}' (choose from: {', '.join(METRIC_OPTIONS + VIDEO_ONLY_OPTIONS)}, all)")
            chosen.add(name)
    return [option for option in METRIC_OPTIONS + VIDEO_ONLY_OPTIONS if option in chosen]


def named_options(metrics: list[str] | None) -> set[str]:
    """The metric options asked for by name (not through "all"): those fail loudly when they cannot run."""
    return {_ALIASES.get(n, n) for n in (part.strip().lower().replace("_", "-") for raw in metrics or [] for part in raw.split(","))}
