"""What ``recolor evaluate`` is asked to do, and the error it raises on bad input."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..seeds import check_seed

MIN_SIZE = 8
# photos held at once at the evaluation size (a batch): about 120 bytes a pixel go through the
# contenders and the metrics, so 16 Mpx is about 2 GB (16 photos at 1024 px, one at 4096 px)
MAX_BATCH_PIXELS = 16 * 1024 * 1024


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

    def check(self) -> None:
        """An EvaluationError (one line) for a setting that would fail, or exhaust memory, later."""
        if self.batch_size < 1:
            raise EvaluationError(f"--batch-size {self.batch_size}: must be 1 or more")
        if self.size is not None and self.size < MIN_SIZE:
            raise EvaluationError(f"--size {self.size}: too small (at least {MIN_SIZE} pixels)")
        if self.size is not None and self.batch_size * self.size**2 > MAX_BATCH_PIXELS:
            largest = int((MAX_BATCH_PIXELS / self.batch_size) ** 0.5)
            raise EvaluationError(f"--size {self.size}: too large for --batch-size {self.batch_size} (a batch of {self.size} x {self.size} photos "
                                  f"would not fit in memory; at most {largest} px at this batch size, {int(MAX_BATCH_PIXELS ** 0.5)} px at --batch-size 1)")
        try:
            check_seed(self.seed)
        except ValueError as exc:
            raise EvaluationError(f"--{exc}") from None
