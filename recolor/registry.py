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
import math
import re
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
        """The default config updated with overrides; unknown keys are an error (typo guard).

        Each override must have its default's type (:func:`check_config_value`): a config may
        come from an untrusted model file, and ``ngf=100000`` would build a network of terabytes.
        """
        merged = copy.deepcopy(self.default_config)
        for key, value in (overrides or {}).items():
            if key not in merged:
                known = ", ".join(sorted(merged))
                raise KeyError(f"model '{self.name}' has no config key '{key}' (known: {known})")
            check_config_value(key, value, self.default_config[key])
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

    def state_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        """The generator's tensor shapes for a (checked) config, from a build on the meta device: no memory spent."""
        with torch.device("meta"):
            network = self.build(config)
        return {key: tuple(value.shape) for key, value in network.state_dict().items()}


# Ranges of integer config values, by key name; every other integer must be >= 0. Sizes and
# widths bound the memory a network (or one photo's input) can take.
_INT_RANGES = (
    (re.compile(r"^image_size$"), 8, 2048),
    (re.compile(r"^batch_size$"), 1, 65536),
    (re.compile(r"(^|_)(ngf|ndf|widths?|channels|dim|hidden)$"), 1, 8192),
    (re.compile(r"(^|_)components$"), 1, 64),
    (re.compile(r"(^|_)(downs|layers|level)$"), 0, 32),
)
_MAX_INT = 10**9
_MAX_LIST = 64


def check_config_value(key: str, value: Any, default: Any) -> None:
    """Raise ValueError unless ``value`` has the type of ``default`` (numbers for numbers) and lies in its range.

    Lists take their default's element type; a None default takes any number, string or None.
    """
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)) or not 0 < len(value) <= _MAX_LIST:
            raise ValueError(f"config '{key}': expected a list of 1 to {_MAX_LIST} values, got {value!r}")
        for item in value:
            check_config_value(key, item, default[0] if default else item)
        return
    if default is None:
        if value is not None and not isinstance(value, (int, float, str)):
            raise ValueError(f"config '{key}': expected a number, a string or null, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_count(key, value)
        return
    if isinstance(default, (bool, str)):
        if type(value) is not type(default):
            raise ValueError(f"config '{key}': expected {type(default).__name__}, got {value!r}")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"config '{key}': expected a finite number, got {value!r}")
        if isinstance(default, int):
            _check_count(key, value)


def _check_count(key: str, value: int | float) -> None:
    """A value whose default is an integer: sizes, widths and depths must be integers in their range;
    other counts (epochs, steps) any number from 0 (``l1_pretrain_epochs`` may be 1.5)."""
    limits = next(((low, high) for pattern, low, high in _INT_RANGES if pattern.search(key)), None)
    if limits is not None and not isinstance(value, int):
        raise ValueError(f"config '{key}': expected an integer, got {value!r}")
    low, high = limits or (0, _MAX_INT)
    if not low <= value <= high:
        raise ValueError(f"config '{key}': {value} is out of range ({low} to {high})")


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
