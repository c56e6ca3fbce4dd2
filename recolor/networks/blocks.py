"""Pieces shared by several networks: normalisation choice and the N(0, 0.02) initialisation."""
from __future__ import annotations

from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """'batch' (pix2pix), 'instance' (WGAN-GP critics, paper 003) or 'none'."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation '{kind}' (batch, instance or none)")


def init_normal(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Weights ~ N(0, std) for convolutions and linear layers, N(1, std) for norm scales, zero biases.

    This is the initialisation of pix2pix (paper 002 section 5.2). Modules that carry pretrained
    weights must be re-loaded after calling this (see the ResNet-18 generator).
    """
    for layer in module.modules():
        if any(parameter.is_meta for parameter in layer.parameters(recurse=False)):
            # a shapes-only build (the checks before loading a file): nothing to initialise, and
            # random init on the meta device imports torch._dynamo, 1.5 s of every command's start
            continue
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d)) and layer.weight is not None:
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)
    return module
