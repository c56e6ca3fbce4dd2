"""The pix2pix U-Net generator (paper 002 appendix A.1, after Isola et al.; paper 001 section 4).

Encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 convolutions, stride 2, LeakyReLU 0.2, no
BatchNorm on the first layer nor on the innermost one), decoder
CD512-CD1024-CD1024-C1024-C1024-C512-C256-C128 counted with the concatenated skips, ReLU,
dropout 0.5 in the first three decoder layers, then a transposed convolution to 2 channels and
tanh. ``ngf`` (width) and ``num_downs`` (depth) are options: the paper's network is ngf=64,
num_downs=8 at 256x256 (54 M parameters); the input side must be a multiple of 2**num_downs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Config, ModelSpec, register_model
from .blocks import init_normal, norm_layer


class UNetGenerator(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        ngf: int = 64,
        num_downs: int = 8,
        max_multiplier: int = 8,
        dropout: float = 0.5,
        dropout_layers: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if num_downs < 2:
            raise ValueError("num_downs must be at least 2")
        widths = [ngf * min(2**i, max_multiplier) for i in range(num_downs)]
        # BatchNorm has its own shift, so the convolutions before it carry no bias (as pix2pix)
        use_bias = norm == "instance" or norm == "none"
        self.num_downs = num_downs
        self.down = nn.ModuleList()
        for i, width in enumerate(widths):
            layers: list[nn.Module] = []
            if i > 0:
                layers.append(nn.LeakyReLU(0.2, inplace=False))
            innermost = i == num_downs - 1
            source = in_channels if i == 0 else widths[i - 1]
            layers.append(nn.Conv2d(source, width, 4, 2, 1, bias=use_bias or innermost))
            if 0 < i < num_downs - 1:
                layers.append(norm_layer(norm, width))
            self.down.append(nn.Sequential(*layers))
        # up[0] is the innermost decoder layer; up[-1] produces the output
        self.up = nn.ModuleList()
        for j in range(num_downs):
            level = num_downs - 1 - j  # the encoder level this decoder layer mirrors
            source = widths[level] if j == 0 else widths[level] * 2
            layers = [nn.ReLU(inplace=False)]
            if level == 0:
                layers += [nn.ConvTranspose2d(source, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers += [nn.ConvTranspose2d(source, widths[level - 1], 4, 2, 1, bias=use_bias), norm_layer(norm, widths[level - 1])]
                if j < dropout_layers and dropout > 0:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        init_normal(self)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.num_downs

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All encoder activations, outermost first (the innermost one is the bottleneck)."""
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.up[0](skips[-1])
        for j, layer in enumerate(self.up[1:], start=1):
            x = layer(torch.cat((x, skips[-1 - j]), dim=1))
        return x

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(lightness))


# --- registration: pix2pix and the GAN family of papers 001/003 share this generator -------------

UNET_ARCHITECTURE: Config = {
    "image_size": 256,
    "ngf": 64,
    "num_downs": 8,
    "dropout": 0.5,
    "dropout_layers": 3,
    "norm": "batch",
}


def build_unet(config: Config) -> UNetGenerator:
    return UNetGenerator(in_channels=1, out_channels=2, **{key: config[key] for key in UNET_ARCHITECTURE if key != "image_size"})


for _name, _description, _paper in [
    ("pix2pix", "pix2pix U-Net generator + 70x70 PatchGAN, BCE cGAN + 100*L1", "002 sec. 4-5, App. A.1/A.3; 001 sec. 4"),
    ("pix2pix-lsgan", "pix2pix U-Net + PatchGAN with the least-squares GAN loss (a=0, b=1, c=1) + 100*L1", "001 sec. 3.2, 4"),
    ("pix2pix-ebgan", "pix2pix U-Net + auto-encoder EBGAN discriminator, margin loss + pull-away term + 100*L1", "001 sec. 3.3, 4"),
    ("pix2pix-wgan", "pix2pix U-Net + PatchGAN critic, WGAN with weight clipping (RMSProp 5e-5, 5 critic steps) + 100*L1",
     "001 sec. 3.4, 4"),
    ("wgan-gp", "U-Net + instance-norm PatchGAN critic, WGAN-GP (10, 5 critic steps); 60 epochs L1 then -D + 1*L1",
     "003 sec. IV.I.II, IV.II-III"),
]:
    register_model(ModelSpec(name=_name, description=_description, paper=_paper, build=build_unet, architecture=UNET_ARCHITECTURE,
                             tiny={"image_size": 32, "ngf": 8, "num_downs": 5}))
