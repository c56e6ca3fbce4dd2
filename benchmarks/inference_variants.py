"""Inference-time variants of the default model, photo by photo against it (no weights change).

Each variant changes only how the shipped ``effnet-unet`` is run, so it could ship without a new
weights file if it won. On every photo of ``photos/val`` at its full size (the model sees it as
`recolor colorize` does, its colour is upsampled to the photo's size), this prints ab-L1, its
paired difference from the plain model (mean ± standard error) and the mean colourfulness
(Hasler and Süsstrunk, :func:`recolor.metrics.colourfulness`) of each:

* ``flip``: the bin probabilities of the photo and of its mirror image averaged before the
  annealed mean (test-time augmentation; twice the network's work);
* ``guided``: the predicted colour (upsampled from the network's quarter resolution) refined by
  a guided filter (He, Sun and Tang 2010) with the network's input lightness as the guide, so
  that colour edges follow the photo's edges; radius 8, eps 0.01 (lightness in [0, 1]);
* ``aspect``: the network sees the photo at its own aspect ratio (about 256x256 pixels in all,
  sides multiples of 32) instead of squeezed into a 256x256 square.

    python benchmarks/inference_variants.py [--data ../shared/data/photos/val] [--variants flip aspect] [--limit 100]

Needs ``../shared/data``; prints "skipped" without it. Findings: weights/README.md,
"Tried and not shipped: changing how the shipped file is run".
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recolor import metrics  # noqa: E402
from recolor.ab_bins import annealed_mean  # noqa: E402
from recolor.color import lab_normalized_to_rgb, rgb_to_lab_normalized  # noqa: E402
from recolor.evaluation.accumulators import paired_difference  # noqa: E402
from recolor.evaluation.photos import find_photos  # noqa: E402
from recolor.imageio import COLOUR_CHROMA_THRESHOLD, mean_chroma  # noqa: E402
from recolor.inference import Colorizer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
VARIANTS = ("plain", "flip", "guided", "aspect")


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int = 8, eps: float = 0.01) -> torch.Tensor:
    """He et al.'s guided filter: ``source`` (B, C, H, W) made locally linear in ``guide`` (B, 1, H, W)."""
    mean_guide, mean_source = box_mean(guide, radius), box_mean(source, radius)
    slope = (box_mean(guide * source, radius) - mean_guide * mean_source) / (box_mean(guide * guide, radius) - mean_guide**2 + eps)
    offset = mean_source - slope * mean_guide
    return box_mean(slope, radius) * guide + box_mean(offset, radius)


def flip_averaged_ab(network: torch.nn.Module, lightness: torch.Tensor) -> torch.Tensor:
    """Normalised ab from the mean of the photo's and its mirror's bin probabilities (decoded as the network does)."""
    boost = network.colour_boost * network.bin_log_weights.view(1, -1, 1, 1)
    logits = network.quarter_output(lightness).float(), network.quarter_output(lightness.flip(-1)).flip(-1).float()
    probabilities = sum(torch.softmax(each + boost, dim=1) for each in logits) / 2
    ab = annealed_mean(probabilities.clamp_min(1e-12).log(), network.bin_centres, network.temperature)
    return F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)


def network_shape(height: int, width: int, variant: str, side: int = 256) -> tuple[int, int]:
    if variant != "aspect":
        return side, side
    scale = side / math.sqrt(height * width)
    return tuple(max(32, round(length * scale / 32) * 32) for length in (height, width))


@torch.no_grad()
def predicted_ab(colorizer: Colorizer, lightness: torch.Tensor, variant: str) -> torch.Tensor:
    """Normalised ab (1, 2, H, W) for the photo's normalised L (1, 1, H, W)."""
    height, width = lightness.shape[-2:]
    small = F.interpolate(lightness, size=network_shape(height, width, variant), mode="bilinear", antialias=True, align_corners=False)
    if variant == "flip":
        ab = flip_averaged_ab(colorizer.generator, small)
    else:
        ab = colorizer.predict_ab(small)
    if variant == "guided":
        ab = guided_filter((small + 1) / 2, ab).clamp(-1, 1)
    return F.interpolate(ab, size=(height, width), mode="bilinear", align_corners=False)


def rgb_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def colour_photos(folder: Path, limit: int | None) -> list[Image.Image]:
    """The folder's photos (or a seeded subset), leaving out the near-greyscale ones as `recolor evaluate` does."""
    images = [Image.open(photo.path) for photo in find_photos(folder, limit, 0)]
    return [image for image in images if mean_chroma(image.convert("RGB"), thumbnail=64) >= COLOUR_CHROMA_THRESHOLD]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "photos" / "val", help="colour photos (default: photos/val)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS[1:], default=VARIANTS[1:])
    parser.add_argument("--limit", type=int, help="a seeded random subset")
    args = parser.parse_args()
    variants = ("plain", *args.variants)
    if not args.data.is_dir():
        print(f"skipped: {DATA} not found (the shared data)")
        return
    colorizer = Colorizer.load("effnet-unet", engine="torch", precision="fp32")
    errors, colourfulness = {v: [] for v in variants}, {v: [] for v in variants}
    photos = colour_photos(args.data, args.limit)
    for index, photo in enumerate(photos):
        lightness, truth_ab = rgb_to_lab_normalized(rgb_tensor(photo))
        for variant in variants:
            ab = predicted_ab(colorizer, lightness, variant)
            errors[variant].append(metrics.ab_l1(ab, truth_ab).item())
            colourfulness[variant].append(metrics.colourfulness(lab_normalized_to_rgb(lightness, ab)).item())
        if (index + 1) % 50 == 0:
            print(f"  {index + 1} of {len(photos)} photos", flush=True)
    plain = torch.tensor(errors["plain"], dtype=torch.float64)
    real = np.mean([metrics.colourfulness(rgb_tensor(photo)).item() for photo in photos])
    print(f"{args.data}, {len(photos)} colour photos at full size; real colourfulness {real:.1f}")
    for variant in variants:
        error = torch.tensor(errors[variant], dtype=torch.float64)
        mean, standard_error = paired_difference(error, plain)
        print(f"  {variant:7s} ab-L1 {error.mean():.4f}, minus plain {mean:+.5f} ± {standard_error:.5f} "
              f"(lower on {int((error < plain).sum())}, higher on {int((error > plain).sum())}), "
              f"colourfulness {np.mean(colourfulness[variant]):.1f} ({np.mean(colourfulness[variant]) / real:.3f} of real)")


if __name__ == "__main__":
    main()
