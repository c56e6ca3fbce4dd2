"""What a run shows of itself: ``log.jsonl``, validation ab-L1 and the sample sheets.

* ``log.jsonl``             one JSON line per logged step and per validation
* ``samples/epoch_NNN.png`` grey input / prediction / ground truth for a fixed batch
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..color import lab_normalized_to_rgb
from ..data import make_loader
from ..imageio import save_image
from .batches import lab_batch
from .recipe import Recipe


def append_log(out_dir: Path, record: dict[str, Any]) -> None:
    with open(Path(out_dir) / "log.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


@torch.no_grad()
def validation_ab_l1(recipe: Recipe, data: Dataset | None, batch_size: int, workers: int, channels_last: bool) -> dict[str, float]:
    """ab-L1 on the held-out folder, in normalised units (paper 002's figure) and in Lab units."""
    if data is None:
        return {}
    loader = make_loader(data, batch_size, shuffle=False, workers=workers, drop_last=False)
    for network in recipe.networks.values():
        network.eval()
    total, count = 0.0, 0
    for batch in loader:
        lab = lab_batch(batch["rgb"], recipe.device, channels_last)
        predicted = recipe.predict_ab(lab["L"]).float()
        total += (predicted - lab["ab"]).abs().mean(dim=(1, 2, 3)).sum().item()
        count += predicted.shape[0]
    for network in recipe.networks.values():
        network.train()
    return {"val_ab_l1": total / count, "val_ab_l1_lab": 110.0 * total / count}


class SampleSheets:
    """One picture per epoch of a fixed batch: grey input, prediction and truth, in three rows."""

    def __init__(self, source: Dataset, count: int) -> None:
        self.source, self.count = source, min(count, len(source))
        self._photos: torch.Tensor | None = None  # the uint8 RGB batch, read once

    @torch.no_grad()
    def write(self, recipe: Recipe, path: Path) -> None:
        if self.count <= 0:
            return
        if self._photos is None:
            self._photos = torch.stack([self.source[i]["rgb"] for i in range(self.count)])
        lab = lab_batch(self._photos, recipe.device, False)
        generator = recipe.generator
        generator.eval()
        predicted = recipe.predict_ab(lab["L"]).float()
        generator.train()
        grey = lab_normalized_to_rgb(lab["L"], torch.zeros_like(predicted))
        colour = lab_normalized_to_rgb(lab["L"], predicted)
        rows = torch.cat([torch.cat(list(images), dim=2) for images in (grey, colour, lab["rgb"])], dim=1)
        picture = (rows.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        save_image(path, np.ascontiguousarray(picture))
