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
The metrics themselves are the pure functions of :mod:`recolor.metrics`; the parts of this
command (metric table, accumulators, photos, contenders, judges, result, report) live in
:mod:`recolor.evaluation`. This module runs them in order and is the API: its names below are
the ones to import.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .color import grey_rgb, rgb_to_lightness
from .evaluation.accumulators import ACCUMULATORS, Accumulator, GroundTruth, ScoredBatch, Setup, as_float, make_accumulators, row_values
from .evaluation.catalogue import (BACKBONE_OPTIONS, CLASSIFIER_OPTIONS, METRIC_OPTIONS, METRICS, PIXEL_OPTIONS, REAL_ROW_METRICS,
                                   MetricInfo, named_options, parse_metric_options)
from .evaluation.contenders import Contender, contender_outputs, load_contenders, row_name, shipped_models
from .evaluation.judges import IMAGENET_CLASSES_FILE, Labels, choose_labels, imagenet_labels_from_names, load_judges
from .evaluation.photos import CroppedChunk, Photo, Skipped, default_size, find_photos, read_chunk, square_crop
from .evaluation.report import bar_chart, print_table, write_report
from .evaluation.result import EvalResult, Row, format_value, table_rows, write_json
from .evaluation.settings import MIN_SIZE, EvalSettings, EvaluationError

__all__ = [
    "ACCUMULATORS", "BACKBONE_OPTIONS", "CLASSIFIER_OPTIONS", "IMAGENET_CLASSES_FILE", "METRICS", "METRIC_OPTIONS", "PIXEL_OPTIONS",
    "REAL_ROW_METRICS", "Contender", "EvalPlan", "EvalResult", "EvalSettings", "EvaluationError", "MetricInfo", "Photo", "Row",
    "bar_chart", "default_size", "evaluate", "find_photos", "format_value", "imagenet_labels_from_names", "parse_metric_options",
    "plan_evaluation", "print_table", "row_name", "square_crop", "table_rows", "write_json", "write_report",
]


# --- before the first photo ---------------------------------------------------------------------

@dataclass
class EvalPlan:
    """Everything decided before the first photo is read."""

    data: Path
    photos: list[Photo]
    contenders: list[Contender]
    options: list[str]  # the --metric options that will run, in canonical order
    size: int
    device: torch.device
    classifier: Any
    backbone: Any
    labels: Labels
    notes: list[str]  # what the figures will need said about them (skipped metrics, labels)
    seed: int = 0  # draws the points --hints reveals

    @property
    def rows(self) -> list[str]:
        return ["real", "grey"] + [c.name for c in self.contenders]


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


def _evaluation_size(settings: EvalSettings, photos: list[Photo], options: list[str]) -> int:
    """--size, else the photos' default; SSIM's 11x11 window leaves the options when it does not fit."""
    size = int(settings.size) if settings.size is not None else default_size(photos)
    if size < MIN_SIZE:
        raise EvaluationError(f"--size {size}: too small (at least {MIN_SIZE} pixels)")
    if "ssim" in options and size < 11:
        if "ssim" in named_options(settings.metrics):
            raise EvaluationError("SSIM needs photos of at least 11x11 pixels; evaluate at --size 11 or more, or leave out --metric ssim")
        options.remove("ssim")
    return size


def plan_evaluation(settings: EvalSettings) -> EvalPlan:
    """Find the photos, load the contenders and judges, choose metrics, size and labels; raises EvaluationError."""
    from .devices import resolve_device
    from .options import said_on_the_command_line

    settings.check()
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
    size = _evaluation_size(settings, photos, options)
    try:
        device = resolve_device(settings.device)
    except ValueError as exc:
        raise EvaluationError(said_on_the_command_line(exc)) from None  # its messages name options as flags
    notes: list[str] = []
    classifier, backbone = load_judges(settings, options, device, notes)
    labels = choose_labels(classifier, photos, data, notes) if classifier is not None else Labels()
    return EvalPlan(data, photos, contenders, options, size, device, classifier, backbone, labels, notes, settings.seed)


# --- the scoring loop ---------------------------------------------------------------------------

def _scored_batch(plan: EvalPlan, cropped: CroppedChunk, start: int) -> ScoredBatch:
    """The baselines' and every contender's output for one batch of cropped photos."""
    truth_u8 = torch.from_numpy(np.stack(cropped.truths))
    truth = as_float(truth_u8)
    lightness = rgb_to_lightness(truth)
    rows_u8 = {"real": truth_u8, "grey": (grey_rgb(truth) * 255).round().clamp(0, 255).to(torch.uint8)}
    rows_u8.update(contender_outputs(plan.contenders, truth_u8, cropped.predicted, [position for position, _ in cropped.kept], plan.seed))
    labels = None
    if plan.classifier is not None:
        labels = plan.labels.for_batch(plan.classifier, [position for position, _ in cropped.kept], truth)
    return ScoredBatch(truth, lightness, rows_u8, labels, start, plan.classifier, plan.backbone)


def _sample_positions(count: int, wanted: int) -> set[int]:
    """Positions of the photos shown in the report: ``wanted`` spread evenly over the ``count``."""
    if wanted <= 0:
        return set()
    return set(np.linspace(0, count - 1, min(wanted, count)).round().astype(int).tolist())


def score_photos(plan: EvalPlan, settings: EvalSettings, accumulators: list[Accumulator], truth: GroundTruth,
                 progress: Callable[[int, int], None] | None = None) -> tuple[Skipped, list[dict]]:
    """Feed every batch of photos to the accumulators; (what was skipped, the report's sample photos)."""
    skipped, samples = Skipped(), []
    shown = _sample_positions(len(plan.photos), settings.report_samples)
    predictions = {c.name: c.predictions for c in plan.contenders if c.predictions is not None}
    for start in range(0, len(plan.photos), settings.batch_size):
        chunk = list(enumerate(plan.photos[start : start + settings.batch_size], start=start))
        cropped = read_chunk(chunk, predictions, plan.size, skipped)
        if progress:
            progress(min(start + settings.batch_size, len(plan.photos)), len(plan.photos))
        if not cropped.kept:
            continue
        batch = _scored_batch(plan, cropped, start)
        truth.add(batch)
        for accumulator in accumulators:
            accumulator.update(batch)
        for offset, (position, photo) in enumerate(cropped.kept):
            if position in shown:
                samples.append({"photo": str(photo.relative),
                                "images": {name: rows[offset].permute(1, 2, 0).numpy().copy() for name, rows in batch.rows_u8.items()}})
    return skipped, samples


# --- the evaluation ------------------------------------------------------------------------------

def evaluate(settings: EvalSettings, progress: Callable[[int, int], None] | None = None,
             log: Callable[[str], None] | None = None) -> EvalResult:
    """Score every model and predictions folder (and the baselines) on the photos of ``settings.data``."""
    from .video.scoring import evaluate_videos, wants_videos

    if wants_videos(settings):  # a folder of colour clips: flicker and CDC beside per-frame ab-L1/PSNR
        return evaluate_videos(settings, progress, log)
    started = time.perf_counter()
    plan = plan_evaluation(settings)
    truth = GroundTruth()
    samplers = {c.name: c.sampler for c in plan.contenders if c.sampler is not None}
    setup = Setup(settings, plan.rows, truth, plan.classifier, plan.backbone, samplers, log)
    accumulators = make_accumulators(plan.options, setup)
    skipped, samples = score_photos(plan, settings, accumulators, truth, progress)
    if truth.photos == 0:
        raise skipped.nothing_usable(plan.data)
    for accumulator in accumulators:
        accumulator.finish()
    rows = [Row("real", "baseline", "the ground-truth colour photos"), Row("grey", "baseline", "the greyscale input (a = b = 0)")]
    rows += [Row(c.name, c.kind, c.source) for c in plan.contenders]
    for row in rows:
        row.values = row_values(row.name, accumulators)
    notes = plan.notes + skipped.notes() + closing_notes(settings, plan, truth)
    # an option's keys that some accumulator filled (sample accuracy needs a classifier as well)
    keys = [key for key, info in METRICS.items() if info.option in plan.options and any(key in row.values for row in rows)]
    return EvalResult(rows, keys, run_info(settings, plan, truth, started), notes, samples)


def _omega_images(settings: EvalSettings, truth: GroundTruth) -> int:
    return min(settings.omega_images, truth.photos)


def closing_notes(settings: EvalSettings, plan: EvalPlan, truth: GroundTruth) -> list[str]:
    """What the figures mean: where the weights, labels, networks and samples come from."""
    want, evaluated, classifier, backbone = set(plan.options), truth.photos, plan.classifier, plan.backbone
    notes = []
    if "weighted" in want:
        notes.append(f"Weighted ab error: 1/H weights from the ab histogram of these {evaluated} ground-truth photos "
                     f"({int((truth.histogram > 0).sum())} occupied 10x10 bins), so figures compare only within one data set.")
    if classifier is not None:
        notes.append(f"Classifier: {classifier.name} ({classifier.trained_on}, from {classifier.source}), input {classifier.input_size} px; labels from {plan.labels.source}.")
    if "omega" in want:
        count = _omega_images(settings, truth)
        notes.append(f"Omega: copies of {classifier.name} fine-tuned from its pretrained weights for {settings.omega_steps} SGD steps "
                     f"(batch {min(settings.omega_batch, count)}, lr {settings.omega_lr}, momentum 0.9, seed {settings.seed}) on the first "
                     f"{count} photos, as real / grey / each model's output; Omega is the squared L2 distance of each copy's weights "
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
        samplers = [c.name for c in plan.contenders if c.sampler]
        notes.append(f"Diversity: {settings.samples} colorizations per photo ({settings.sample_method}) from {', '.join(samplers)}, compared at "
                     f"{plan.size} px in ab/110 units (paper 004: 64 px, ab/128 units); deterministic models have none.")
    return notes


def run_info(settings: EvalSettings, plan: EvalPlan, truth: GroundTruth, started: float) -> dict:
    """What was run: the ``info`` of the result (and of its JSON)."""
    classifier, backbone, want = plan.classifier, plan.backbone, set(plan.options)
    return {
        "data": str(plan.data), "photos": truth.photos, "size": plan.size, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": str(plan.device), "seed": settings.seed, "metric_options": plan.options,
        "classifier": classifier.name if classifier else None, "classifier_source": classifier.source if classifier else None,
        "labels": plan.labels.source, "backbone": backbone.name if backbone else None, "backbone_source": backbone.source if backbone else None,
        "samples_per_photo": settings.samples if "diversity" in want else None,
        "omega": {"steps": settings.omega_steps, "images": _omega_images(settings, truth), "batch": settings.omega_batch,
                  "lr": settings.omega_lr} if "omega" in want else None,
        "seconds": round(time.perf_counter() - started, 2),
    }
