"""The README's contact sheet of per-object diverse colorizations (issue 27): a few photos, k
samples each from `load_sampler(MODEL)`, one labelled row per photo (the grey input, then the
samples), stacked into one JPEG.

    python benchmarks/diverse_sheet.py [--model effnet-unet] [--k 5] [--seed 0] [--out docs/diverse-samples.jpg] PHOTO...

Default photos: three of ../shared/data/photos/val (rerun it after the shipped weights change).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recolor.contact_sheet import contact_sheet, grey_thumbnail  # noqa: E402
from recolor.diverse import load_sampler  # noqa: E402
from recolor.imageio.photo import decode_photo  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = ["bsds_21077.jpg", "bsds_101087.jpg", "bsds_86000.jpg"]  # cars, a dancer, tulips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--height", type=int, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "diverse-samples.jpg")
    args = parser.parse_args()
    photos = args.photos or [ROOT.parent / "shared" / "data" / "photos" / "val" / name for name in DEFAULT_PHOTOS]
    sampler = load_sampler(args.model, device="cpu")
    rows = []
    for path in photos:
        photo = decode_photo(path)
        result = sampler.sample_photos([photo], args.k, "topk", args.seed)[0]
        rows.append(contact_sheet(grey_thumbnail(photo.lightness, args.height), result.images, result.labels, args.height,
                                  title=f"{path.name}: {sampler.name}, seed {args.seed}"))
    sheet = Image.new("RGB", (max(row.width for row in rows), sum(row.height for row in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(sheet)).save(args.out, quality=88)
    print(args.out)


if __name__ == "__main__":
    main()
