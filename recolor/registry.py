"""Model registry: each model name maps to its network builder and architecture config; training
recipes attach to it.

Like timm's ``@register_model``, a network file declares its models with :func:`register_model`
(name, builder, the architecture keys and their defaults), so inference needs nothing above the
networks. A training recipe file attaches its recipe class and training defaults (learning
rates, loss weights, ...) to those names with :func:`attach_recipe`; only ``recolor.training``
does that. A checkpoint stores the name and the full config, so the file alone rebuilds its network.

Adding a model = a network file in ``recolor/networks/`` ending with a ``register_model(...)``
call, and a recipe file in ``recolor/training/`` ending with ``attach_recipe(...)``; both packages
import all their modules, and the registry-wide test (tests/test_models.py) covers the new model
with no edit.
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

from .color import output_to_ab

Config = dict[str, Any]


@dataclass(frozen=True)
class TrainingSpec:
    """What a training recipe attaches to a model: its recipe class and the training keys' defaults."""

    recipe: type  # a recolor.training.recipe.Recipe subclass
    defaults: Config  # training hyper-parameters only (no key of the architecture)
    tiny: Config = field(default_factory=dict)  # training overrides for the registry-wide test (fast, offline)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str  # one line, shown by `recolor models`
    paper: str  # where it comes from, e.g. "002 sec. 4.2, App. A.1"
    build: Callable[[Config], nn.Module]  # builds the inference network from a config
    architecture: Config  # the keys ``build`` reads (and the input size), with their defaults
    output: str = "ab"  # what the generator predicts: "ab" (normalised) or "rgb" in [-1, 1]
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # architecture overrides that make a network small enough for the registry-wide test
    # (tests/test_models.py: build, one training step, save, load, colorize) in seconds on a CPU
    tiny: Config = field(default_factory=dict)

    # --- the training side, present once recolor.training has attached its recipe -------------
    @property
    def training(self) -> TrainingSpec:
        if self.name not in _TRAINING:
            raise LookupError(f"model '{self.name}' has no training recipe attached (import recolor.training first)")
        return _TRAINING[self.name]

    @property
    def recipe(self) -> type:
        return self.training.recipe

    @property
    def default_config(self) -> Config:
        """Architecture and training defaults together: what `recolor train` starts from."""
        return {**copy.deepcopy(self.architecture), **copy.deepcopy(self.training.defaults)}

    # --- configs ----------------------------------------------------------------------------
    def config(self, overrides: Config | None = None) -> Config:
        """The full default config (architecture + training) updated with overrides; an unknown
        key is an error (typo guard). Needs the recipe attached (``import recolor.training``).

        Each override must have its default's type (:func:`check_config_value`): a config may
        come from an untrusted model file, and ``ngf=100000`` would build a network of terabytes.
        """
        return _merged(self.name, self.default_config, overrides or {}, strict=True)

    def architecture_config(self, stored: Config | None = None) -> Config:
        """The architecture defaults updated with a stored config's architecture keys, checked the
        same way; its training keys are left out (inference needs none, and does not load the
        recipes that know them)."""
        return _merged(self.name, copy.deepcopy(self.architecture), stored or {}, strict=False)

    def predict_ab(self, network: Callable[..., torch.Tensor], lightness: torch.Tensor,
                   hint_inputs: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """Normalised float ab of ``network`` (this model's generator, or its compiled forward) for
        normalised L (B, 1, s, s), at the network's own output resolution (divcolor's 64x64 field is
        smaller than its input). ``hint_inputs``: the extra inputs of a hint-taking network (local
        and global hints, :mod:`recolor.hints`), passed after the lightness. Inference and training
        both predict through here; each adds its own device, precision and resizing around it."""
        return output_to_ab(network(lightness, *hint_inputs), self.output)

    def check_image_size(self, config: Config) -> None:
        """ValueError, before any work, when the network cannot take ``image_size`` x ``image_size``
        inputs; the message says which ``--set`` makes it fit. (The network is built on the meta
        device: shapes only, no memory.)"""
        multiple = int(getattr(self.meta_network(config), "multiple", 1))
        size = int(config["image_size"])
        if size >= multiple and size % multiple == 0:
            return
        hint = f"use a --size that is a multiple of {multiple}"
        depth = min(int(config.get("num_downs", 0)), (size & -size).bit_length() - 1)  # 2**depth divides size
        if depth >= 2:  # a U-Net of that depth fits
            hint = f"--set num_downs={depth} fits --size {size}, or {hint}"
        raise ValueError(f"--size {size}: '{self.name}' with its config needs a multiple of {multiple} ({hint})")

    def meta_network(self, config: Config) -> nn.Module:
        """The generator of a (checked) config built on the meta device: shapes only, no memory spent."""
        with torch.device("meta"):
            return self.build(config)


def _merged(name: str, defaults: Config, overrides: Config, strict: bool) -> Config:
    for key, value in overrides.items():
        if key not in defaults:
            if not strict:
                continue
            raise KeyError(f"model '{name}' has no config key '{key}' (known: {', '.join(sorted(defaults))})")
        check_config_value(key, value, defaults[key])
        defaults[key] = value
    return defaults


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
_TRAINING: dict[str, TrainingSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (called at import time by each network module)."""
    for key in (spec.name, *spec.aliases):
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"model name '{key}' registered twice")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def attach_recipe(name: str, recipe: type, training_defaults: Config, tiny: Config | None = None) -> None:
    """Give a registered model its training recipe and training defaults (called by recipe modules)."""
    spec = get_model_spec(name)
    clash = sorted(set(training_defaults) & set(spec.architecture))
    if clash:
        raise ValueError(f"model '{name}': training keys {clash} are architecture keys already")
    if spec.name in _TRAINING:
        raise ValueError(f"model '{name}' has a training recipe already")
    _TRAINING[spec.name] = TrainingSpec(recipe, copy.deepcopy(training_defaults), dict(tiny or {}))


def _ensure_loaded() -> None:
    importlib.import_module("recolor.networks")  # each network module registers its models


def get_model_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise KeyError(f"unknown model '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[key]


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]

