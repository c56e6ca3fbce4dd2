"""Model registry: each model name maps to its generator builder, default config and training recipe.

Like timm's ``@register_model``: a model module declares itself with :func:`register_model`, and
everything else (the CLI, ``Colorizer``, checkpoints) looks models up by name. A checkpoint
stores the name and the full config, so ``build_generator(name, config)`` rebuilds it exactly.

Adding a model = a network file (``recolor/networks/``) and a recipe file
(``recolor/training/``) that ends with a ``register_model(...)`` call, plus one import line in
``recolor/training/__init__.py``.
"""
from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

Config = dict[str, Any]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str  # one line, shown by `recolor models`
    paper: str  # where it comes from, e.g. "002 sec. 4.2, App. A.1"
    build: Callable[[Config], nn.Module]  # builds the inference network from a full config
    default_config: Config  # architecture + training hyper-parameters
    recipe: type  # the training recipe class (a recolor.training.recipe.Recipe subclass)
    output: str = "ab"  # what the generator predicts: "ab" (normalised) or "rgb" in [-1, 1]
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def config(self, overrides: Config | None = None) -> Config:
        """The default config updated with overrides; unknown keys are an error (typo guard)."""
        merged = copy.deepcopy(self.default_config)
        for key, value in (overrides or {}).items():
            if key not in merged:
                known = ", ".join(sorted(merged))
                raise KeyError(f"model '{self.name}' has no config key '{key}' (known: {known})")
            merged[key] = value
        return merged

    def check_image_size(self, config: Config) -> None:
        """ValueError, before any work, when the network cannot take ``image_size`` x ``image_size``
        inputs; the message says which ``--set`` makes it fit. (The network is built on the meta
        device: shapes only, no memory.)"""
        with torch.device("meta"):
            multiple = int(getattr(self.build(config), "multiple", 1))
        size = int(config["image_size"])
        if size >= multiple and size % multiple == 0:
            return
        hint = f"use a --size that is a multiple of {multiple}"
        depth = min(int(config.get("num_downs", 0)), (size & -size).bit_length() - 1)  # 2**depth divides size
        if depth >= 2:  # a U-Net of that depth fits
            hint = f"--set num_downs={depth} fits --size {size}, or {hint}"
        raise ValueError(f"--size {size}: '{self.name}' with its config needs a multiple of {multiple} ({hint})")


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (called at import time by each recipe module)."""
    for key in (spec.name, *spec.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name '{key}' registered twice")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def _ensure_loaded() -> None:
    importlib.import_module("recolor.training")


def get_model_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise KeyError(f"unknown model '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[key]


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def build_generator(name: str, config: Config | None = None) -> nn.Module:
    spec = get_model_spec(name)
    return spec.build(spec.config(config))
