"""What ``recolor evaluate`` is asked to do, and the error it raises on bad input."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class EvaluationError(Exception):
    """Bad input or a missing requirement; the message is one line and says what to pass."""


@dataclass
class EvalSettings:
    data: Path
    models: list[str] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)  # DIR or NAME=DIR
    metrics: list[str] | None = None  # --metric values; None = pixel metrics (+ those whose network was given)
    size: int | None = None  # evaluation resolution; default min(256, shorter side of the smallest photo)
    chroma: float = 1.0  # the models' colour scaled as by `recolor colorize --chroma`
    limit: int | None = None
    classifier: str | None = None  # default efficientnet-lite2 (ImageNet, installed: offline) when a classifier metric is asked for
    backbone: str | None = None  # default efficientnet-lite2 too (IS/FID then not comparable with Inception-v3 figures)
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
    hints: list[int] = field(default_factory=list)  # --hints N: a row per N with N points revealed from the truth
