"""`recolor evaluate`: score colorizers on held-out colour photos with the papers' metrics.

The ground truth is a folder of colour photos. Each photo is resized (shorter side) and
centre-cropped to ``size`` x ``size``; its lightness is the greyscale input. Every model
colorizes it exactly as ``recolor colorize`` would (its own input size, ab upsampled and joined
to the photo's lightness, 8-bit output); ``--predictions`` folders of already colorized images
are matched by relative path. Two baselines are scored beside them so every figure has its
reference: ``grey`` (the greyscale input itself, a = b = 0) and ``real`` (the ground truth, for
the metrics where that is not trivially perfect).

Everything streams: memory does not grow with the number of photos except for the classifier
outputs (a few floats per photo) and Omega's training images (bounded by ``omega_images``).
The metrics themselves are the pure functions of :mod:`recolor.metrics`.
"""
from __future__ import annotations

import datetime
import html
import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from . import metrics as M
from .color import grey_rgb, normalize_l, rgb_to_lab_normalized, rgb_to_lightness
from .imageio import (COLOUR_CHROMA_THRESHOLD, IMAGE_EXTENSIONS, ImageReadError, LoadedImage, atomic_write_bytes,
                      file_problem, list_image_files, mean_chroma, open_image, save_image)


class EvaluationError(Exception):
    """Bad input or a missing requirement; the message is one line and says what to pass."""


# --- the metric table -----------------------------------------------------------------------------

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
    MetricInfo("variance", "sample variance", "higher", "diversity",
               "paper 004 Table 3: per-pixel variance of ab over k samples, mean over pixels, (ab/110)^2", 6),
    MetricInfo("accuracy", "accuracy", "higher", "accuracy", "paper 003: classifier accuracy on the images"),
    MetricInfo("cim", "CIM", "higher", "cim",
               "paper 003 eq. 9-10: mean of p(true class | image) weighted by w = |p(colour original) - p(grey)|"),
    MetricInfo("omega", "Omega", "lower", "omega",
               "paper 003 eq. 11: squared L2 distance between the weights of two copies of the classifier fine-tuned identically on the real and on these images"),
    MetricInfo("is", "IS", "higher", "is", "paper 000: Inception Score exp(E KL(p(y|x) || p(y))) of the backbone's class probabilities", 3),
    MetricInfo("fid", "FID", "lower", "fid", "Frechet distance between the backbone features of these images and of the real photos", 3),
]}

METRIC_OPTIONS = ["ab-l1", "weighted", "psnr", "ssim", "colourfulness", "diversity", "accuracy", "cim", "omega", "is", "fid"]
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
            if name not in METRIC_OPTIONS:
                raise EvaluationError(f"unknown metric '{part.strip()}' (choose from: {', '.join(METRIC_OPTIONS)}, all)")
            chosen.add(name)
    return [option for option in METRIC_OPTIONS if option in chosen]


# --- settings and result ---------------------------------------------------------------------------

@dataclass
class EvalSettings:
    data: Path
    models: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)  # DIR or NAME=DIR
    metrics: list[str] | None = None  # --metric values; None = pixel metrics (+ those whose network was given)
    size: int | None = None  # evaluation resolution; default min(256, shorter side of the smallest photo)
    chroma: float = 1.0  # the models' colour scaled as by `recolor colorize --chroma`
    limit: int | None = None
    classifier: str | None = None  # default resnet18 (ImageNet, downloaded) when a classifier metric is asked for
    backbone: str | None = None  # default inception_v3 (downloaded) when IS/FID is asked for
    samples: int = 5  # k colorizations per photo for the diversity metrics (paper 004 uses the top 5)
    sample_method: str = "topk"  # recolor.diverse: top-k mixture means / k-means of 256 draws (the paper's), or "random"
    omega_steps: int = 10
    omega_images: int = 256
    omega_batch: int = 16
    omega_lr: float = 0.01
    is_splits: int = 10
    batch_size: int = 16
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    report_samples: int = 8


@dataclass
class Row:
    name: str
    kind: str  # "baseline" | "model" | "predictions"
    source: str
    values: dict[str, float | None] = field(default_factory=dict)


@dataclass
class EvalResult:
    rows: list[Row]
    metrics: list[str]  # metric keys, in table order
    info: dict
    notes: list[str]
    samples: list[dict] = field(default_factory=list)  # {"photo": rel path, "images": {row name: uint8 HxWx3}}

    def to_json(self) -> dict:
        return {
            "recolor_evaluate": 1,
            "info": self.info,
            "metrics": {key: {"label": METRICS[key].label, "better": METRICS[key].better, "description": METRICS[key].description} for key in self.metrics},
            "rows": [{**asdict(row), "values": {k: _finite(v) for k, v in row.values.items()}} for row in self.rows],
            "notes": self.notes,
        }

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


# --- photos --------------------------------------------------------------------------------------

@dataclass
class Photo:
    path: Path
    relative: Path

    @property
    def folder(self) -> str | None:
        return self.relative.parts[0] if len(self.relative.parts) > 1 else None


def find_photos(root: Path, limit: int | None, seed: int) -> list[Photo]:
    """Image files below ``root``; ``limit`` keeps a seeded random subset (spread over all sub-folders)."""
    if not root.is_dir():
        raise EvaluationError(f"--data {root}: no such folder (pass a folder of colour photos: the ground truth)")
    photos = [Photo(p, p.relative_to(root)) for p in list_image_files(root)]
    if not photos:
        raise EvaluationError(f"--data {root}: no image files found")
    if limit is not None and limit < len(photos):
        photos = random.Random(seed).sample(photos, limit)
        photos.sort(key=lambda photo: photo.relative)
    return photos


IMAGENET_CLASSES_FILE = "imagenet1k-classes.tsv"  # "index<TAB>wnid<TAB>name" lines, as in shared/data/photos-extra
WNID_PREFIX = re.compile(r"^(n\d{8})(?:_|$)")


def imagenet_labels_from_names(photos: list[Photo], root: Path) -> list[int] | None:
    """ImageNet-1k labels of photos named ``WNID_anything`` (e.g. ``n01440764_tench.jpg``), from an
    ``imagenet1k-classes.tsv`` in the data folder or beside it; None unless every photo has one."""
    table = next((folder / IMAGENET_CLASSES_FILE for folder in (root, root.parent) if (folder / IMAGENET_CLASSES_FILE).is_file()), None)
    if table is None:
        return None
    index_of = {}
    for line in table.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) >= 2 and fields[0].strip().isdigit():
            index_of[fields[1].strip()] = int(fields[0])
    labels = []
    for photo in photos:
        match = WNID_PREFIX.match(photo.path.stem)
        if match is None or match.group(1) not in index_of:
            return None
        labels.append(index_of[match.group(1)])
    return labels


def default_size(photos: list[Photo], cap: int = 256) -> int:
    """min(cap, the smallest shorter side among the photos), read from the headers only."""
    smallest = cap
    for photo in photos:
        if file_problem(photo.path):
            continue  # a named pipe would block Image.open; the load step names the problem
        try:
            with Image.open(photo.path) as image:
                smallest = min(smallest, min(image.size))
        except Exception:  # unreadable files are reported when they are loaded
            continue
    return max(8, smallest)


def square_crop(image: Image.Image, size: int) -> np.ndarray:
    """Shorter side to ``size`` (bicubic, as ColorPhotoDataset's validation transform), centre crop; uint8 (3, s, s)."""
    image = image.convert("RGB")
    if image.size != (size, size):
        ratio = size / min(image.size)
        new_size = (max(size, round(image.width * ratio)), max(size, round(image.height * ratio)))
        image = image.resize(new_size, Image.BICUBIC, reducing_gap=3.0)
        left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def prediction_index(folder: Path) -> dict[Path, Path]:
    """Files of a predictions folder by relative path without extension (a .png may answer a .jpg)."""
    if not folder.is_dir():
        raise EvaluationError(f"--predictions {folder}: no such folder")
    return {p.relative_to(folder).with_suffix(""): p for p in list_image_files(folder)}


def parse_prediction_option(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if sep and name and "/" not in name and "\\" not in name:
        return name, Path(path)
    return Path(value).name or value, Path(value)


# --- models ---------------------------------------------------------------------------------------

def diverse_sampler(colorizer, wants_dropout: bool):
    """Issue 4's sampler (:mod:`recolor.diverse`) for a loaded model, or None when it is deterministic.

    The dispatch of :func:`recolor.diverse.load_sampler`: divcolor samples its mixture, generators
    with a latent z sample z; dropout sampling (the cGAN baseline of paper 004) only when the model
    was named ``pix2pix-dropout``, since it draws 256 colorizations per photo.
    """
    from .diverse import DropoutSampler, LatentSampler, MixtureSampler, has_dropout

    generator = colorizer.generator
    if hasattr(generator, "mixture") and hasattr(generator, "sample"):
        return MixtureSampler(colorizer)
    if not wants_dropout and hasattr(generator, "latent_dim") and hasattr(generator, "prior_z"):
        return LatentSampler(colorizer)
    if wants_dropout and has_dropout(generator):
        return DropoutSampler(colorizer)
    return None


@dataclass
class Contender:
    """One row to score: a loaded model or a predictions folder."""

    name: str
    kind: str
    source: str
    colorizer: object | None = None
    sampler: object | None = None  # a recolor.diverse.DiverseSampler
    predictions: dict[Path, Path] | None = None


def load_contenders(settings: EvalSettings) -> list[Contender]:
    from .checkpoint import CheckpointError
    from .inference import Colorizer

    contenders: list[Contender] = []
    from .diverse import resolve_model

    for model in settings.models:
        target, wants_dropout = resolve_model(str(model))
        try:
            colorizer = Colorizer.load(target, device=settings.device, precision=settings.precision, chroma=settings.chroma)
        except (CheckpointError, KeyError, ValueError) as exc:
            raise EvaluationError(f"--model {model}: {exc.args[0] if exc.args else exc}") from None
        name = row_name(str(model), colorizer.name) + (f" (chroma {settings.chroma:g})" if settings.chroma != 1.0 else "")
        contenders.append(Contender(name, "model", str(model), colorizer=colorizer,
                                    sampler=diverse_sampler(colorizer, wants_dropout)))
    for option in settings.predictions:
        name, folder = parse_prediction_option(option)
        contenders.append(Contender(name, "predictions", str(folder), predictions=prediction_index(folder)))
    names = [c.name for c in contenders]
    for i, contender in enumerate(contenders):  # two checkpoints of one model in folders of one name
        if names.count(contender.name) > 1:
            contender.name = f"{contender.name} #{names[: i + 1].count(contender.name)}"
    if any(c.name in ("real", "grey") for c in contenders):
        raise EvaluationError("'real' and 'grey' name the baselines: give the predictions folder another name (NAME=DIR)")
    return contenders


def shipped_models() -> list[str]:
    """Names of the registered models whose weights ship with recolor (weights/<name>.safetensors)."""
    from .inference import weights_dirs
    from .registry import list_models

    return [spec.name for spec in list_models() if any((d / f"{spec.name}.safetensors").is_file() for d in weights_dirs())]


def row_name(model: str, spec_name: str) -> str:
    """The table's name for a --model: the name as given, or for a checkpoint its file (or run folder) name."""
    path = Path(model)
    if not (path.suffix == ".safetensors" or path.exists()):
        return model
    label = path.parent.name if path.stem in ("model", "last", "best") and path.parent.name else path.stem
    return label if spec_name in label else f"{spec_name} ({label})"


def colorize_batch(colorizer, lightness: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, S, S) for L (B, 1, S, S) in 0..100, exactly as `recolor colorize` makes it."""
    loaded = [LoadedImage(path=None, lightness=l.contiguous(), was_colour=True) for l in lightness]
    return torch.stack([torch.from_numpy(result.rgb).permute(2, 0, 1) for result in colorizer.colorize_loaded(loaded)])


def join_samples(lightness: torch.Tensor, samples_ab: torch.Tensor) -> torch.Tensor:
    """(B, k, 2, h, w) sampled ab + L (B, 1, S, S) -> uint8 RGB (B, k, 3, S, S), joined as colorize joins."""
    from .inference import join_lightness

    return torch.stack([
        torch.stack([torch.from_numpy(join_lightness(l, ab)).permute(2, 0, 1) for ab in fields])
        for l, fields in zip(lightness, samples_ab.float().cpu())
    ])


# --- accumulation ---------------------------------------------------------------------------------

class RowStats:
    """What one row has accumulated over the batches so far."""

    def __init__(self) -> None:
        self.per_image: dict[str, list[torch.Tensor]] = {}
        self.bins_all = torch.zeros(M.AB_BINS, dtype=torch.float64)
        self.bins_grid = torch.zeros(M.AB_BINS, dtype=torch.float64)
        self.pixels_all = 0
        self.pixels_grid = 0
        self.p_true: list[torch.Tensor] = []
        self.predicted: list[torch.Tensor] = []
        self.backbone_probs: list[torch.Tensor] = []
        self.moments: M.FeatureMoments | None = None
        self.omega_images: list[torch.Tensor] = []

    def add(self, key: str, values: torch.Tensor) -> None:
        self.per_image.setdefault(key, []).append(values.detach().double().cpu())

    def mean(self, key: str) -> float | None:
        if key not in self.per_image:
            return None
        return float(torch.cat(self.per_image[key]).mean())


def paired_difference(values: list[torch.Tensor] | None, reference: list[torch.Tensor] | None) -> tuple[float | None, float | None]:
    """Mean and standard error of the per-photo differences ``values - reference`` (same photos, same order).

    A model and the grey output are scored on the same photos, so the paired error is far
    smaller than the spread of either mean: it says whether a lead over grey is more than noise.
    """
    if not values or not reference:
        return None, None
    difference = torch.cat(values) - torch.cat(reference)
    if difference.numel() < 2:
        return float(difference.mean()), None
    return float(difference.mean()), float(difference.std() / math.sqrt(difference.numel()))


def _to_float(rgb_u8: torch.Tensor) -> torch.Tensor:
    return rgb_u8.float() / 255.0


# --- the evaluation --------------------------------------------------------------------------------

def named_options(metrics: list[str] | None) -> set[str]:
    """The metric options asked for by name (not through "all"): those fail loudly when they cannot run."""
    return {_ALIASES.get(n, n) for n in (part.strip().lower().replace("_", "-") for raw in metrics or [] for part in raw.split(","))}


def resolve_options(settings: EvalSettings, contenders: list[Contender]) -> list[str]:
    options = parse_metric_options(settings.metrics)
    named = named_options(settings.metrics)
    if options is None:
        options = list(PIXEL_OPTIONS)
        if any(c.sampler for c in contenders):
            options.append("diversity")
        if settings.classifier:
            options += ["accuracy", "cim"]
        if settings.backbone:
            options += ["is", "fid"]
        options = [o for o in METRIC_OPTIONS if o in options]
    if "diversity" in options and not any(c.sampler for c in contenders):
        if "diversity" in named:  # asked for by name (not through "all"): say what it needs
            names = ", ".join(c.name for c in contenders) or "none"
            raise EvaluationError(f"--metric diversity needs a model that draws several colorizations (divcolor, cvae-l2, cwgan-gp, pix2pix-dropout ...); {names} cannot")
        options.remove("diversity")
    return options


def _load_network(spec: str, role: str, device: torch.device, hint: str, option: str):
    from .classifiers import ClassifierError, load_classifier

    try:
        return load_classifier(spec, device=device, option=option)
    except ClassifierError as exc:
        raise EvaluationError(f"{role}: {exc.args[0]}{hint}") from None


def _load_or_skip(load: Callable[[], Any], group: set[str], given: bool, named: set[str], options: list[str], notes: list[str]):
    """The network that ``group``'s metrics need, or None with those metrics dropped from ``options``
    and a note saying why: when they came only through ``--metric all`` and no network was
    passed, an offline machine still gets every metric it can compute. Asked for by name or
    with a network given, a failure stays an error."""
    try:
        return load()
    except EvaluationError as exc:
        if given or group & named:
            raise
        skipped = [option for option in options if option in group]
        options[:] = [option for option in options if option not in group]
        notes.append(f"skipped {', '.join(skipped)}: {exc}")
        return None


def evaluate(settings: EvalSettings, progress: Callable[[int, int], None] | None = None,
             log: Callable[[str], None] | None = None) -> EvalResult:
    """Score every model and predictions folder (and the baselines) on the photos of ``settings.data``."""
    from .devices import resolve_device

    started = time.perf_counter()
    data = Path(settings.data)
    if not settings.models and not settings.predictions:
        settings.models = shipped_models()  # the default: every model recolor ships weights for
        if not settings.models:
            raise EvaluationError("nothing to evaluate: no shipped weights found; pass --model NAME_OR_CHECKPOINT (repeatable) or --predictions DIR of colorized images")
    photos = find_photos(data, settings.limit, settings.seed)
    contenders = load_contenders(settings)
    options = resolve_options(settings, contenders)
    if "diversity" in options:
        for contender in contenders:
            if contender.sampler is not None:
                try:
                    contender.sampler.check(settings.samples, settings.sample_method)
                except ValueError as exc:
                    raise EvaluationError(f"diversity with {contender.name}: {exc}") from None
    size = int(settings.size) if settings.size else default_size(photos)
    if size < 8:
        raise EvaluationError(f"--size {size}: too small (at least 8 pixels)")
    if "ssim" in options and size < 11:
        if "ssim" in named_options(settings.metrics):
            raise EvaluationError("SSIM needs photos of at least 11x11 pixels; evaluate at --size 11 or more, or leave out --metric ssim")
        options.remove("ssim")
    try:
        device = resolve_device(settings.device)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None

    notes: list[str] = []
    classifier = backbone = None
    named = named_options(settings.metrics)
    if CLASSIFIER_OPTIONS & set(options):
        spec = settings.classifier or "resnet18"
        classifier = _load_or_skip(lambda: _load_network(spec, "accuracy/CIM/Omega need a classifier", device,
                                   "" if settings.classifier else " (or pass --classifier resnet56-cifar10:PATH for CIFAR-10 photos)", "--classifier"),
                                   CLASSIFIER_OPTIONS, bool(settings.classifier), named, options, notes)
    if BACKBONE_OPTIONS & set(options) and classifier is not None and settings.backbone and settings.backbone == settings.classifier:
        backbone = classifier  # one network for both: its forward pass serves accuracy/CIM and IS/FID alike
    elif BACKBONE_OPTIONS & set(options):
        spec = settings.backbone or "inception_v3"
        backbone = _load_or_skip(lambda: _load_network(spec, "IS/FID need a backbone", device,
                                 "" if settings.backbone else "; any classifier also works offline, e.g. --backbone resnet56-cifar10:PATH (not comparable with published IS/FID)",
                                 "--backbone"), BACKBONE_OPTIONS, bool(settings.backbone), named, options, notes)

    # labels: sub-folder names when they name the classifier's classes, else its own prediction on the original
    label_source = None
    folder_labels: list[int] | None = None
    if classifier is not None:
        indices = [classifier.class_index(p.folder) if p.folder else None for p in photos]
        wnid_labels = imagenet_labels_from_names(photos, settings.data) if classifier.num_classes == 1000 else None
        if all(i is not None for i in indices):
            folder_labels, label_source = indices, "sub-folder names"
        elif wnid_labels is not None:
            folder_labels, label_source = wnid_labels, f"ImageNet WNIDs of the file names ({IMAGENET_CLASSES_FILE})"
        elif classifier.class_names is None:
            folders = sorted({p.folder for p in photos if p.folder})
            if len(folders) == classifier.num_classes and all(p.folder for p in photos):
                folder_labels = [folders.index(p.folder) for p in photos]
                label_source = "sub-folder names in sorted order (the ImageFolder convention of a fine-tuned classifier)"
        if folder_labels is None:
            label_source = "the classifier's own prediction on the colour original"
            notes.append(f"Labels: the photos' sub-folders do not name {classifier.name}'s classes, so each photo's label is "
                         f"{classifier.name}'s prediction on its colour original (accuracy of 'real' is 1 by construction).")

    names = ["real", "grey"] + [c.name for c in contenders]
    stats = {name: RowStats() for name in names}
    truth_hist = torch.zeros(M.AB_BINS, dtype=torch.float64)
    labels_all: list[torch.Tensor] = []
    sample_positions = set(np.linspace(0, len(photos) - 1, min(settings.report_samples, len(photos))).round().astype(int).tolist()) if settings.report_samples > 0 else set()
    samples: list[dict] = []
    skipped_grey: list[str] = []
    skipped_bad: list[str] = []
    missing_predictions: list[str] = []
    wrong_size: list[str] = []
    omega_count = 0
    evaluated = 0
    want = set(options)
    is_pixel = bool(want & set(PIXEL_OPTIONS))

    for start in range(0, len(photos), settings.batch_size):
        chunk = list(enumerate(photos[start : start + settings.batch_size], start=start))
        truths, kept, predicted_rows = [], [], {c.name: [] for c in contenders if c.predictions is not None}
        for position, photo in chunk:
            try:
                image = open_image(photo.path)
            except ImageReadError as exc:
                skipped_bad.append(str(exc))
                continue
            if mean_chroma(image.convert("RGB"), thumbnail=64) < COLOUR_CHROMA_THRESHOLD:
                skipped_grey.append(str(photo.relative))
                continue
            predictions = {}
            for contender in contenders:
                if contender.predictions is None:
                    continue
                match = contender.predictions.get(photo.relative.with_suffix(""))
                if match is None:
                    missing_predictions.append(f"{contender.name}: {photo.relative}")
                    break
                try:
                    predicted = open_image(match)
                except ImageReadError as exc:
                    skipped_bad.append(str(exc))
                    break
                if predicted.size != image.size:
                    # a thumbnail, a rotated copy or another photo would be scored under this name
                    wrong_size.append(f"{match}: {predicted.width}x{predicted.height}, the ground truth {photo.relative} is {image.width}x{image.height}")
                    break
                predictions[contender.name] = square_crop(predicted, size)
            else:
                truths.append(square_crop(image, size))
                kept.append((position, photo))
                for name, array in predictions.items():
                    predicted_rows[name].append(array)
        if progress:
            progress(min(start + settings.batch_size, len(photos)), len(photos))
        if not kept:
            continue
        evaluated += len(kept)
        truth_u8 = torch.from_numpy(np.stack(truths))
        truth = _to_float(truth_u8)
        lightness = rgb_to_lightness(truth)
        true_ab = rgb_to_lab_normalized(truth)[1]
        truth_hist += M.ab_histogram(true_ab)
        rows_u8: dict[str, torch.Tensor] = {"real": truth_u8, "grey": (grey_rgb(truth) * 255).round().clamp(0, 255).to(torch.uint8)}
        for contender in contenders:
            if contender.colorizer is not None:
                rows_u8[contender.name] = colorize_batch(contender.colorizer, lightness)
            else:
                rows_u8[contender.name] = torch.from_numpy(np.stack(predicted_rows[contender.name]))

        labels = None
        if classifier is not None:
            if folder_labels is not None:
                labels = torch.tensor([folder_labels[position] for position, _ in kept])
            else:
                labels = classifier.probabilities(truth).argmax(dim=-1)
            labels_all.append(labels)
        for name, rgb_u8 in rows_u8.items():
            row = stats[name]
            rgb = _to_float(rgb_u8)
            if is_pixel and name != "real":
                pred_ab = rgb_to_lab_normalized(rgb)[1]
                if "ab-l1" in want:
                    row.add("ab_l1", M.ab_l1(pred_ab, true_ab))
                    row.add("ab_l1_grid", M.ab_l1_grid(pred_ab, true_ab))
                if "weighted" in want:
                    row.bins_all += M.binned_ab_error(pred_ab, true_ab)
                    row.bins_grid += M.binned_ab_error(M.grid_pixels(pred_ab), M.grid_pixels(true_ab))
                    row.pixels_all += pred_ab[:, 0].numel()
                    row.pixels_grid += M.grid_pixels(pred_ab)[:, 0].numel()
                if "psnr" in want:
                    row.add("psnr", M.psnr(rgb, truth))
                if "ssim" in want:
                    row.add("ssim", M.ssim(rgb, truth))
            if "colourfulness" in want:
                row.add("colourfulness", M.colourfulness(rgb))
            outputs = classifier.outputs(rgb) if classifier is not None else None
            if classifier is not None:
                probabilities = outputs[0]
                row.p_true.append(M.true_class_probability(probabilities, labels))
                row.predicted.append(probabilities.argmax(dim=-1))
                if "omega" in want:
                    room = settings.omega_images - omega_count
                    if room > 0:
                        row.omega_images.append((classifier.resize(rgb[:room]) * 255).round().to(torch.uint8).cpu())
            if backbone is not None:
                probabilities, features = outputs if backbone is classifier else backbone.outputs(rgb)
                row.backbone_probs.append(probabilities)
                if row.moments is None:
                    row.moments = M.FeatureMoments(features.shape[-1])
                row.moments.update(features)
        for contender in contenders:
            if "diversity" in want and contender.sampler is not None:
                small = F.interpolate(lightness, size=(contender.colorizer.size,) * 2, mode="bilinear", antialias=True, align_corners=False)
                drawn = contender.sampler.sample_ab(normalize_l(small), settings.samples, settings.sample_method, settings.seed + start).ab
                sample_ab = rgb_to_lab_normalized(_to_float(join_samples(lightness, drawn)))[1]  # (B, k, 2, S, S)
                stats[contender.name].add("error_of_best", M.error_of_best(sample_ab, true_ab))
                stats[contender.name].add("variance", M.per_pixel_variance(sample_ab))
        if "omega" in want:
            omega_count = min(settings.omega_images, omega_count + len(kept))
        for offset, (position, photo) in enumerate(kept):
            if position in sample_positions:
                samples.append({"photo": str(photo.relative), "images": {name: rows_u8[name][offset].permute(1, 2, 0).numpy().copy() for name in names}})

    if evaluated == 0:
        raise EvaluationError(f"--data {data}: no usable colour photo (unreadable: {len(skipped_bad)}, near-greyscale: {len(skipped_grey)}, without prediction: {len(missing_predictions)}, prediction of another size: {len(wrong_size)})")
    if skipped_grey:
        notes.append(f"{len(skipped_grey)} near-greyscale photos were skipped (no colour to compare with), e.g. {skipped_grey[0]}.")
    if skipped_bad:
        notes.append(f"{len(skipped_bad)} photos were skipped as unreadable, e.g. {skipped_bad[0]}.")
    if wrong_size:
        notes.append(f"{len(wrong_size)} predictions were refused because their size differs from the ground truth's and left out for every row, e.g. {wrong_size[0]}.")
    if missing_predictions:
        notes.append(f"{len(missing_predictions)} photos have no file in a predictions folder and were left out for every row, e.g. {missing_predictions[0]}.")

    # --- finalise ---
    keys = [key for key, info in METRICS.items() if info.option in want]
    rows = [Row("real", "baseline", "the ground-truth colour photos"), Row("grey", "baseline", "the greyscale input (a = b = 0)")]
    rows += [Row(c.name, c.kind, c.source) for c in contenders]
    weights = M.histogram_weights(truth_hist)
    real_colourfulness = stats["real"].mean("colourfulness")
    labels_cat = torch.cat(labels_all) if labels_all else None
    p_colour = torch.cat(stats["real"].p_true) if classifier is not None else None
    p_grey = torch.cat(stats["grey"].p_true) if classifier is not None else None
    trained_omega = {}
    if "omega" in want:
        if log:
            log(f"Omega: fine-tuning {len(names)} copies of {classifier.name} for {settings.omega_steps} steps each")
        omega_labels = labels_cat[:omega_count]
        reference = None
        from .classifiers import finetune

        for name in names:
            images = torch.cat(stats[name].omega_images)[:omega_count]
            trained_omega[name] = finetune(classifier, images, omega_labels, settings.omega_steps, settings.omega_batch, settings.omega_lr, settings.seed)
            if name == "real":
                reference = trained_omega[name]
        trained_omega = {name: M.omega(reference, model) for name, model in trained_omega.items()}
    real_moments = stats["real"].moments
    for row in rows:
        s = stats[row.name]
        values: dict[str, float | None] = {}
        for key in keys:
            if row.name == "real" and key not in REAL_ROW_METRICS:
                values[key] = None
                continue
            if key in ("ab_l1", "ab_l1_grid", "psnr", "ssim", "colourfulness", "error_of_best", "variance"):
                values[key] = s.mean(key)
            elif key == "ab_l1_vs_grey":
                values[key], values[f"{key}_se"] = paired_difference(s.per_image.get("ab_l1"), stats["grey"].per_image.get("ab_l1")) if row.name != "grey" else (None, None)
            elif key == "weighted_error":
                values[key] = M.weighted_error_from_bins(s.bins_all, s.pixels_all, weights)
            elif key == "weighted_error_grid":
                values[key] = M.weighted_error_from_bins(s.bins_grid, s.pixels_grid, weights)
            elif key == "colourfulness_rel":
                mean = s.mean("colourfulness")
                values[key] = mean / real_colourfulness if mean is not None and real_colourfulness else None
            elif key == "accuracy":
                values[key] = M.accuracy(torch.cat(s.predicted), labels_cat)
            elif key == "cim":
                values[key] = M.cim(p_colour, p_grey, torch.cat(s.p_true))
            elif key == "omega":
                values[key] = trained_omega.get(row.name) if row.name != "real" else None
            elif key == "is":
                mean, std = M.inception_score(torch.cat(s.backbone_probs), settings.is_splits)
                values[key], values["is_std"] = mean, std
            elif key == "fid":
                values[key] = M.frechet_distance(s.moments.mean(), s.moments.covariance(), real_moments.mean(), real_moments.covariance())
        row.values = values

    # --- what the figures mean ---
    if "weighted" in want:
        notes.append(f"Weighted ab error: 1/H weights from the ab histogram of these {evaluated} ground-truth photos "
                     f"({int((truth_hist > 0).sum())} occupied 10x10 bins), so figures compare only within one data set.")
    if classifier is not None:
        notes.append(f"Classifier: {classifier.name} ({classifier.trained_on}, from {classifier.source}), input {classifier.input_size} px; labels from {label_source}.")
    if "omega" in want:
        notes.append(f"Omega: copies of {classifier.name} fine-tuned from its pretrained weights for {settings.omega_steps} SGD steps "
                     f"(batch {min(settings.omega_batch, omega_count)}, lr {settings.omega_lr}, momentum 0.9, seed {settings.seed}) on the first "
                     f"{omega_count} photos, as real / grey / each model's output; Omega is the squared L2 distance of each copy's weights "
                     "to the real copy's. Paper 003 trains VGG16 for 2 epochs on a disjoint set (D_test-2); raise --omega-steps/--omega-images for real figures.")
    if backbone is not None:
        if backbone.is_inception and backbone.trained_on == "ImageNet":
            notes.append(f"IS/FID backbone: torchvision's Inception-v3 ({backbone.source}); it is not the TF-Inception graph of the published "
                         "IS/FID code, so compare figures within this table, not with papers.")
        else:
            notes.append(f"IS/FID backbone: {backbone.name} ({backbone.trained_on}): classifier-based IS/FID, NOT comparable with published Inception figures "
                         f"(IS here ranges from 1 to {backbone.num_classes}).")
        splits = max(1, min(settings.is_splits, evaluated))
        notes.append(f"IS: mean (and std) over {splits} split(s) of the {evaluated} photos; FID against the real photos of the same set"
                     + ("; with fewer than 2,048 photos FID is strongly biased upward." if evaluated < 2048 and "fid" in want else "."))
    if "diversity" in want:
        samplers = [c.name for c in contenders if c.sampler]
        notes.append(f"Diversity: {settings.samples} colorizations per photo ({settings.sample_method}) from {', '.join(samplers)}, compared at "
                     f"{size} px in ab/110 units (paper 004: 64 px, ab/128 units); deterministic models have none.")
    info = {
        "data": str(data), "photos": evaluated, "size": size, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": str(device), "seed": settings.seed, "metric_options": options,
        "classifier": classifier.name if classifier else None, "classifier_source": classifier.source if classifier else None,
        "labels": label_source, "backbone": backbone.name if backbone else None, "backbone_source": backbone.source if backbone else None,
        "samples_per_photo": settings.samples if "diversity" in want else None,
        "omega": {"steps": settings.omega_steps, "images": omega_count, "batch": settings.omega_batch, "lr": settings.omega_lr} if "omega" in want else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return EvalResult(rows, keys, info, notes, samples)


# --- output: text table, JSON, HTML report ---------------------------------------------------------

def format_value(key: str, value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "inf"
    if key == "variance" or (key == "omega" and 0 < abs(value) < 1e-3):
        return f"{value:.3g}"
    text = f"{value:.{METRICS[key].digits}f}"
    if std:
        text += f" ± {std:.{METRICS[key].digits}f}"
    return text


def spread(key: str, values: dict[str, float | None], with_std: bool) -> float | None:
    """The ± figure shown with a value: a paired difference's standard error always, IS's split std if asked."""
    if key == "is":
        return values.get("is_std") if with_std else None
    return values.get(f"{key}_se")


def table_rows(result: EvalResult, with_std: bool = False) -> list[list[str]]:
    """[metric label, better, value per row...] for each metric (IS with its std across splits if asked)."""
    out = []
    for key in result.metrics:
        info = METRICS[key]
        out.append([info.label, info.better] + [format_value(key, row.values.get(key), spread(key, row.values, with_std)) for row in result.rows])
    return out


def write_json(result: EvalResult, path: Path) -> Path:
    atomic_write_bytes(path, (json.dumps(result.to_json(), indent=1) + "\n").encode("utf-8"))
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower() or "row"


_BAR_COLOURS = {"baseline": (150, 150, 150), "model": (52, 101, 164), "predictions": (78, 154, 6)}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def bar_chart(title: str, labels: list[str], values: list[float | None], kinds: list[str], note: str = "",
              texts: list[str] | None = None) -> Image.Image:
    """A horizontal bar chart drawn with PIL (no plotting library needed); None values show 'n/a'."""
    font = _font(14)
    row_height, left, right, top = 26, 200, 120, 50
    width = 720
    height = top + row_height * len(labels) + 16
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font)
    if note:
        draw.text((10, 24), note, fill=(90, 90, 90), font=font)
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low = min([0.0] + finite)
    high = max([0.0] + finite) or 1.0
    span = (high - low) or 1.0
    plot = width - left - right
    zero = left + plot * (0 - low) / span
    for i, (label, value, kind) in enumerate(zip(labels, values, kinds)):
        y = top + i * row_height
        text = label if len(label) <= 30 else label[:29] + "…"
        draw.text((8, y + 5), text, fill="black", font=font)
        if value is None or not math.isfinite(value):
            draw.text((left + 4, y + 5), "n/a", fill=(120, 120, 120), font=font)
            continue
        end = left + plot * (value - low) / span
        x0, x1 = sorted((zero, end))
        draw.rectangle([x0, y + 3, max(x1, x0 + 1), y + row_height - 4], fill=_BAR_COLOURS.get(kind, (52, 101, 164)))
        draw.text((max(x1, zero) + 6, y + 5), texts[i] if texts else f"{value:.4g}", fill="black", font=font)
    draw.line([zero, top - 2, zero, height - 10], fill=(60, 60, 60))
    return image


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}th small{color:#777;font-weight:normal}
.samples td{text-align:center;vertical-align:top;font-size:12px}.samples img{image-rendering:pixelated;display:block;margin:auto}
.charts img{margin:6px;border:1px solid #ddd}code{background:#f5f5f5;padding:1px 3px}
"""


def write_report(result: EvalResult, folder: Path) -> Path:
    """``folder/index.html`` (self-contained, relative image paths) with the table, notes, bar
    charts (``charts/*.png``) and sample photos side by side (``samples/*.png``); plus results.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(result, folder / "results.json")
    esc = html.escape
    names = [row.name for row in result.rows]
    kinds = {row.name: row.kind for row in result.rows}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>recolor evaluation</title><style>{_CSS}</style></head><body>",
             "<h1>recolor evaluation</h1>"]
    info = result.info
    parts.append(f"<p>{info['photos']} photos from <code>{esc(info['data'])}</code> at {info['size']}x{info['size']} px; "
                 f"{esc(info['date'])}; {info['seconds']} s on {esc(info['device'])}.</p>")
    # table
    headers = "".join(f"<th>{esc(n)}" + ("<br><small>baseline</small>" if kinds[n] == "baseline" else "") + "</th>" for n in names)
    parts.append(f"<h2>Results</h2><table><tr><th class='l'>metric</th><th class='l'>better</th>{headers}</tr>")
    for key, cells in zip(result.metrics, table_rows(result, with_std=True)):
        parts.append(f"<tr><td class='l' title='{esc(METRICS[key].description)}'>{esc(cells[0])}</td><td class='l'>{esc(cells[1])}</td>"
                     + "".join(f"<td>{esc(c)}</td>" for c in cells[2:]) + "</tr>")
    parts.append("</table><p>Rows <b>real</b> and <b>grey</b> are the references: the ground truth itself and the greyscale input. "
                 "— marks a figure that does not apply (e.g. errors of the ground truth against itself).</p>")
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    # charts
    parts.append("<h2>Charts</h2><div class='charts'>")
    for key in result.metrics:
        values = [row.values.get(key) for row in result.rows]
        if all(v is None or not math.isfinite(v) for v in values):
            continue
        info_m = METRICS[key]
        better = f"{info_m.better} is better" if info_m.better in ("lower", "higher") else f"better {info_m.better}"
        chart = bar_chart(f"{info_m.label} ({better})", names, values, [kinds[n] for n in names], "grey bars: the baselines",
                          [format_value(key, v) for v in values])
        path = folder / "charts" / f"{_slug(key)}.png"
        save_image(path, np.asarray(chart))
        parts.append(f"<img src='charts/{_slug(key)}.png' alt='{esc(info_m.label)}' title='{esc(info_m.description)}'>")
    parts.append("</div>")
    # samples
    if result.samples:
        shown = ["grey"] + [n for n in names if n not in ("real", "grey")] + ["real"]
        headers = {"grey": "grey input", "real": "ground truth"}
        display = max(128, result.info["size"]) if result.info["size"] < 128 else min(256, result.info["size"])
        parts.append("<h2>Samples</h2><table class='samples'><tr><th class='l'>photo</th>" + "".join(f"<th>{esc(headers.get(n, n))}</th>" for n in shown) + "</tr>")
        for index, sample in enumerate(result.samples):
            cells = []
            for name in shown:
                filename = f"samples/{index:03d}_{_slug(name)}.png"
                save_image(folder / filename, sample["images"][name])
                cells.append(f"<td><img src='{filename}' width='{display}' height='{display}' alt='{esc(name)}'></td>")
            parts.append(f"<tr><td class='l'>{esc(sample['photo'])}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    parts.append("<h2>Metric definitions</h2><ul>" + "".join(f"<li><b>{esc(METRICS[k].label)}</b>: {esc(METRICS[k].description)}</li>" for k in result.metrics) + "</ul>")
    parts.append("</body></html>\n")
    atomic_write_bytes(folder / "index.html", "\n".join(parts).encode("utf-8"))
    return folder / "index.html"


def print_table(result: EvalResult, console) -> None:
    """The results as rich tables (metrics down, rows across), as many as the width needs, then the notes."""
    from rich.markup import escape
    from rich.table import Table

    info = result.info
    cells = table_rows(result)
    label_width = max(len(c[0]) for c in cells) + max(len(c[1]) for c in cells) + 7 if cells else 20
    value_widths = [max([len(row.name)] + [len(c[2 + i]) for c in cells]) + 3 for i, row in enumerate(result.rows)]
    groups, current, used = [], [], label_width
    for index, width in enumerate(value_widths):  # greedy: fill each table up to the console width
        if current and used + width > console.width:
            groups.append(current)
            current, used = [], label_width
        current.append(index)
        used += width
    groups.append(current)
    for number, group in enumerate(groups):
        title = f"recolor evaluate: {info['photos']} photos of {escape(str(info['data']))} at {info['size']} px"
        table = Table(title=title if number == 0 else None, title_justify="left")
        table.add_column("metric", no_wrap=True)
        table.add_column("better", no_wrap=True)
        for index in group:
            row = result.rows[index]
            table.add_column(escape(row.name), justify="right", no_wrap=True, style="dim" if row.kind == "baseline" else None)
        for line in cells:
            table.add_row(line[0], line[1], *[line[2 + index] for index in group])
        console.print(table)
    for note in result.notes:
        console.print(f"- {escape(note)}", highlight=False, soft_wrap=True)
