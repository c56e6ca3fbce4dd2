"""The rows ``recolor evaluate`` scores besides the baselines: loaded models (``--model``) and
folders of colorized images (``--predictions``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..imageio.photo import DecodedPhoto
from .photos import parse_prediction_option, prediction_index
from .settings import EvalSettings, EvaluationError


def diverse_sampler(colorizer, wants_dropout: bool):
    """Issue 4's sampler (:mod:`recolor.diverse`) for a loaded model, or None when it is deterministic:
    :func:`recolor.diverse.sampler_for`, with dropout sampling (the cGAN baseline of paper 004) only
    when the model was named ``pix2pix-dropout``, since it draws 256 colorizations per photo."""
    from ..diverse import sampler_for

    return sampler_for(colorizer, wants_dropout, dropout_unasked=False)


@dataclass
class Contender:
    """One row to score: a loaded model or a predictions folder."""

    name: str
    kind: str
    source: str
    colorizer: object | None = None
    sampler: object | None = None  # a recolor.diverse.DiverseSampler
    predictions: dict[Path, Path] | None = None
    hint_points: int = 0  # --hints N: points revealed from the truth of each photo (hint-taking models)


def load_contenders(settings: EvalSettings) -> list[Contender]:
    """The rows ``--model`` and ``--predictions`` ask for, named uniquely; raises EvaluationError."""
    from ..checkpoint import CheckpointError
    from ..diverse import resolve_model
    from ..inference import Colorizer

    contenders: list[Contender] = []
    for model in settings.models:
        target, wants_dropout = resolve_model(str(model))
        try:
            colorizer = Colorizer.load(target, engine="torch", device=settings.device, precision=settings.precision, chroma=settings.chroma)
        except (CheckpointError, KeyError, ValueError) as exc:
            raise EvaluationError(f"--model {model}: {exc.args[0] if exc.args else exc}") from None
        name = row_name(str(model), colorizer.name) + (f" (chroma {settings.chroma:g})" if settings.chroma != 1.0 else "")
        if any(settings.hints) and not colorizer.takes_hints:
            raise EvaluationError(f"--hints with --model {model}: it takes no hints (the default, effnet-unet, does)")
        for points in settings.hints or [0]:
            contenders.append(Contender(name + (f" +{points} hints" if settings.hints else ""), "model", str(model), colorizer=colorizer,
                                        sampler=diverse_sampler(colorizer, wants_dropout), hint_points=points))
    for option in settings.predictions:
        name, folder = parse_prediction_option(option)
        contenders.append(Contender(name, "predictions", str(folder), predictions=prediction_index(folder)))
    names = [c.name for c in contenders]
    for i, contender in enumerate(contenders):  # two checkpoints of one model in folders of one name
        if names.count(contender.name) > 1:
            contender.name = f"{contender.name} #{names[: i + 1].count(contender.name)}"
    if any(c.name in ("real", "grey") for c in contenders):
        raise EvaluationError("'real' and 'grey' name the baselines: give the predictions folder another name (NAME=DIR)")
    return contenders


def shipped_models() -> list[str]:
    """Names of the registered models whose weights ship with recolor (weights/<name>.safetensors)."""
    from ..checkpoint import ships_weights
    from ..registry import list_models

    return [spec.name for spec in list_models() if ships_weights(spec.name)]


def row_name(model: str, spec_name: str) -> str:
    """The table's name for a --model: the name as given, or for a checkpoint its file (or run folder) name."""
    path = Path(model)
    if not (path.suffix == ".safetensors" or path.exists()):
        return model
    label = path.parent.name if path.stem in ("model", "last", "best") and path.parent.name else path.stem
    return label if spec_name in label else f"{spec_name} ({label})"


REVEALED_PATCH = 6  # --hints N reveals 6x6 patches of the truth (Zhang 2017's evaluation)


def colorize_batch(colorizer, truth_u8: torch.Tensor, hint_points: int = 0, positions: list[int] | None = None, seed: int = 0) -> torch.Tensor:
    """uint8 RGB (B, 3, S, S) for the colour photos (B, 3, S, S) uint8, exactly as `recolor colorize`
    makes it from each photo's file (it keeps the photo's lightness and replaces its colour).

    ``hint_points`` > 0: that many points revealed from each photo's truth (:func:`revealed_points`),
    drawn from ``seed`` and the photo's position in the evaluation (``positions``), so a photo gets
    the same points whatever the batch size."""
    photos = [DecodedPhoto(path=None, pixels=rgb.permute(1, 2, 0).contiguous(), was_colour=True) for rgb in truth_u8]
    hints = None
    if hint_points:
        from ..color import rgb_to_lab_normalized
        from ..hints import Hints, revealed_points

        truth_ab = rgb_to_lab_normalized(truth_u8.float() / 255.0)[1]
        positions = positions if positions is not None else list(range(len(photos)))
        hints = [Hints(revealed_points(ab, hint_points, REVEALED_PATCH, colorizer.size, torch.Generator().manual_seed(seed * 1_000_003 + position)))
                 for ab, position in zip(truth_ab, positions)]
    outputs, ready = colorizer.colorize_photos(photos, hints)
    if ready is not None:
        ready.synchronize()
    return torch.stack([rgb.permute(2, 0, 1) for rgb in outputs])


def join_samples(lightness: torch.Tensor, samples_ab: torch.Tensor) -> torch.Tensor:
    """(B, k, 2, h, w) sampled ab + L (B, 1, S, S) -> uint8 RGB (B, k, 3, S, S), joined as colorize joins."""
    from ..inference import join_lightness

    return torch.stack([
        torch.stack([torch.from_numpy(join_lightness(l, ab)).permute(2, 0, 1) for ab in fields])
        for l, fields in zip(lightness, samples_ab.float().cpu())
    ])


def contender_outputs(contenders: list[Contender], truth_u8: torch.Tensor, predicted: dict[str, list[np.ndarray]],
                      positions: list[int] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """uint8 RGB (B, 3, S, S) of every contender for one batch: models colorize the photos, folders give their crops."""
    return {contender.name: colorize_batch(contender.colorizer, truth_u8, contender.hint_points, positions, seed) if contender.colorizer is not None
            else torch.from_numpy(np.stack(predicted[contender.name])) for contender in contenders}
