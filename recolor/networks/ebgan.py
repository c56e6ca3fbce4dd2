"""The auto-encoder discriminator of EBGAN (paper 001 section 3.3, after Zhao et al. 2016).

The discriminator is an energy function: the mean squared error with which an auto-encoder
reconstructs its input (low for real images, high for generated ones). As in the EBGAN paper's
64x64 models the encoder is ``d_layers`` 4x4 stride-2 convolutions C64-C128-C256 (LeakyReLU 0.2,
BatchNorm except on the first) and the decoder mirrors it with transposed convolutions (ReLU,
BatchNorm) back to the input's channels, with a linear output. For colorization it is
conditional like the PatchGAN: it reads and reconstructs the (L, ab) image.

The encoder output is the representation the pull-away term works on (``forward`` returns it).
Input sides must be multiples of ``2 ** d_layers``.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import init_normal, norm_layer


class AutoencoderDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, d_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        widths = [ndf * min(2**i, 8) for i in range(d_layers)]
        use_bias = norm != "batch"
        encoder: list[nn.Module] = []
        for i, width in enumerate(widths):
            source = in_channels if i == 0 else widths[i - 1]
            encoder.append(nn.Conv2d(source, width, 4, 2, 1, bias=use_bias or i == 0))
            if i > 0:
                encoder.append(norm_layer(norm, width))
            encoder.append(nn.LeakyReLU(0.2, inplace=True))
        decoder: list[nn.Module] = []
        for i in reversed(range(d_layers)):
            target = in_channels if i == 0 else widths[i - 1]
            decoder.append(nn.ConvTranspose2d(widths[i], target, 4, 2, 1, bias=use_bias or i == 0))
            if i > 0:
                decoder += [norm_layer(norm, target), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)
        self.multiple = 2**d_layers
        init_normal(self)

    def forward(self, lightness: torch.Tensor, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input image, its reconstruction, the encoder's representation)."""
        image = torch.cat((lightness, ab), dim=1)
        code = self.encoder(image)
        return image, self.decoder(code), code
