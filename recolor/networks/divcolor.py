"""Diverse colorization with a colour-field VAE and a mixture density network (paper 004).

Deshpande et al. 2017 learn a low-dimensional embedding z of the 64x64 ab colour field with a
VAE (section 3, architecture section 6.1), then a mixture density network P(z | G) from
grey-level features G (section 4, architecture section 6.2). At test time the MDN's means,
ordered by mixture weight, or samples of the mixture, are decoded into several colour fields.

Networks here, with the paper's notation C_a(kernel, stride, channels), B = batch norm,
U(f) = bilinear up-sampling, F(n) = fully connected:

* :class:`ColourFieldEncoder`  64x64x2 -> C_ReLU(5,2,128) B C_ReLU(5,2,256) B C_ReLU(5,2,512) B
  C_ReLU(4,2,1024) B -> F(d) for the mean and F(d) for the log-variance (section 6.1).
* :class:`ColourFieldDecoder`  1x1xd -> U(4) C_ReLU(4,1,1024) B U(2) C_ReLU(5,1,512) B U(2)
  C_ReLU(5,1,256) B U(2) C_ReLU(5,1,128) B U(2) C_tanh(5,1,2) (section 6.1). With ``grey_skip``
  it is the "ours+skip" decoder of section 7: a :class:`GreyLevelEncoder` (section 6.3) whose
  4x4xd output is multiplied by the replicated z, and whose 8/16/32 px maps are concatenated
  into the decoder at the same resolution (skip connections as in pix2pix).
* :class:`MixtureDensityNetwork`  features -> C_ReLU(5,1,384) B C_ReLU(5,1,320) B C_ReLU(5,1,288) B
  C_ReLU(5,2,256) B C_ReLU(5,1,128) B F(4096) F(8d + 8) (section 6.2): 8 means and 8 softmaxed
  mixture weights; the variance is fixed (0.1, spherical).
* :class:`GreyFeatureEncoder`  the grey-level features G. DIFFERENCE FROM THE PAPER: the paper takes
  conv7 of Zhang et al.'s colorization network (28x28x512 for a 224 px input, i.e. 1/8 resolution,
  deep and dilated). recolor has no such network, so G is taken from the encoder of its own pix2pix
  U-Net (``networks/unet.py``, the layers ``UNetGenerator.encode`` runs), frozen: by default the
  activation of level 3 (1/16 resolution, 8 times ngf channels; 8x8x256 for a 128 px input to the
  shipped ngf=32 network) after the LeakyReLU the next U-Net layer would apply. It is shallower
  than conv7 (4 strided 4x4 convolutions, 46 px receptive field) and was trained by the cGAN +
  L1 objective rather than Zhang et al.'s classification loss. Its weights are copied from a
  pix2pix checkpoint once, at the start of training, and stored inside the divcolor checkpoint.
* :class:`DivColorNet`  what inference runs: grey features -> MDN -> decoder. Its ``forward``
  (the single colorization ``recolor colorize`` uses) decodes the mean of the heaviest component;
  :meth:`DivColorNet.sample` gives k colour fields (top-k means or random mixture samples).

Widths are options (``width`` = 128 and the MDN's channel list are the paper's); the shipped
weights use smaller ones because they are trained on CPU (see weights/README.md).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Config, ModelSpec, register_model
from .unet import UNET_ARCHITECTURE, UNetGenerator

FIELD_SIZE = 64  # the colour field the VAE embeds (paper section 6.1): 4 stride-2 convs down to 4x4


def _conv_relu_bn(source: int, target: int, kernel: int, stride: int) -> nn.Sequential:
    """C_ReLU(kernel, stride, target) -> B, in the paper's order (activation before batch norm)."""
    if stride > 1:
        conv: list[nn.Module] = [nn.Conv2d(source, target, kernel, stride, (kernel - 1) // 2)]
    else:  # "same" size; an even kernel pads one more after than before, as TensorFlow's SAME
        before = (kernel - 1) // 2
        conv = [nn.ZeroPad2d((before, kernel - 1 - before, before, kernel - 1 - before)), nn.Conv2d(source, target, kernel, 1, 0)]
    return nn.Sequential(*conv, nn.ReLU(inplace=True), nn.BatchNorm2d(target))


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def to_field_size(planes: torch.Tensor) -> torch.Tensor:
    """L or ab planes (B, C, s, s) at the colour field's 64x64 (antialiased bilinear)."""
    if planes.shape[-1] == FIELD_SIZE and planes.shape[-2] == FIELD_SIZE:
        return planes
    return F.interpolate(planes.float(), size=(FIELD_SIZE, FIELD_SIZE), mode="bilinear", antialias=True, align_corners=False)


class ColourFieldEncoder(nn.Module):
    """Q(z | C): a 64x64 ab field (plus L for the CVAE baseline) -> mean and log-variance of z."""

    def __init__(self, in_channels: int = 2, width: int = 128, latent_dim: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.features = nn.Sequential(
            _conv_relu_bn(in_channels, width, 5, 2),
            _conv_relu_bn(width, 2 * width, 5, 2),
            _conv_relu_bn(2 * width, 4 * width, 5, 2),
            _conv_relu_bn(4 * width, 8 * width, 4, 2),
        )
        # "our fully connected layers use dropout regularization" (section 6); the rate is the
        # released code's (keep probability 0.7), the paper gives none
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(8 * width * 4 * 4, 2 * latent_dim)

    def forward(self, field: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if field.shape[-1] != FIELD_SIZE or field.shape[-2] != FIELD_SIZE:
            raise ValueError(f"the colour-field encoder takes {FIELD_SIZE}x{FIELD_SIZE} fields, got {tuple(field.shape[-2:])}")
        out = self.head(self.dropout(self.features(field).flatten(1)))
        mean, log_variance = out.chunk(2, dim=1)
        return mean, log_variance


class GreyLevelEncoder(nn.Module):
    """Section 6.3: 64x64 L -> C_ReLU(5,2,128) B C_ReLU(5,2,256) B C_ReLU(5,2,512) B C_ReLU(4,2,d).

    Returns the maps at 32, 16, 8 and 4 px (the last is 4x4xd), for the skip connections.
    """

    def __init__(self, width: int = 128, latent_dim: int = 64) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            _conv_relu_bn(1, width, 5, 2),
            _conv_relu_bn(width, 2 * width, 5, 2),
            _conv_relu_bn(2 * width, 4 * width, 5, 2),
            nn.Sequential(nn.Conv2d(4 * width, latent_dim, 4, 2, 1), nn.ReLU(inplace=True)),
        ])

    def forward(self, lightness: torch.Tensor) -> list[torch.Tensor]:
        x = to_field_size(lightness)
        maps = []
        for block in self.blocks:
            x = block(x)
            maps.append(x)
        return maps


class ColourFieldDecoder(nn.Module):
    """f(z) -> 64x64 ab in [-1, 1]; with ``grey_skip``, f(z, G) of the ours+skip variant."""

    def __init__(self, width: int = 128, latent_dim: int = 64, grey_skip: bool = False) -> None:
        super().__init__()
        self.grey_skip = grey_skip
        self.grey_encoder = GreyLevelEncoder(width, latent_dim) if grey_skip else None
        skip = (4 * width, 2 * width, width) if grey_skip else (0, 0, 0)
        self.start = _conv_relu_bn(latent_dim, 8 * width, 4, 1)
        self.blocks = nn.ModuleList([
            _conv_relu_bn(8 * width + skip[0], 4 * width, 5, 1),  # at 8x8
            _conv_relu_bn(4 * width + skip[1], 2 * width, 5, 1),  # at 16x16
            _conv_relu_bn(2 * width + skip[2], width, 5, 1),  # at 32x32
        ])
        self.out = nn.Conv2d(width, 2, 5, 1, 2)

    def forward(self, z: torch.Tensor, lightness: torch.Tensor | None = None) -> torch.Tensor:
        """z (N, d) -> ab (N, 2, 64, 64); ``lightness`` (N, 1, s, s) is needed with grey_skip."""
        x = z[:, :, None, None]
        if self.grey_encoder is None:
            x = self.start(_upsample(x, 4))  # U(4): 1x1 -> 4x4
            skips: Sequence[torch.Tensor | None] = (None, None, None)
        else:
            if lightness is None:
                raise ValueError("the ours+skip decoder needs the grey-level image")
            g32, g16, g8, g4 = self.grey_encoder(lightness)
            x = self.start(x * g4)  # section 6.3: z replicated 4x4 and multiplied with the grey encoding
            skips = (g8, g16, g32)
        for block, skip in zip(self.blocks, skips):
            x = _upsample(x, 2)
            if skip is not None:
                x = torch.cat((x, skip), dim=1)
            x = block(x)
        return torch.tanh(self.out(_upsample(x, 2)))


class MixtureDensityNetwork(nn.Module):
    """Section 6.2: grey-level features -> M means (M, d) and log mixture weights (M,)."""

    def __init__(self, in_channels: int, in_size: int, latent_dim: int = 64, components: int = 8,
                 channels: Sequence[int] = (384, 320, 288, 256, 128), hidden: int = 4096, dropout: float = 0.25) -> None:
        super().__init__()
        if len(channels) != 5:
            raise ValueError("the MDN has five convolutions (section 6.2): give five channel counts")
        self.latent_dim, self.components = latent_dim, components
        strides = (1, 1, 1, 2, 1)
        layers, source = [], in_channels
        for width, stride in zip(channels, strides):
            layers.append(_conv_relu_bn(source, width, 5, stride))
            source = width
        self.convs = nn.Sequential(*layers)
        out_size = math.ceil(in_size / 2)
        # the paper writes FC(4096) -> FC(8d + 8) without an activation between; the released code
        # uses tanh there, and a linear stack would collapse into one layer, so tanh it is.
        # Dropout on both FC inputs: "our fully connected layers use dropout" (rate from the code).
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(source * out_size * out_size, hidden), nn.Tanh(),
            nn.Dropout(dropout), nn.Linear(hidden, components * latent_dim + components),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.convs(features)).float()
        means = out[:, : self.components * self.latent_dim].reshape(-1, self.components, self.latent_dim)
        log_weights = torch.log_softmax(out[:, self.components * self.latent_dim :], dim=1)
        return means, log_weights


class GreyFeatureEncoder(nn.Module):
    """Frozen grey-level features from the first ``level + 1`` encoder layers of a pix2pix U-Net.

    The layers are built by :class:`~recolor.networks.unet.UNetGenerator` itself (so the weights of
    any pix2pix checkpoint with the same ``ngf``/``norm`` load by name, ``down.<i>.*``) and run as
    ``UNetGenerator.encode`` runs them; see the module docstring for how this differs from the
    paper's conv7 features. Always in eval mode (its batch-norm statistics are the pix2pix ones).
    """

    def __init__(self, ngf: int = 64, norm: str = "batch", level: int = 3) -> None:
        super().__init__()
        unet = UNetGenerator(in_channels=1, out_channels=2, ngf=ngf, num_downs=level + 2, norm=norm, dropout=0.0)
        self.down = nn.ModuleList(list(unet.down)[: level + 1])
        self.level = level
        self.out_channels = ngf * min(2**level, 8)
        self.requires_grad_(False)
        self.eval()

    @property
    def stride(self) -> int:
        return 2 ** (self.level + 1)

    def train(self, mode: bool = True) -> "GreyFeatureEncoder":
        return super().train(False)

    def load_unet_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy the matching encoder layers out of a pix2pix generator's state dict."""
        wanted = {key: value for key, value in state.items() if key.split(".")[0] == "down" and int(key.split(".")[1]) <= self.level}
        self.load_state_dict({key: value.float() for key, value in wanted.items()})

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        x = lightness
        for layer in self.down:
            x = layer(x)
        # the next U-Net layer starts with LeakyReLU(0.2): hand on the activation it would see
        return F.leaky_relu(x, 0.2)


class DivColorNet(nn.Module):
    """The inference network: grey-level features -> MDN -> colour-field decoder.

    ``forward(L_norm at image_size)`` -> normalised ab (B, 2, 64, 64): the decoded mean of the
    heaviest mixture component. :meth:`sample` gives k fields per photo.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.latent_dim = int(config["latent_dim"])
        self.variance = float(config["mdn_variance"])
        self.image_size = int(config["image_size"])
        self.features = GreyFeatureEncoder(int(config["feature_ngf"]), str(config["feature_norm"]), int(config["feature_level"]))
        if self.image_size % self.multiple:
            raise ValueError(f"image_size {self.image_size} must be a multiple of {self.multiple} for feature_level {config['feature_level']}")
        self.mdn = MixtureDensityNetwork(
            self.features.out_channels, self.image_size // self.features.stride, self.latent_dim, int(config["mdn_components"]),
            tuple(config["mdn_channels"]), int(config["mdn_hidden"]), float(config["mdn_dropout"]),
        )
        self.decoder = ColourFieldDecoder(int(config["width"]), self.latent_dim, grey_skip=bool(config["grey_skip"]))

    @property
    def multiple(self) -> int:
        """Input side must be a multiple of this (feature strides, then the MDN's stride 2)."""
        return self.features.stride * 2

    @property
    def components(self) -> int:
        return self.mdn.components

    def train(self, mode: bool = True) -> "DivColorNet":
        super().train(mode)
        self.features.eval()  # frozen: keep the pix2pix batch-norm statistics
        return self

    def mixture(self, lightness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means (B, M, d) and log mixture weights (B, M) of P(z | G) for normalised L (B, 1, s, s)."""
        with torch.no_grad():
            features = self.features(lightness)
        return self.mdn(features)

    def decode(self, z: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
        """z (B, k, d) -> ab (B, k, 2, 64, 64); each photo's L feeds the ours+skip decoder."""
        batch, k = z.shape[:2]
        grey = None
        if self.decoder.grey_skip:
            grey = to_field_size(lightness).repeat_interleave(k, dim=0)
        ab = self.decoder(z.reshape(batch * k, -1).float(), grey)
        return ab.reshape(batch, k, 2, FIELD_SIZE, FIELD_SIZE)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        means, log_weights = self.mixture(lightness)
        best = log_weights.argmax(dim=1)
        z = means[torch.arange(means.shape[0], device=means.device), best]
        return self.decode(z[:, None], lightness)[:, 0]

    @torch.no_grad()
    def sample(self, lightness: torch.Tensor, k: int, method: str = "topk", seeds: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """k colour fields per photo: ab (B, k, 2, 64, 64) and the weight of each one's component (B, k).

        ``topk`` (paper section 6.2): the means in descending order of mixture weight, k <= M.
        ``random``: components drawn from the mixture weights, then z ~ N(mean, 0.1 I); ``seeds``
        gives one seed per photo, so a photo's samples do not depend on the rest of its batch.
        """
        means, log_weights = self.mixture(lightness)
        weights = log_weights.exp()
        batch = means.shape[0]
        if method == "topk":
            if not 1 <= k <= self.components:
                raise ValueError(f"top-k sampling gives at most {self.components} colorizations (one per mixture component); use --method random for more")
            order = weights.argsort(dim=1, descending=True)[:, :k]
            z = torch.gather(means, 1, order[..., None].expand(-1, -1, means.shape[-1]))
            chosen = torch.gather(weights, 1, order)
        elif method == "random":
            if k < 1:
                raise ValueError("k must be at least 1")
            seeds = list(seeds) if seeds is not None else [0] * batch
            z_rows, chosen_rows = [], []
            for row in range(batch):
                generator = torch.Generator().manual_seed(int(seeds[row]))
                picks = torch.multinomial(weights[row].float().cpu(), k, replacement=True, generator=generator)
                noise = torch.randn(k, means.shape[-1], generator=generator) * math.sqrt(self.variance)
                z_rows.append(means[row, picks.to(means.device)] + noise.to(means.device))
                chosen_rows.append(weights[row, picks.to(means.device)])
            z, chosen = torch.stack(z_rows), torch.stack(chosen_rows)
        else:
            raise ValueError(f"unknown sampling method '{method}' (topk or random)")
        return self.decode(z, lightness), chosen


DIVCOLOR_TINY: Config = {"image_size": 64, "width": 8, "latent_dim": 8, "mdn_channels": [8, 8, 8, 8, 8], "mdn_hidden": 16}

DIVCOLOR_ARCHITECTURE: Config = {
    "image_size": 128,  # the grey-level features' input (the pix2pix resolution); the colour field is 64x64
    "latent_dim": 64,  # d (section 6.1)
    "width": 128,  # VAE channels 128-256-512-1024 (section 6.1)
    "grey_skip": False,  # True: "ours+skip" (section 7)
    "mdn_components": 8,
    "mdn_variance": 0.1,  # fixed spherical variance sigma^2 (section 6.2)
    "mdn_channels": [384, 320, 288, 256, 128],
    "mdn_hidden": 4096,
    "mdn_dropout": 0.25,
    "feature_level": 3,  # which pix2pix encoder activation is G
    "feature_ngf": None,  # filled in from the feature checkpoint when training starts
    "feature_norm": None,
}


def build_divcolor(config: Config) -> DivColorNet:
    """The inference network. Unresolved feature settings fall back to pix2pix's defaults."""
    filled = {"feature_ngf": UNET_ARCHITECTURE["ngf"], "feature_norm": UNET_ARCHITECTURE["norm"]}
    return DivColorNet({**config, **{key: value for key, value in filled.items() if config[key] is None}})


register_model(ModelSpec(
    name="divcolor",
    description="diverse colorization: 64x64 colour-field VAE (Mahalanobis + colourfulness + gradient losses) + 8-component MDN",
    paper="004 sec. 3, 4, 6.1-6.2",
    build=build_divcolor,
    architecture=DIVCOLOR_ARCHITECTURE,
    tiny=DIVCOLOR_TINY,
))
register_model(ModelSpec(
    name="divcolor-skip",
    description="divcolor 'ours+skip': the VAE decoder also gets a grey-level encoder through skip connections",
    paper="004 sec. 7, 6.3",
    build=build_divcolor,
    architecture={**DIVCOLOR_ARCHITECTURE, "grey_skip": True},
    tiny=DIVCOLOR_TINY,
))
