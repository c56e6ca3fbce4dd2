"""Inference: ``Colorizer`` turns greyscale photos into colour at their full resolution.

The network sees the photo at its own resolution (``image_size``, e.g. 256x256); the ab it
predicts is upsampled smoothly (bilinear) to the photo's size and joined to the photo's own
full-resolution lightness, so the output has exactly the input's size, lightness and sharpness.
The join runs in row strips so memory stays bounded for very large scans.

``colorize_photos`` takes :class:`~recolor.imageio.DecodedPhoto` (the photo's 8-bit pixels as
decoded) and does every per-pixel step on the model's device: lightness by table look-up, the
resize to the model's input, and the join. The batch pipeline of :mod:`recolor.pipeline`
(``recolor colorize``), ``Colorizer.colorize`` and ``recolor evaluate`` all go through it.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import DEFAULT_MODEL
from .checkpoint import Checkpoint, CheckpointError, find_weights, weights_dirs, weights_label  # noqa: F401 (re-exported)
from .pretrained import Pretrained, checked_model, load_pretrained, network_from_checkpoint  # noqa: F401 (checked_model re-exported)
from .color import (  # noqa: F401 (lightness_from_pixels, thumbnail_chroma re-exported)
    STRIP_PIXELS, denormalize_ab, lab_to_srgb_levels, lightness_from_pixels, normalize_l, output_to_ab, rgb_from_xyz_matrix,
    thumbnail_chroma,
)
from .imageio.api_input import PhotoLike, as_pil_image
from .imageio.decoding import ImageReadError
from .imageio.photo import DecodedPhoto, photo_from_pil
from .registry import ModelSpec
from .devices import resolve_device, resolve_precision
from .ab_bins import distribution_modes
from .colorizing import ColorizeResult, NonFiniteOutputError, PhotoColorizer, square_size  # noqa: F401 (re-exported)
from .cie import L_SCALE
from .hints import HintPoint, Hints, colour_hex, global_hint_length, local_hint_image, points_at_lightness, reference_global_hint



def input_size(config: dict, generator: torch.nn.Module, requested: int | None) -> int:
    """The model's square input side: ``requested`` (or the model's own) rounded to the network's
    multiple; a ValueError for a size the network cannot take at all."""
    return square_size(int(config.get("image_size", 256)), int(getattr(generator, "multiple", 1)), requested)


class Colorizer(PhotoColorizer):
    """A loaded colorization model. ``Colorizer.load()`` (the shipped default), ``Colorizer.load("pix2pix")`` or ``Colorizer.load("run/model.safetensors")``."""

    engine = "torch"

    def __init__(self, spec: ModelSpec, config: dict, generator: torch.nn.Module, device: str | torch.device = "auto",
                 size: int | None = None, precision: str = "auto", channels_last: bool = True, source: Path | None = None,
                 compile: bool = False, chroma: float = 1.0, weights_sha256: str | None = None) -> None:
        if not 0.0 <= chroma <= 2.0:
            raise ValueError(f"chroma {chroma}: must be between 0 (grey) and 2")
        self.spec, self.config, self.source = spec, config, source
        self.weights_sha256 = weights_sha256  # the weights file's checksum, recorded with what it made
        # scales the predicted ab: below 1 mutes the colours (what a model is unsure of it tends
        # to colour wrongly and vividly, see weights/README.md), above 1 strengthens them
        self.chroma = chroma
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        self.amp_dtype = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.generator = generator.to(self.device).float().eval()
        if channels_last:
            self.generator.to(memory_format=torch.channels_last)
        self.size = input_size(config, generator, size)
        # torch.compile is opt-in: its first batches pay seconds of compilation (see benchmarks/README.md)
        self._forward = torch.compile(self.generator, dynamic=True) if compile else self.generator

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, **kwargs) -> "Colorizer":
        return cls.from_pretrained(network_from_checkpoint(checkpoint), **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained: Pretrained, **kwargs) -> "Colorizer":
        return cls(pretrained.spec, pretrained.config, pretrained.network, source=pretrained.path,
                   weights_sha256=pretrained.checkpoint.sha256, **kwargs)

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, engine: str = "auto", **options) -> "PhotoColorizer":
        """A model by name (its shipped weights: effnet-unet, the default; pix2pix, resnet18, ...) or a ``.safetensors`` checkpoint.

        Options:
            engine: "auto" (ONNX Runtime on the CPU where the model has an ONNX export, torch
                otherwise), "onnx" (an :class:`~recolor.onnx_engine.OnnxColorizer`, the same
                colorize API without torch) or "torch" (this class: what diverse sampling,
                evaluation and ``suggest`` need). See :func:`recolor.engines.load_colorizer`.
            device: "auto" (CUDA when present, else the CPU), "cpu", "cuda", "cuda:1".
            size: the side of the square the network sees (default: the model's own; rounded to
                the network's multiple). It changes the colours a lot, not only the speed: see
                README.md, ``--size``.
            precision: "auto" (bf16 on CPUs with native bf16, else fp32; bf16/fp16 on CUDA), "fp32", "bf16", "fp16".
            chroma: scales the predicted colour, 0 (grey) to 2; 1 is the model's own.
            compile: torch.compile the network (pays off on long GPU runs).
            channels_last: the network's memory layout (default True, faster on CPUs and GPUs).

        Raises KeyError (unknown model name), CheckpointError (missing or unusable file) and
        ValueError (a bad option), each with a one-line message.
        """
        if engine != "torch":
            from .engines import load_colorizer

            return load_colorizer(model, engine=engine, **options)
        return cls.from_pretrained(load_pretrained(model), **options)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """What it colorizes with, as a run reports it: the model's name for its shipped weights, else the weights file's path."""
        return weights_label(self.spec.name, self.source)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def takes_hints(self) -> bool:
        """Whether the network takes a person's points and a reference (:mod:`recolor.hints`)."""
        return bool(getattr(self.generator, "takes_hints", False))

    def _network_input(self, lightness_small: torch.Tensor) -> torch.Tensor:
        x = lightness_small.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def predict_ab(self, lightness_small: torch.Tensor, hint_inputs: tuple[torch.Tensor, ...] = (),
                   features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Normalised ab (B, 2, s, s) for normalised L (B, 1, s, s) at the model's resolution, with
        the network's hint inputs (:meth:`hint_inputs`) when there are any. ``features``: the
        photo's :meth:`encoder_features`, so that only the decoder runs (the same numbers)."""
        x = self._network_input(lightness_small)
        extra = tuple(tensor.to(self.device) for tensor in hint_inputs)
        with self._autocast():
            if features is None:
                ab = self.spec.predict_ab(self._forward, x, extra).float()
            else:
                ab = output_to_ab(self.generator.to_ab(self.generator.decode(features, *extra), x.shape[-2:]), self.spec.output)
        check_finite(ab)
        return (ab * self.chroma).clamp(-1, 1)

    @torch.no_grad()
    def encoder_features(self, lightness_small: torch.Tensor) -> list[torch.Tensor] | None:
        """The encoder's features of normalised L (B, 1, s, s) for a network that splits into an
        encoder and a decoder (effnet-unet), None for the others. They do not depend on hints: a
        page that colours one photo again at each change of its hints computes them once and
        hands them to :meth:`predict_ab` and :meth:`suggest_for` (the encoder is about half of
        the network's time)."""
        if not all(hasattr(self.generator, name) for name in ("encode", "decode", "to_ab")):
            return None
        with self._autocast():
            return self.generator.encode(self._network_input(lightness_small))

    def hint_inputs(self, hints: Sequence[Hints | None], photo_sizes: Sequence[tuple[int, int]], network_input) -> tuple[torch.Tensor, ...]:
        """The network's hint inputs for a batch (local (B, 3, s, s), global (B, G)); () when no
        photo of the batch has hints (a hint-taking network then sees none). ``network_input``:
        the batch's normalised L (B, 1, s, s), torch or numpy: a point's colour is taken at the
        lightness there (:func:`recolor.hints.points_at_lightness`)."""
        if not any(hints):
            return ()
        locals_ = []
        for item, size, lightness in zip(hints, photo_sizes, network_input, strict=True):  # one of each per photo
            self.check_hints(item)
            if item is not None:
                item.check_inside(*size)
            points = points_at_lightness(item.points, size, (lightness + 1.0) * L_SCALE) if item else ()
            locals_.append(local_hint_image(points, size, (self.size, self.size)))
        local = torch.stack(locals_)
        references = [self.reference_hint(item.reference) if item and item.reference is not None else torch.zeros(global_hint_length())
                      for item in hints]
        return local, torch.stack(references)

    @staticmethod
    def reference_hint(reference: PhotoLike) -> torch.Tensor:
        """A reference photo's colours as the global hint; its own errors (a missing file) as ValueError.
        A reference given as a file is read once while it is unchanged (a folder or a film colorized
        with one ``--reference`` would otherwise decode it for every photo or batch of frames)."""
        key = _reference_key(reference)
        with _REFERENCE_HINTS_LOCK:  # the server's worker threads share it
            cached = _REFERENCE_HINTS.get(key) if key is not None else None
        if cached is not None:
            return cached
        try:
            image = as_pil_image(reference)
        except (OSError, ValueError, ImageReadError) as exc:  # a missing, unreadable or bad file
            raise ValueError(f"reference: {exc}") from None
        hint = reference_global_hint(torch.from_numpy(np.array(image.convert("RGB"))))
        if key is not None:
            with _REFERENCE_HINTS_LOCK:
                while len(_REFERENCE_HINTS) >= _REFERENCE_HINTS_KEPT:
                    _REFERENCE_HINTS.pop(next(iter(_REFERENCE_HINTS)))
                _REFERENCE_HINTS[key] = hint
        return hint

    def input_from_lightness(self, lightness: torch.Tensor) -> torch.Tensor:
        """Full-size L (1, H, W) in 0..100, on any device -> normalised (1, s, s) on the same device."""
        small = F.interpolate(lightness[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return normalize_l(small)[0]

    def photo_lightness(self, photo: DecodedPhoto) -> torch.Tensor:
        """The photo's full-size L (1, H, W) float32, computed on the model's device."""
        pixels = photo.pixels.to(self.device, non_blocking=True)
        return lightness_from_pixels(pixels) if pixels.dtype == torch.uint8 else pixels.permute(2, 0, 1).float()

    @torch.no_grad()
    def colorize_photos(self, photos: Sequence[DecodedPhoto], hints: Sequence[Hints | None] | None = None) -> tuple[list[torch.Tensor], Any]:
        """Colorize a batch of photos of any sizes: RGB (H, W, 3) host tensors, one per photo, uint8
        (uint16 for the photos decoded at 16 bits or more: their lightness keeps its depth).
        ``hints``: one :class:`~recolor.hints.Hints` (or None) per photo.

        Every per-pixel step runs on the model's device. On CUDA the results are copied back
        without blocking into pinned memory: the second value is an event to ``synchronize()``
        before reading them (None on other devices).
        """
        if not photos:
            return [], None
        lightness = [self.photo_lightness(photo) for photo in photos]
        small = torch.stack([self.input_from_lightness(plane) for plane in lightness])
        extra = self.hint_inputs(hints or [None] * len(photos), [(plane.shape[-1], plane.shape[-2]) for plane in lightness], small)
        ab_small = self.predict_ab(small, extra)
        outputs, ready = [], None
        for index, field_small in enumerate(ab_small):
            depth = torch.uint8 if photos[index].pixels.dtype == torch.uint8 else torch.uint16
            out, ready = join_to_host(lightness[index], field_small, self.device, dtype=depth)
            lightness[index] = None  # the full-size plane can go as soon as it is joined
            outputs.append(out)
        return outputs, ready

    def suggest(self, photo: PhotoLike, x: float, y: float, k: int = 5, hints: Sequence | None = None,
                reference: PhotoLike | None = None) -> list[tuple[str, float]]:
        """The ``k`` likeliest colours the model sees at pixel (x, y) of the photo, given any hints
        already placed: ``[("#rrggbb", probability), ...]``, likeliest first, the probabilities
        summing to 1 (the model's distribution over ab bins at that spot, decoded as colorize
        decodes it, clustered into its distinct modes as ideepcolor's suggestions are). Each
        colour carries the photo's lightness at that spot."""
        wanted = Hints.of(hints, reference)
        return self.suggest_for(photo_from_pil(as_pil_image(photo)), x, y, k, wanted)

    @torch.no_grad()
    def suggest_for(self, decoded: DecodedPhoto, x: float, y: float, k: int = 5, hints: Hints | None = None,
                    features: list[torch.Tensor] | None = None) -> list[tuple[str, float]]:
        """:meth:`suggest` for a decoded photo (``features``: its :meth:`encoder_features`, if kept)."""
        if not 1 <= k <= 32:
            raise ValueError(f"k {k}: must be 1 to 32")
        to_logits = getattr(self.generator, "quarter_output", None)
        if to_logits is None or getattr(self.generator, "head", None) != "classification":
            raise ValueError(f"model '{self.name}' predicts one colour per pixel, not a distribution: no suggestions")
        plane = self.photo_lightness(decoded)
        height, width = plane.shape[-2:]
        HintPoint(float(x), float(y), (0, 0, 0)).check_inside(width, height)
        small = self.input_from_lightness(plane)[None]
        extra = tuple(t.to(self.device) for t in self.hint_inputs([hints], [(width, height)], small))
        with self._autocast():
            if features is None:
                logits = to_logits(small, *extra).float()
            else:
                logits = self.generator.decode(features, *extra).float()
        logits = logits + self.generator.colour_boost * self.generator.bin_log_weights.view(1, -1, 1, 1)
        row = min(logits.shape[-2] - 1, int(y / height * logits.shape[-2]))
        column = min(logits.shape[-1] - 1, int(x / width * logits.shape[-1]))
        probabilities = torch.softmax(logits[0, :, row, column], dim=0).cpu()
        modes, masses = distribution_modes(probabilities, self.generator.bin_centres.cpu(), k)
        top, left = max(0, int(y) - 2), max(0, int(x) - 2)
        spot_lightness = float(plane[0, top:int(y) + 3, left:int(x) + 3].float().mean())
        colours = lab_to_srgb_levels(torch.full((1, len(modes)), spot_lightness), denormalize_ab(modes).T[:, None, :],
                                     rgb_from_xyz_matrix(torch.device("cpu")), 255.0)
        return [(colour_hex([int(v) for v in colours[0, i].round().tolist()]), float(mass)) for i, mass in enumerate(masses)]


def check_finite(ab: torch.Tensor) -> None:
    """Raise NonFiniteOutputError unless every predicted value is finite (NaN would join to black)."""
    if not bool(torch.isfinite(ab).all()):
        raise NonFiniteOutputError("the model produced NaN or infinite colour (corrupt weights or numeric overflow; try --precision fp32)")


def join_lightness(lightness: torch.Tensor, ab_small: torch.Tensor, device: torch.device | None = None) -> np.ndarray:
    """Full-size L (1, H, W) + small normalised ab (2, h, w) -> uint8 RGB (H, W, 3), in row strips.

    Never holds a full-size float ab or RGB plane: see :func:`join_to_host`.
    """
    device = torch.device(device) if device is not None else ab_small.device
    out, ready = join_to_host(lightness, ab_small, device)
    if ready is not None:
        ready.synchronize()
    return out.numpy()


def join_to_host(lightness: torch.Tensor, ab_small: torch.Tensor, device: torch.device, pin_memory: bool | None = None,
                 dtype: torch.dtype = torch.uint8) -> tuple[torch.Tensor, Any]:
    """The join on ``device``, written strip by strip into a host (H, W, 3) tensor of ``dtype``
    (uint8, or uint16: the float Lab->RGB conversion rounded to 16 bits, not 8-bit data scaled).

    Returns the host tensor and, on CUDA, an event that completes when the last (non-blocking,
    pinned) copy has landed; None elsewhere. ``lightness`` may live on the CPU or on the device.
    Upsampling is bilinear with half-pixel centres and border clamping (what
    ``F.interpolate(..., align_corners=False)`` does), separably: along the width once for the
    few rows of the small field, then along the height per strip.
    """
    height, width = lightness.shape[-2:]
    cuda = device.type == "cuda"
    pin_memory = cuda if pin_memory is None else pin_memory
    out = torch.empty((height, width, 3), dtype=dtype, pin_memory=pin_memory)
    peak = 65535.0 if dtype == torch.uint16 else 255.0
    # a channels_last model hands back interleaved ab: the passes below want plain rows
    ab = denormalize_ab(ab_small.to(device, non_blocking=True).float()).contiguous()
    rows_small = ab.shape[-2]
    ab_rows = F.interpolate(ab[None], size=(rows_small, width), mode="bilinear", align_corners=False)[0]  # (2, h, W)
    top_index, bottom_index, weight = _bilinear_taps(height, rows_small, device)
    matrix = rgb_from_xyz_matrix(device)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        ab_strip = torch.lerp(ab_rows[:, top_index[top:bottom]], ab_rows[:, bottom_index[top:bottom]], weight[top:bottom, None])
        strip = lab_to_srgb_levels(lightness[0, top:bottom].to(device, non_blocking=True).float(), ab_strip, matrix, peak).to(dtype)
        out[top:bottom].copy_(strip, non_blocking=cuda and pin_memory)
    ready = None
    if cuda:
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(device))
    return out, ready


def _bilinear_taps(size_out: int, size_in: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of align_corners=False bilinear resampling along one axis."""
    position = ((torch.arange(size_out, device=device, dtype=torch.float32) + 0.5) * (size_in / size_out) - 0.5).clamp_(0, size_in - 1)
    first = position.floor().long()
    return first, (first + 1).clamp_(max=size_in - 1), position - first


def iter_batches(items: Iterable, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


_REFERENCE_HINTS: dict[tuple, torch.Tensor] = {}  # reference file -> its global hint, oldest first
_REFERENCE_HINTS_KEPT = 16
_REFERENCE_HINTS_LOCK = threading.Lock()


def _reference_key(reference: object) -> tuple | None:
    """A reference file's identity while unchanged (path, size, modification time); None for a
    reference that is not a file name (a PIL image, an array: not cached)."""
    if not isinstance(reference, (str, os.PathLike)):
        return None
    try:
        status = os.stat(reference)
    except OSError:
        return None  # the read reports it
    return os.path.realpath(reference), status.st_size, status.st_mtime_ns
