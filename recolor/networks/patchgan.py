"""The 70x70 PatchGAN discriminator (paper 002 appendix A.3, Isola et al.).

C64-C128-C256-C512 on the concatenated (L, ab) image, then a 1-channel convolution. As in the
pix2pix reference code the last C512 and the output convolution use stride 1, which is what gives
the 70x70 receptive field and the 30x30 output at 256 px listed in the paper's Figure 15 (its
16x16 line for the C512 layer contradicts its own 30x30 output; we follow the 70x70 design).

Differences from the paper, on purpose: the network returns logits and the sigmoid is folded
into the loss (BCE-with-logits is the same function, numerically safer under mixed precision);
the normalisation is an option so the WGAN-GP critic of paper 003 (instance norm) and the WGAN
critics (no sigmoid) reuse this file.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import init_normal, norm_layer


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        use_bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for i in range(1, n_layers + 1):
            previous, width = width, ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(previous, width, 4, stride, 1, bias=use_bias), norm_layer(norm, width), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat((lightness, ab), dim=1))
