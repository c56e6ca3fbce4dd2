"""Hints (issue "Tell it the colour"): does a reference photo move the colours toward it, and how
fast does a changed set of points re-colorize a 768x512 photo with the model loaded?

    python benchmarks/hints.py reference [--model PATH] [--pairs 100]
    python benchmarks/hints.py latency [--model PATH] [--repeats 20]

``reference``: pairs of photos/val (photo i with photo i+1 as the reference); for each, the ab
histogram intersection (over the model's ab bins, 64x64 thumbnails) of the output with the
reference, without and with ``reference=``. ``latency``: the grey astronaut at 768x512, one new
point per call through ``Colorizer.colorize_photos`` (the photo decoded once, as the web page keeps
it), median and 90th percentile of the wall time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recolor import Colorizer  # noqa: E402
from recolor.ab_bins import bin_histogram, gamut_bin_centres  # noqa: E402
from recolor.color import rgb_to_lab_normalized  # noqa: E402
from recolor.hints import HintPoint, Hints  # noqa: E402
from recolor.imageio.photo import photo_from_pil  # noqa: E402

VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val"


def ab_histogram(image: Image.Image) -> torch.Tensor:
    rgb = torch.from_numpy(np.asarray(image.convert("RGB").resize((64, 64), Image.BILINEAR)).copy()).permute(2, 0, 1)[None].float() / 255
    counts = bin_histogram(rgb_to_lab_normalized(rgb)[1], gamut_bin_centres())
    return counts / counts.sum()


def intersection(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.minimum(a, b).sum())


def reference_pairs(colorizer: Colorizer, pairs: int) -> None:
    photos = sorted(p for p in VAL.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: pairs + 1]
    without, with_reference = [], []
    for photo, reference in zip(photos, photos[1:]):
        grey = Image.open(photo).convert("L")
        target = ab_histogram(Image.open(reference))
        without.append(intersection(ab_histogram(colorizer.colorize(grey)), target))
        with_reference.append(intersection(ab_histogram(colorizer.colorize(grey, reference=reference)), target))
    gain = np.array(with_reference) - np.array(without)
    print(f"{len(gain)} pairs of photos/val: histogram intersection with the reference {np.mean(without):.4f} without, "
          f"{np.mean(with_reference):.4f} with (+{gain.mean():.4f} ± {gain.std(ddof=1) / np.sqrt(len(gain)):.4f}; higher in {int((gain > 0).sum())} of {len(gain)})")


def latency(colorizer: Colorizer, repeats: int) -> None:
    from skimage import data

    grey = Image.fromarray(data.astronaut()).convert("L").resize((768, 512), Image.BICUBIC)
    decoded = photo_from_pil(grey)
    times = []
    for index in range(repeats + 3):
        hints = Hints(tuple(HintPoint(100 + 30 * i, 200, (40, 80, 200)) for i in range(index % 5 + 1)))
        started = time.perf_counter()
        colorizer.colorize_photos([decoded], [hints])
        if index >= 3:  # the first calls warm the allocator up
            times.append(time.perf_counter() - started)
    times.sort()
    print(f"768x512, a changed set of points each call, {torch.get_num_threads()} torch thread(s): median {statistics.median(times) * 1000:.0f} ms, "
          f"90th percentile {times[int(0.9 * (len(times) - 1))] * 1000:.0f} ms over {repeats} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["reference", "latency"])
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    colorizer = Colorizer.load(args.model)
    if not colorizer.takes_hints:
        sys.exit(f"{args.model} takes no hints")
    if args.what == "reference":
        if not VAL.is_dir():
            sys.exit(f"{VAL} is not here: nothing to measure")
        reference_pairs(colorizer, args.pairs)
    else:
        latency(colorizer, args.repeats)


if __name__ == "__main__":
    main()
