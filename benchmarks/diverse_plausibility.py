"""Are the per-object samples as recognisable as the single colorization? A label-free check on
photos/val, for choosing the region sampler's settings without touching the ImageNet test photos:
the ImageNet judge's top-1 on the real colour photo is the pseudo-label, and the script prints how
often the single colorization and the k samples agree with it.

    python benchmarks/diverse_plausibility.py [--photos 120] [--model effnet-unet] \
        --settings '{}' '{"max_modes": 2}' '{"condition": true}'

Each setting is a JSON object of :class:`recolor.region_sampling.RegionSampler` options.
Thirteenth session (120 photos, the shipped default after its hint-spread choice): single 0.658;
samples with the drawn colour also written into the logits (the old default) 0.618; through the
hints alone (``condition`` false, the new default) 0.633; with at most 2 or 3 modes a region 0.642
and 0.627 (within the noise, about 0.02, and 2 modes left several of five samples identical).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recolor.classifiers import load_classifier  # noqa: E402
from recolor.diverse import load_sampler  # noqa: E402
from recolor.region_sampling import RegionSampler  # noqa: E402

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val"


def square(path: Path, size: int = 256) -> Image.Image:
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--settings", nargs="+", type=json.loads, default=[{}])
    args = parser.parse_args()
    if not VAL.is_dir():
        raise SystemExit(f"{VAL}: not found (the shared data)")
    files = sorted(p for p in VAL.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = [files[i] for i in np.random.default_rng(0).choice(len(files), min(args.photos, len(files)), replace=False)]
    judge = load_classifier("efficientnet-lite2", download=False)

    def top1(images: list[Image.Image]) -> list[int]:
        batch = torch.stack([torch.from_numpy(np.asarray(i.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1) for i in images])
        with torch.no_grad():
            return judge.outputs(batch)[0].argmax(-1).tolist()

    reals = [square(path) for path in files]
    labels = top1(reals)
    base = load_sampler(args.model, device="cpu")
    single = top1([base.colorizer.colorize(real.convert("L")) for real in reals])
    print(f"{len(reals)} photos of photos/val; single colorization agrees with the judge's top-1 on the real photo: "
          f"{np.mean([a == b for a, b in zip(single, labels)]):.3f}")
    for options in args.settings:
        sampler = RegionSampler(base.colorizer, **options)
        agreement = [np.mean([p == label for p in top1(sampler.sample(real.convert("L"), k=args.k, seed=0))])
                     for real, label in zip(reals, labels)]
        print(f"samples {json.dumps(options)}: {np.mean(agreement):.3f}")


if __name__ == "__main__":
    main()
