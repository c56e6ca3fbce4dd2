"""Makes docs/hints-before-after.jpg, the README's picture of hints: scikit-image's astronaut,
coffee and cat in grey, colorized automatically, then with one point (drawn as a dot).

    python docs/hints_figure.py [--model effnet-unet] [--out docs/hints-before-after.jpg]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw
from skimage import data

from recolor import Colorizer

ROOT = Path(__file__).resolve().parents[1]
POINTS = {  # photo: one point (x, y in its pixels) and the colour a person says it was
    "astronaut": (160, 330, "#1f4fd0"),  # the suit
    "coffee": (300, 196, "#27ae60"),  # the coffee
    "chelsea": (149, 203, "#d9822b"),  # the cheek: a ginger cat
}
HEIGHT = 220


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "hints-before-after.jpg")
    args = parser.parse_args()
    colorizer = Colorizer.load(args.model)
    rows = []
    for name, (x, y, colour) in POINTS.items():
        grey = Image.fromarray(getattr(data, name)()).convert("L")
        pointed = colorizer.colorize(grey, hints=[(x, y, colour)])
        radius = max(3, grey.width // 90)
        ImageDraw.Draw(pointed).ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour, outline="white", width=2)
        scale = HEIGHT / grey.height
        rows.append([image.convert("RGB").resize((round(grey.width * scale), HEIGHT), Image.LANCZOS)
                     for image in (grey, colorizer.colorize(grey), pointed)])
    gap = 4
    sheet = Image.new("RGB", (max(sum(i.width for i in row) + gap * 2 for row in rows), len(rows) * (HEIGHT + gap) - gap), "white")
    for r, row in enumerate(rows):
        left = 0
        for image in row:
            sheet.paste(image, (left, r * (HEIGHT + gap)))
            left += image.width + gap
    sheet.save(args.out, quality=88)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
