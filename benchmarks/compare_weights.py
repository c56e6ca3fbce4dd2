"""Is a new weights file better than the shipped one? Photo by photo, on the same crops.

``recolor evaluate`` gives each model's figures and its paired difference from the grey output.
Whether a candidate beats the shipped file needs the difference between the two models on each
photo: far less noisy than comparing their two means. For each candidate this prints

* on ``photos/val`` (evaluate's 256 px crops and its near-grey skip): ab-L1 minus the reference's,
  mean ± standard error, and on how many photos it is lower / higher;
* with ``--judge``, on ``photos-extra/imagenet-sample``: the ImageNet judge's top-1 (EfficientNet-Lite2,
  not the colorizer's lite0 encoder) and how many photos only the candidate / only the reference
  gets right (the discordant pairs of McNemar's test), with the net gain ± its standard error.

    python benchmarks/compare_weights.py runs/new-b02.safetensors                   # against effnet-unet
    python benchmarks/compare_weights.py a.safetensors b.safetensors --judge --judge-limit 400

Needs ``../shared/data``; prints "skipped" without it.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recolor.classifiers import load_classifier  # noqa: E402
from recolor import metrics  # noqa: E402
from recolor.color import rgb_to_lab_normalized  # noqa: E402
from recolor.evaluation.accumulators import paired_difference  # noqa: E402
from recolor.evaluation.judges import imagenet_labels_from_names  # noqa: E402
from recolor.evaluation.photos import find_photos  # noqa: E402
from recolor.inference import Colorizer  # noqa: E402
from common import colorized_crops, evaluation_crops, top1_classes  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def compare_on_val(models: list[str], size: int) -> None:
    truth, kept = evaluation_crops(find_photos(DATA / "photos" / "val", None, 0), size)
    truth_ab = rgb_to_lab_normalized(truth.float() / 255)[1]
    errors = {model: metrics.ab_l1(rgb_to_lab_normalized(colorized_crops(Colorizer.load(model, engine="torch"), truth))[1], truth_ab).double() for model in models}
    reference = models[0]
    print(f"photos/val, {len(kept)} photos at {size} px: {reference} ab-L1 {errors[reference].mean():.4f}")
    for model in models[1:]:
        mean, error = paired_difference(errors[model], errors[reference])
        difference = errors[model] - errors[reference]
        print(f"  {model}: ab-L1 {errors[model].mean():.4f}, minus the reference {mean:+.5f} ± {error:.5f} "
              f"(lower on {int((difference < 0).sum())}, higher on {int((difference > 0).sum())})", flush=True)


def compare_on_judge(models: list[str], limit: int | None) -> None:
    folder = DATA / "photos-extra" / "imagenet-sample"
    truth, kept = evaluation_crops(find_photos(folder, limit, 0), 200)
    photos = [photo for _, photo in kept]
    labels = torch.tensor(imagenet_labels_from_names(photos, folder))
    judge = load_classifier("efficientnet-lite2")
    right = {}
    for model in models:
        right[model] = top1_classes(judge, colorized_crops(Colorizer.load(model, engine="torch"), truth)) == labels
    reference = models[0]
    print(f"imagenet-sample, {len(photos)} photos at 200 px, judged by efficientnet-lite2: {reference} top-1 {right[reference].float().mean():.4f}")
    for model in models[1:]:
        only_here = int((right[model] & ~right[reference]).sum())
        only_there = int((right[reference] & ~right[model]).sum())
        net, error = (only_here - only_there) / len(photos), math.sqrt(only_here + only_there) / len(photos)
        print(f"  {model}: top-1 {right[model].float().mean():.4f}; right only here {only_here}, only with the reference "
              f"{only_there}: {net:+.4f} ± {error:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", help="weights files or model names")
    parser.add_argument("--reference", default="effnet-unet", help="what the candidates are compared with (the shipped default)")
    parser.add_argument("--size", type=int, default=256, help="crop side on photos/val")
    parser.add_argument("--judge", action="store_true", help="also the ImageNet judge on imagenet-sample")
    parser.add_argument("--judge-limit", type=int, help="a seeded random subset of imagenet-sample, as evaluate --limit")
    args = parser.parse_args()
    if not (DATA / "photos" / "val").is_dir():
        print(f"skipped: {DATA} not found (the shared data)")
        return
    models = [args.reference, *args.candidates]
    compare_on_val(models, args.size)
    if args.judge:
        compare_on_judge(models, args.judge_limit)


if __name__ == "__main__":
    main()
