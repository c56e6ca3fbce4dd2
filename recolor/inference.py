"""Inference: ``Colorizer`` turns greyscale photos into colour at their full resolution.

The network sees the photo at its own resolution (``image_size``, e.g. 256x256); the ab it
predicts is upsampled smoothly (bilinear) to the photo's size and joined to the photo's own
full-resolution lightness, so the output has exactly the input's size, lightness and sharpness.
The join runs in row strips so memory stays bounded for very large scans.
"""
from __future__ import annotations

import contextlib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .color import denormalize_ab, lab_to_rgb, normalize_l
from .imageio import LoadedImage, load_image, loaded_from_pil
from .registry import ModelSpec, get_model_spec
from .training.loop import resolve_device, resolve_precision
from .training.recipe import to_ab

_JOIN_STRIP_PIXELS = 1 << 21


def weights_dirs() -> list[Path]:
    """Where shipped weights are looked for: $RECOLOR_WEIGHTS_DIR, the installed package, the source tree."""
    dirs = []
    if os.environ.get("RECOLOR_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["RECOLOR_WEIGHTS_DIR"]))
    with contextlib.suppress(ModuleNotFoundError, TypeError):
        dirs.append(Path(str(importlib.resources.files("recolor.weights"))))
    dirs.append(Path(__file__).resolve().parent.parent / "weights")
    return dirs


def find_weights(name_or_path: str | Path) -> Path:
    """A checkpoint path as given, or the shipped ``weights/<model>.safetensors`` for a model name."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or candidate.exists() or os.sep in str(name_or_path):
        if not candidate.is_file():
            raise CheckpointError(f"{candidate}: no such checkpoint file")
        return candidate
    spec = get_model_spec(str(name_or_path))  # KeyError for unknown names
    for folder in weights_dirs():
        path = folder / f"{spec.name}.safetensors"
        if path.is_file():
            return path
    raise CheckpointError(f"no shipped weights for model '{spec.name}': train them with `recolor train --model {spec.name}` and pass --model PATH")


def input_size(config: dict, generator: torch.nn.Module, requested: int | None) -> int:
    size = int(requested or config.get("image_size", 256))
    multiple = int(getattr(generator, "multiple", 1))
    if size % multiple:
        size = max(multiple, round(size / multiple) * multiple)
    return size


@dataclass
class ColorizeResult:
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None
    was_colour: bool

    def to_pil(self) -> Image.Image:
        image = Image.fromarray(self.rgb, mode="RGB")
        if self.alpha is not None:
            image.putalpha(Image.fromarray(self.alpha, mode="L"))
        return image


class Colorizer:
    """A loaded colorization model. ``Colorizer.load("pix2pix")`` or ``Colorizer.load("run/model.safetensors")``."""

    def __init__(self, spec: ModelSpec, config: dict, generator: torch.nn.Module, device: str | torch.device = "auto",
                 size: int | None = None, precision: str = "auto", channels_last: bool = True, source: Path | None = None) -> None:
        self.spec, self.config, self.source = spec, config, source
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        self.amp_dtype = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.generator = generator.to(self.device).float().eval()
        if channels_last:
            self.generator.to(memory_format=torch.channels_last)
        self.size = input_size(config, generator, size)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, **kwargs) -> "Colorizer":
        try:
            spec = get_model_spec(checkpoint.model)
        except KeyError as exc:
            raise CheckpointError(f"{checkpoint.path}: {exc.args[0]}") from None
        try:
            config = spec.config(checkpoint.config)
        except KeyError as exc:
            raise CheckpointError(f"{checkpoint.path}: metadata does not match the model ({exc.args[0]})") from None
        generator = spec.build(config)
        try:
            generator.load_state_dict({k: v.float() for k, v in checkpoint.generator_state().items()})
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise CheckpointError(f"{checkpoint.path}: weights do not fit model '{spec.name}' with its stored config ({first})") from None
        return cls(spec, config, generator, source=checkpoint.path, **kwargs)

    @classmethod
    def load(cls, model: str | Path = "pix2pix", **kwargs) -> "Colorizer":
        return cls.from_checkpoint(load_checkpoint(find_weights(model)), **kwargs)

    @property
    def name(self) -> str:
        return self.spec.name

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @torch.no_grad()
    def predict_ab(self, lightness_small: torch.Tensor) -> torch.Tensor:
        """Normalised ab (B, 2, s, s) for normalised L (B, 1, s, s) at the model's resolution."""
        x = lightness_small.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            return to_ab(self.generator(x), self.spec.output).float().clamp(-1, 1)

    def model_input(self, image: LoadedImage) -> torch.Tensor:
        """The photo's lightness resized (antialiased) to the model's square input, normalised."""
        small = F.interpolate(image.lightness[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return normalize_l(small)[0]

    def colorize_loaded(self, images: Sequence[LoadedImage]) -> list[ColorizeResult]:
        if not images:
            return []
        ab_small = self.predict_ab(torch.stack([self.model_input(image) for image in images]))
        return [ColorizeResult(join_lightness(image.lightness, ab, self.device), image.alpha, image.was_colour) for image, ab in zip(images, ab_small)]

    def colorize(self, image: Image.Image | str | Path) -> Image.Image:
        """Colorize one photo (a PIL image or a path); returns a PIL image of the same size."""
        loaded = loaded_from_pil(image) if isinstance(image, Image.Image) else load_image(image)
        return self.colorize_loaded([loaded])[0].to_pil()


def join_lightness(lightness: torch.Tensor, ab_small: torch.Tensor, device: torch.device | None = None) -> np.ndarray:
    """Full-size L (1, H, W) + small normalised ab (2, h, w) -> uint8 RGB (H, W, 3), in row strips.

    Bilinear upsampling with ``grid_sample`` on the rows of one strip at a time gives the same
    values as upsampling the whole plane (half-pixel centres, border clamping) without ever
    holding a full-size float ab plane.
    """
    device = device or ab_small.device
    height, width = lightness.shape[-2:]
    out = np.empty((height, width, 3), dtype=np.uint8)
    ab_small = ab_small.float().to(device)[None]
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    rows = max(1, _JOIN_STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        ys = (torch.arange(top, bottom, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        ab = F.grid_sample(ab_small, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        lab = torch.cat((lightness[:, top:bottom].to(device), denormalize_ab(ab)), dim=0)
        rgb = lab_to_rgb(lab).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
        out[top:bottom] = rgb.permute(1, 2, 0).cpu().numpy()
    return out


def iter_batches(items: Iterable, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
