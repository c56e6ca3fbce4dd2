"""Diverse colorization: k different, each plausible, colorizations of one photo (paper 004).

Four samplers, all behind :func:`load_sampler`:

* ``effnet-unet`` (the default, and any network with a classification head): samples that differ
  object by object, drawn region by region from the network's own per-pixel distribution over
  the ab bins (:mod:`recolor.region_sampling`); each sample comes with the point hints that made it.
* ``divcolor`` / ``divcolor-skip`` (paper 004 sections 3-4, 6.2): the MDN's mixture P(z | G)
  decoded by the colour-field VAE's decoder. ``topk`` decodes the k means with the largest mixture
  weights, in that order (the paper's procedure, k <= 8); ``random`` draws components by weight and
  z ~ N(mean, 0.1 I) around them.
* ``cvae`` (section 5, the CVAE baseline): paper 000's conditional VAE (``cvae-l2``; any model whose
  generator takes ``(L, z)`` works, e.g. ``cwgan-gp``) with z ~ N(0, I). DIFFERENCE FROM THE PAPER:
  paper 004's CVAE (section 6.3) reuses its own VAE encoder/decoder plus a grey-level encoder with
  skip connections and z multiplied into its 4x4 map; recolor already builds paper 000's CVAE
  (Tables 2-4: z as an 8x8 map concatenated with grey features, RGB output, L2 loss for
  ``cvae-l2`` as in paper 004 section 5), so that is the baseline here rather than a second CVAE.
* ``pix2pix-dropout`` (section 5, the cGAN baseline): the pix2pix generator with its dropout
  layers left on at test time (batch norm keeps its running statistics).

The two baselines draw 256 colorizations per photo and, for ``topk``, cluster them into k with
k-means (the paper's procedure); the cluster centres come out largest cluster first. Their
``random`` method returns k plain draws instead.

Every sampler returns normalised ab at its model's resolution; the fields are upsampled smoothly
and joined to the photo's own full-resolution lightness (:func:`recolor.inference.join_lightness`),
so each output has the input's size and lightness. One seed per photo: a photo's samples do not
depend on the other photos of its batch, and the same seed gives the same pictures (``sample_ab``
also takes a seed for each photo, as ``recolor evaluate`` gives them, so that its figures do not
depend on the batch size).
"""
from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .checkpoint import CheckpointError
from .color import output_to_ab
from .hints import HintPoint, colour_hex
from .imageio.api_input import PhotoLike, as_pil_image
from .imageio.photo import DecodedPhoto, photo_from_pil
from .options import OptionError
from .inference import ColorizeResult, Colorizer, check_finite, join_to_host
from .planning import output_paths  # noqa: F401  (the outputs' names are planned there; re-exported)
from .kmeans import kmeans
from .registry import get_model_spec

from . import DEFAULT_MODEL

METHODS = ("topk", "random")
DEFAULT_DRAWS = 256  # section 5: "We cluster 256 colorizations into 5 cluster centers"
SAMPLER_NAMES = (DEFAULT_MODEL, "divcolor", "divcolor-skip", "cvae", "pix2pix-dropout")


@dataclass
class DiverseSamples:
    """k normalised ab fields per photo (B, k, 2, h, w), a short label for each one and, for
    samplers that colour by hints, each sample's points (x, y as fractions of the width, height)."""

    ab: torch.Tensor
    labels: list[list[str]]
    hints: list[list[list[HintPoint]]] | None = None


@dataclass
class DiverseSample:
    """One colorization with the hints that produced it: ``Colorizer.colorize(photo, hints=hints)``
    gives it again (the hint-taking default), and a person can keep it and add points."""

    image: Image.Image
    label: str
    hints: list[tuple[float, float, str]]


def point_in_photo(point: HintPoint, size: tuple[int, int]) -> tuple[float, float, str]:
    """A sampler's point (x, y as fractions of the width, height) as ``(x, y, "#rrggbb")`` in the
    pixels of a photo of ``size`` (width, height)."""
    return point.x * size[0], point.y * size[1], colour_hex(point.rgb)


@dataclass
class DiverseResult:
    """One photo's k colorizations at its full resolution."""

    images: list[np.ndarray]  # k arrays (H, W, 3) uint8, or uint16 for a photo decoded at 16 bits or more
    labels: list[str]
    alpha: np.ndarray | None
    was_colour: bool
    hints: list[list[tuple[float, float, str]]] | None = None  # per sample: (x, y, "#rrggbb") in the photo's pixels


class DiverseSampler:
    """Base: wraps a loaded :class:`~recolor.inference.Colorizer` (device, precision, input size)."""

    kind = "base"

    def __init__(self, colorizer: Colorizer, draws: int = DEFAULT_DRAWS, chunk: int | None = None) -> None:
        self.colorizer = colorizer
        self.draws = int(draws)
        # forward passes per chunk when drawing many colorizations of one photo
        self.chunk = int(chunk or (256 if colorizer.device.type == "cuda" else 32))

    @property
    def name(self) -> str:
        return self.colorizer.name

    @property
    def device(self) -> torch.device:
        return self.colorizer.device

    @property
    def generator(self) -> nn.Module:
        return self.colorizer.generator

    def model_input(self, image: DecodedPhoto) -> torch.Tensor:
        return self.colorizer.input_from_lightness(image.lightness)

    def check(self, k: int, method: str) -> None:
        if method not in METHODS:
            raise OptionError("method", method, "unknown method (topk or random)")
        if k < 1:
            raise OptionError("k", k, "must be at least 1")

    def sample_ab(self, lightness: torch.Tensor, k: int, method: str = "topk", seed: int | Sequence[int] = 0) -> DiverseSamples:
        """k normalised ab fields for each normalised L (B, 1, s, s) at the model's input size;
        ``seed`` is every photo's, or one per photo."""
        raise NotImplementedError

    def _input(self, lightness: torch.Tensor) -> torch.Tensor:
        x = lightness.to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.colorizer.channels_last else x

    def sample_photos(self, images: Sequence[DecodedPhoto], k: int, method: str = "topk", seed: int = 0) -> list[DiverseResult]:
        """k full-resolution colorizations of each photo (batched through the network), 16 bits per
        channel for photos decoded at 16 bits or more (their lightness keeps its depth)."""
        if not images:
            return []
        samples = self.sample_ab(torch.stack([self.model_input(image) for image in images]), k, method, seed)
        check_finite(samples.ab)
        results = []
        for index, image in enumerate(images):
            pictures = [self._join(image, field) for field in samples.ab[index]]
            hints = None if samples.hints is None else [[point_in_photo(point, image.size) for point in points]
                                                        for points in samples.hints[index]]
            results.append(DiverseResult(pictures, samples.labels[index], image.alpha, image.was_colour, hints))
        return results

    def _join(self, image: DecodedPhoto, field: torch.Tensor) -> np.ndarray:
        depth = torch.uint8 if image.pixels.dtype == torch.uint8 else torch.uint16
        out, ready = join_to_host(image.lightness, field, self.device, dtype=depth)
        if ready is not None:
            ready.synchronize()
        return out.numpy()


    def sample(self, photo: PhotoLike | Sequence[PhotoLike], k: int = 5, method: str = "topk", seed: int = 0,
               with_hints: bool = False) -> list:
        """k colorizations of a photo (a path, a PIL image or a numpy array, as
        :meth:`recolor.inference.Colorizer.colorize` takes) as PIL images, or a list of such lists
        for a list of photos. ``with_hints``: :class:`DiverseSample` items instead, each image with
        the hints that produced it (``[(x, y, "#rrggbb"), ...]`` in the photo's pixels, what
        ``Colorizer.colorize(photo, hints=...)`` takes; empty for samplers that use none)."""
        self.check(k, method)
        photos = list(photo) if isinstance(photo, (list, tuple)) else [photo]
        decoded = [photo_from_pil(as_pil_image(item)) for item in photos]
        pictures = []
        for result in self.sample_photos(decoded, k, method, seed):
            images = [ColorizeResult(rgb, result.alpha, result.was_colour).to_pil() for rgb in result.images]
            if with_hints:
                images = [DiverseSample(image, label, list(result.hints[i]) if result.hints else [])
                          for i, (image, label) in enumerate(zip(images, result.labels))]
            pictures.append(images)
        return pictures if isinstance(photo, (list, tuple)) else pictures[0]


class MixtureSampler(DiverseSampler):
    """divcolor: top-k MDN means by mixture weight, or random draws from the mixture."""

    kind = "mdn"

    def check(self, k: int, method: str) -> None:
        super().check(k, method)
        components = self.generator.components
        if method == "topk" and k > components:
            raise OptionError("k", k, f"top-k gives at most {components} colorizations with {self.name} (one per mixture component); use {{method='random'}} for more")

    @torch.no_grad()
    def sample_ab(self, lightness: torch.Tensor, k: int, method: str = "topk", seed: int | Sequence[int] = 0) -> DiverseSamples:
        self.check(k, method)
        x = self._input(lightness)
        with self.colorizer._autocast():
            ab, weights = self.generator.sample(x, k, method, seeds=photo_seeds(seed, x.shape[0]))
        labels = [[f"p={float(w):.2f}" for w in row] for row in weights]
        return DiverseSamples(ab.float().clamp(-1, 1), labels)


class ClusteredSampler(DiverseSampler):
    """Baselines: ``draws`` colorizations per photo, k-means'd into k (``topk``) or k plain draws."""

    def draw(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` normalised ab fields (count, 2, h, w) for one photo's input x (1, 1, s, s)."""
        raise NotImplementedError

    def check(self, k: int, method: str) -> None:
        super().check(k, method)
        if method == "topk" and k > self.draws:
            raise OptionError("k", k, f"cannot cluster {self.draws} draws into {k} colorizations: raise {{draws={k}}} or more")

    @torch.no_grad()
    def sample_ab(self, lightness: torch.Tensor, k: int, method: str = "topk", seed: int | Sequence[int] = 0) -> DiverseSamples:
        self.check(k, method)
        x = self._input(lightness)
        seeds = photo_seeds(seed, x.shape[0])
        fields, labels = [], []
        for row in range(x.shape[0]):
            total = self.draws if method == "topk" else k
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seeds[row])
                drawn = torch.cat([self.draw(x[row : row + 1], min(self.chunk, total - start)) for start in range(0, total, self.chunk)])
            if method == "random":
                fields.append(drawn)
                labels.append([f"draw {i + 1}" for i in range(k)])
                continue
            centres, counts = kmeans(drawn.flatten(1), k, seed=seeds[row])
            fields.append(centres.reshape(k, *drawn.shape[1:]))
            labels.append([f"{int(n)}/{total} draws" for n in counts])
        return DiverseSamples(torch.stack(fields).clamp(-1, 1), labels)


def photo_seeds(seed: int | Sequence[int], photos: int) -> list[int]:
    """One seed per photo: ``seed`` for each of them, or the ``photos`` seeds given."""
    if isinstance(seed, numbers.Integral):
        return [int(seed)] * photos
    seeds = [int(value) for value in seed]
    if len(seeds) != photos:
        raise ValueError(f"{len(seeds)} seeds for {photos} photos")
    return seeds


@contextlib.contextmanager
def dropout_active(module: nn.Module):
    """Dropout layers in training mode (random masks), everything else (batch norm) as it was."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    previous = [m.training for m in layers]
    for layer in layers:
        layer.train()
    try:
        yield
    finally:
        for layer, mode in zip(layers, previous):
            layer.train(mode)


def has_dropout(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in module.modules())


class DropoutSampler(ClusteredSampler):
    """cGAN baseline: pix2pix with dropout on at test time ("the noise is provided by dropout")."""

    kind = "dropout"

    @property
    def name(self) -> str:
        return f"{self.colorizer.name}-dropout"

    def draw(self, x: torch.Tensor, count: int) -> torch.Tensor:
        with dropout_active(self.generator), self.colorizer._autocast():
            out = self.generator(x.expand(count, *x.shape[1:]))
        return output_to_ab(out, self.colorizer.spec.output)


class LatentSampler(ClusteredSampler):
    """CVAE baseline: the conditional decoder with z ~ N(0, I) (the encoder is not used at test time)."""

    kind = "latent"

    def draw(self, x: torch.Tensor, count: int) -> torch.Tensor:
        z = torch.randn(count, self.generator.latent_dim, device=self.device)
        with self.colorizer._autocast():
            out = self.generator(x.expand(count, *x.shape[1:]), z)
        return output_to_ab(out, self.colorizer.spec.output)


def resolve_model(model: str) -> tuple[str, bool]:
    """(what Colorizer.load gets, whether dropout sampling was asked for by name)."""
    if model == "pix2pix-dropout":
        return "pix2pix", True
    if model == "cvae":
        try:
            get_model_spec("cvae")
        except KeyError:
            return "cvae-l2", False  # paper 000's conditional VAE with the L2 loss of paper 004 sec. 5
    return model, False


def load_sampler(model: str | Path = DEFAULT_MODEL, device: str = "auto", precision: str = "auto",
                 draws: int = DEFAULT_DRAWS, chunk: int | None = None) -> DiverseSampler:
    """A diverse sampler from a model name (shipped weights) or a checkpoint path.

    The default model (and any network with a classification head) draws per-object colours from
    its own distribution (:mod:`recolor.region_sampling`); divcolor checkpoints sample their MDN;
    generators that take (L, z) sample z; generators with dropout (pix2pix) sample dropout masks.
    Raises CheckpointError / KeyError / ValueError.
    """
    target, wants_dropout = resolve_model(str(model))
    if draws < 1:
        raise OptionError("draws", draws, "must be at least 1")
    try:
        colorizer = Colorizer.load(target, engine="torch", device=device, precision=precision)
    except KeyError as exc:
        raise KeyError(f"{exc.args[0]}; diverse samplers: {', '.join(SAMPLER_NAMES)}") from None
    sampler = sampler_for(colorizer, wants_dropout, draws, chunk)
    if sampler is None:
        raise CheckpointError(f"model '{colorizer.name}' is deterministic (no latent code, no dropout): it cannot sample diverse colorizations")
    return sampler


def gives_distribution(generator: nn.Module) -> bool:
    """Whether a network predicts a distribution over ab bins per pixel (per-object sampling)."""
    return getattr(generator, "head", None) == "classification" and hasattr(generator, "quarter_output")


# what the samples of each kind of sampler differ by (`recolor models` says it)
SAMPLE_KINDS = {"regions": "per object", "mdn": "whole-photo tints", "latent": "near-identical", "dropout": "near-identical"}


def sampling_kind(generator: nn.Module, wants_dropout: bool = False, dropout_unasked: bool = True) -> str | None:
    """The :attr:`DiverseSampler.kind` a network supports, or None when it is deterministic.

    A classification network draws per-object colours from its distribution; divcolor samples its
    mixture; generators with a latent z sample z (unless dropout sampling was asked for by name,
    ``pix2pix-dropout``); generators with dropout sample dropout masks, when asked for or
    (``dropout_unasked``) as the last resort."""
    if gives_distribution(generator):
        return "regions"
    if hasattr(generator, "mixture") and hasattr(generator, "sample"):
        return "mdn"
    if not wants_dropout and hasattr(generator, "latent_dim") and hasattr(generator, "prior_z"):
        return "latent"
    if (wants_dropout or dropout_unasked) and has_dropout(generator):
        return "dropout"
    return None


def diverse_samples(spec) -> str | None:
    """What a registered model's samples (:func:`load_sampler`) differ by, :data:`SAMPLE_KINDS`
    (None: deterministic), from its network built on the meta device (shapes only, nothing loaded)."""
    with torch.device("meta"):
        network = spec.build(spec.architecture)
    kind = sampling_kind(network)
    return SAMPLE_KINDS[kind] if kind else None


def sampler_for(colorizer: Colorizer, wants_dropout: bool, draws: int = DEFAULT_DRAWS, chunk: int | None = None,
                dropout_unasked: bool = True) -> DiverseSampler | None:
    """The sampler a loaded model supports (:func:`sampling_kind`), or None when it is deterministic."""
    kind = sampling_kind(colorizer.generator, wants_dropout, dropout_unasked)
    if kind == "regions":
        from .region_sampling import RegionSampler  # it builds on DiverseSampler, defined here

        return RegionSampler(colorizer, draws, chunk)
    samplers = {"mdn": MixtureSampler, "latent": LatentSampler, "dropout": DropoutSampler}
    return samplers[kind](colorizer, draws, chunk) if kind else None
