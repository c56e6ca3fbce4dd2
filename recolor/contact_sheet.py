"""The contact sheet of `recolor sample-diverse`: the grey input and its k colorizations in a
labelled row (moved out of :mod:`recolor.diverse` unchanged)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from .color import lab_to_rgb


def grey_thumbnail(lightness: torch.Tensor, height: int) -> np.ndarray:
    """The photo as the model sees it (its lightness only), ``height`` pixels high, uint8 RGB."""
    full_height, full_width = lightness.shape[-2:]
    height = min(height, full_height)
    width = max(1, round(full_width * height / full_height))
    small = F.interpolate(lightness[None].float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
    lab = torch.cat((small, torch.zeros(2, height, width)), dim=0)
    return (lab_to_rgb(lab) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(grey: np.ndarray, results: Sequence[np.ndarray], labels: Sequence[str], height: int = 256,
                  title: str | None = None) -> Image.Image:
    """One row: the grey input then the k colorizations, each labelled underneath."""
    tiles = [Image.fromarray(grey)] + [Image.fromarray(result) for result in results]
    names = ["input"] + [f"{i}: {label}" if label else str(i) for i, label in enumerate(labels, start=1)]
    resized = []
    for tile in tiles:
        h = min(height, tile.height)
        resized.append(tile.resize((max(1, round(tile.width * h / tile.height)), h), Image.LANCZOS) if tile.height != h else tile)
    gap, text_height = 8, 22
    top = text_height if title else 0
    width = sum(t.width for t in resized) + gap * (len(resized) + 1)
    sheet = Image.new("RGB", (width, top + max(t.height for t in resized) + text_height + 2 * gap), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(14)
    if title:
        draw.text((gap, 4), title, fill="black", font=font)
    x = gap
    for tile, name in zip(resized, names):
        sheet.paste(tile, (x, top + gap))
        draw.text((x + 2, top + gap + tile.height + 4), name, fill="black", font=font)
        x += tile.width + gap
    return sheet
