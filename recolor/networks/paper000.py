"""The networks of paper 000 (generative models for colorization on CIFAR-10 at 64x64).

Every network here predicts RGB in [-1, 1] (the paper works in RGB space, section 3); at
inference :func:`recolor.color.output_to_ab` turns that RGB into ab and the photo's own
lightness is kept, so only the colours of the prediction are used.

* :class:`DilatedCNN` - the CNN baseline of Table 1: five encoding convolutions (three stride-2,
  two stride-1 with dilation 2) and three stride-2 transposed convolutions, 64 -> 8 -> 64.
* :class:`VAEEncoder` - the CVAE encoder of Table 2: three convolutions then two dense heads
  (mu and log-variance of a 512-dimensional posterior).
* :class:`ConditionalBranch` - the grey-image feature extractor of Table 3 (1 -> 16 -> 64 -> 256
  channels, 64 -> 8 pixels); with ``residual=True`` it has the shortcut over its first two
  convolutions that the CWGAN-GP generator adds (section 5.1.1, Figure 10).
* :class:`ConditionalGenerator` - the CVAE decoder of Table 4 together with the conditional
  branch: z (512) -> dense 4096 -> 64x8x8, concatenated with the grey features, then 3x3
  convolutions (the last two dilated) and three transposed convolutions to 3x64x64, tanh.
  The CVAE, AGE, IntroVAE (same architecture, section 6) and the CWGAN-GP generator (conditional
  and decoder "inside the Generator", section 5.1.1) are all this class.
* :class:`ResidualCritic` - the WGAN-GP critic of section 5.1.1 / Figure 11: it sees the grey
  image and a colour image, three stride-1 convolutions, two downsampling residual blocks, one
  stride-2 convolution, average pooling and a dense layer to one linear score; no normalisation.

Every block is "convolution, LeakyReLU(0.2), BatchNorm" in that order: the paper's text says
each convolution is "followed by LeakyReLU activation and Batch Normalization" and its tables list
the activation before the normalisation, so we keep that order although conv-BN-act is more usual.

Differences from the paper, deliberate (each also noted where it happens):

* Table 1's convolution row marks layers 1-2 as transposed, but its own stride/output-padding
  rows and the text ("the first three convolution layers having strides 2 ... The last three
  transposed convolution layers work as decoding layers") put the transposed layers at 6-8; we
  follow the text (the other reading cannot map 64x64 to 64x64).
* Table 4 lists stride 2 for decoder layers 5 and 6 (the dilated ones); with three stride-2
  transposed convolutions after them the output would be 16x16, not 64x64. The text says the
  decoder's latter part is made "similar to CNN", whose dilated layers have stride 1: stride 1.
* Table 3 ends the conditional branch with 256 channels while the text and Table 4 speak of an
  8x8x64 conditional output concatenated into 8x8x128. We keep Table 3's widths (the text's own
  "increase the channel at least by 4" gives 16, 64, 256), so the concatenation has 64 + 256 =
  320 channels; ``cond_channels=[16, 64, 64]`` gives the 128-channel reading instead.
* The residual shortcut of the CWGAN-GP generator and the widths of the critic are not given
  (Figures 10-11 are images): the shortcut is average pooling + 1x1 convolution (ResNet's
  projection shortcut); the critic is 128 channels wide like Gulrajani et al.'s CIFAR-10 critic,
  which the paper names as its model, with LeakyReLU(0.2) like the rest of the paper.
* Layer widths are configurable (lists in the model config) so tests can run narrow copies;
  the defaults are the paper's. PyTorch's default initialisation (the paper names none).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Config, ModelSpec, register_model

LEAK = 0.2
LATENT_MODES = ("mean", "sample")

# Table 1, layers 1-7 (layer 8 is the 3-channel RGB output)
CNN_CHANNELS = (16, 64, 256, 256, 256, 128, 64)
# Table 2 (convolutions; the dense heads have latent_dim outputs)
ENCODER_CHANNELS = (16, 64, 256)
# Table 3
CONDITIONAL_CHANNELS = (16, 64, 256)
# Table 4, layers 4-8 (layer 9 is the 3-channel RGB output)
DECODER_CHANNELS = (256, 256, 256, 128, 64)
LATENT_DIM = 512
ZMAP_CHANNELS = 64  # the dense layer's 4096 outputs reshaped to 64x8x8


def act_bn(channels: int, batch_norm: bool = True) -> list[nn.Module]:
    """LeakyReLU(0.2) then BatchNorm (the paper's order, see the module docstring)."""
    return [nn.LeakyReLU(LEAK)] + ([nn.BatchNorm2d(channels)] if batch_norm else [])


def _check_widths(name: str, widths: Sequence[int], count: int) -> list[int]:
    widths = [int(w) for w in widths]
    if len(widths) != count or min(widths) < 1:
        raise ValueError(f"{name} must list {count} positive layer widths, got {widths}")
    return widths


class DilatedCNN(nn.Module):
    """Table 1: grey L (B, 1, s, s) -> RGB (B, 3, s, s) in [-1, 1]; s a multiple of 8."""

    multiple = 8

    def __init__(self, channels: Sequence[int] = CNN_CHANNELS) -> None:
        super().__init__()
        c = _check_widths("cnn channels", channels, 7)
        self.layers = nn.Sequential(
            # encoding: three stride-2 convolutions, two dilated stride-1 ones (receptive field 79 px
            # by our count; the paper says 74)
            nn.Conv2d(1, c[0], 3, stride=2, padding=1), *act_bn(c[0]),
            nn.Conv2d(c[0], c[1], 3, stride=2, padding=1), *act_bn(c[1]),
            nn.Conv2d(c[1], c[2], 3, stride=2, padding=1), *act_bn(c[2]),
            nn.Conv2d(c[2], c[3], 3, stride=1, padding=2, dilation=2), *act_bn(c[3]),
            nn.Conv2d(c[3], c[4], 3, stride=1, padding=2, dilation=2), *act_bn(c[4]),
            # decoding: three stride-2 transposed convolutions back to full size
            nn.ConvTranspose2d(c[4], c[5], 3, stride=2, padding=1, output_padding=1), *act_bn(c[5]),
            nn.ConvTranspose2d(c[5], c[6], 3, stride=2, padding=1, output_padding=1), *act_bn(c[6]),
            nn.ConvTranspose2d(c[6], 3, 3, stride=2, padding=1, output_padding=1), nn.Tanh(),
        )

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        return self.layers(lightness)


def _downsampling_stack(in_channels: int, widths: Sequence[int], last_batch_norm: bool) -> nn.Sequential:
    """Tables 2-3: a 5x5 then 3x3 convolutions, all stride 2 and padding 1 (64 -> 31 -> 16 -> 8)."""
    layers: list[nn.Module] = []
    previous = in_channels
    for i, width in enumerate(widths):
        kernel = 5 if i == 0 else 3
        layers.append(nn.Conv2d(previous, width, kernel, stride=2, padding=1))
        layers += act_bn(width, batch_norm=last_batch_norm or i < len(widths) - 1)
        previous = width
    return nn.Sequential(*layers)


def feature_size(image_size: int) -> int:
    """Side of the 8x8 (at 64 px) map after the three stride-2 convolutions of Tables 2-3."""
    if image_size % 8 or image_size < 16:
        raise ValueError(f"paper 000's networks need an image size that is a multiple of 8 (>= 16), got {image_size}")
    return image_size // 8


LOGVAR_BOUND = 10.0


class VAEEncoder(nn.Module):
    """Table 2: colour image (B, 3, s, s) in [-1, 1] -> (mu, logvar), each (B, latent_dim).

    The paper's encoder is q(z | x, c) (eq. 6); it is fed the colour image alone because the grey
    condition c is a function of the colour image (its lightness), so it adds nothing to x.
    The second head is the log-variance (2 log sigma): the paper's "log sigma" up to a factor 2.
    """

    def __init__(self, image_size: int = 64, channels: Sequence[int] = ENCODER_CHANNELS, latent_dim: int = LATENT_DIM) -> None:
        super().__init__()
        c = _check_widths("encoder channels", channels, 3)
        self.features = _downsampling_stack(3, c, last_batch_norm=True)
        flat = c[-1] * feature_size(image_size) ** 2
        self.mu = nn.Linear(flat, latent_dim)
        self.logvar = nn.Linear(flat, latent_dim)

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(rgb).flatten(1)
        # DIFFERENCE FROM THE PAPER: the log-variance is softly bounded to (-LOGVAR_BOUND, LOGVAR_BOUND)
        # (identity near 0). Unbounded, the linear head over the 16k-wide features jumped to
        # log-variances of -48 and +11 at the paper's Adam lr 1e-3 (KL of 10^4-10^5 per image, then
        # NaN); sigma in [e^-5, e^5] is far wider than any posterior a trained CVAE uses.
        logvar = LOGVAR_BOUND * torch.tanh(self.logvar(h) / LOGVAR_BOUND)
        return self.mu(h), logvar


class ConditionalBranch(nn.Module):
    """Table 3: grey L (B, 1, s, s) -> features (B, 256, s/8, s/8); no BatchNorm on the last layer.

    ``residual=True`` (the CWGAN-GP generator, section 5.1.1) adds a shortcut around the first
    two convolutions: average pooling by 4 then a 1x1 convolution to their width.
    """

    def __init__(self, channels: Sequence[int] = CONDITIONAL_CHANNELS, residual: bool = False) -> None:
        super().__init__()
        c = _check_widths("conditional channels", channels, 3)
        stack = _downsampling_stack(1, c, last_batch_norm=False)
        self.first_two = stack[:6]  # conv, act, bn, conv, act, bn
        self.last = stack[6:]
        self.shortcut = nn.Sequential(nn.AvgPool2d(4), nn.Conv2d(1, c[1], 1)) if residual else None

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        h = self.first_two(lightness)
        if self.shortcut is not None:
            h = h + self.shortcut(lightness)
        return self.last(h)


class ConditionalGenerator(nn.Module):
    """Conditional branch (Table 3) + decoder (Table 4): (L, z) -> RGB (B, 3, s, s) in [-1, 1].

    ``forward(L)`` without z is what inference runs: z is the prior's mean (``inference_z="mean"``,
    deterministic) or a fresh N(0, I) sample per image (``"sample"``); see the recipes for which
    model uses which.
    """

    multiple = 8

    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = LATENT_DIM,
        cond_channels: Sequence[int] = CONDITIONAL_CHANNELS,
        zmap_channels: int = ZMAP_CHANNELS,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        residual_condition: bool = False,
        inference_z: str = "mean",
    ) -> None:
        super().__init__()
        if inference_z not in LATENT_MODES:
            raise ValueError(f"inference_z must be one of {LATENT_MODES}, got '{inference_z}'")
        d = _check_widths("decoder channels", decoder_channels, 5)
        self.latent_dim, self.zmap_channels, self.inference_z = latent_dim, zmap_channels, inference_z
        self.map_side = feature_size(image_size)
        self.conditional = ConditionalBranch(cond_channels, residual=residual_condition)
        # Table 4 layers 2-3: dense 512 -> 4096, LeakyReLU (no BatchNorm), reshape to 64x8x8
        self.dense = nn.Sequential(nn.Linear(latent_dim, zmap_channels * self.map_side**2), nn.LeakyReLU(LEAK))
        joined = zmap_channels + int(cond_channels[-1])
        self.decoder = nn.Sequential(
            nn.Conv2d(joined, d[0], 3, stride=1, padding=1), *act_bn(d[0]),
            # Table 4 says stride 2 for these two; stride 1 keeps 8x8 so the output is 64x64
            nn.Conv2d(d[0], d[1], 3, stride=1, padding=2, dilation=2), *act_bn(d[1]),
            nn.Conv2d(d[1], d[2], 3, stride=1, padding=2, dilation=2), *act_bn(d[2]),
            nn.ConvTranspose2d(d[2], d[3], 3, stride=2, padding=1, output_padding=1), *act_bn(d[3]),
            nn.ConvTranspose2d(d[3], d[4], 3, stride=2, padding=1, output_padding=1), *act_bn(d[4]),
            nn.ConvTranspose2d(d[4], 3, 3, stride=2, padding=1, output_padding=1), nn.Tanh(),
        )

    def prior_z(self, batch: int, device: torch.device, mode: str | None = None) -> torch.Tensor:
        mode = mode or self.inference_z
        if mode == "mean":
            return torch.zeros(batch, self.latent_dim, device=device)
        return torch.randn(batch, self.latent_dim, device=device)

    def forward(self, lightness: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        features = self.conditional(lightness)
        if z is None:
            z = self.prior_z(lightness.shape[0], lightness.device)
        zmap = self.dense(z)
        zmap = zmap.view(z.shape[0], self.zmap_channels, self.map_side, self.map_side)
        if zmap.shape[-2:] != features.shape[-2:]:
            # only at inference at another size than trained (`--size`): stretch the z map
            zmap = F.interpolate(zmap, size=features.shape[-2:], mode="bilinear", align_corners=False)
        return self.decoder(torch.cat((zmap.to(features.dtype), features), dim=1))


class CriticResidualBlock(nn.Module):
    """Gulrajani et al.'s downsampling residual block without normalisation: halves the side."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(LEAK),
            nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(in_channels, out_channels, 1))
        self.out = nn.LeakyReLU(LEAK)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.main(x) + self.shortcut(x))


class ResidualCritic(nn.Module):
    """Section 5.1.1 / Figure 11: (grey L (B,1,s,s), RGB (B,3,s,s)) -> one linear score per image.

    No normalisation at all (BatchNorm "correlates between samples", and the gradient penalty is
    per sample); average pooling, not max pooling, before the dense layer.
    """

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.stem = nn.Sequential(  # three stride-1 convolutions: receptive field without downsampling
            nn.Conv2d(4, width, 3, padding=1), nn.LeakyReLU(LEAK),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(LEAK),
            nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(LEAK),
        )
        self.blocks = nn.Sequential(CriticResidualBlock(width, width), CriticResidualBlock(width, width))
        self.down = nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(LEAK))
        self.score = nn.Linear(width, 1)

    def forward(self, lightness: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        h = self.down(self.blocks(self.stem(torch.cat((lightness, rgb.to(lightness.dtype)), dim=1))))
        return self.score(h.mean(dim=(2, 3))).squeeze(1)


# --- registration: the builders (what `spec.build` returns: the inference generator) ------------

def check_latent_mode(config: Config) -> None:
    if config["inference_z"] not in LATENT_MODES:
        raise ValueError(f"inference_z must be one of {', '.join(LATENT_MODES)}, got '{config['inference_z']}'")


def build_cnn(config: Config) -> DilatedCNN:
    return DilatedCNN(config["channels"])


def build_conditional_generator(config: Config, residual: bool) -> ConditionalGenerator:
    check_latent_mode(config)
    return ConditionalGenerator(
        image_size=config["image_size"],
        latent_dim=config["latent_dim"],
        cond_channels=config["cond_channels"],
        zmap_channels=config["zmap_channels"],
        decoder_channels=config["decoder_channels"],
        residual_condition=residual,
        inference_z=config["inference_z"],
    )


def build_vae_generator(config: Config) -> ConditionalGenerator:
    """Conditional branch + decoder of the CVAE (Tables 3-4); also AGE's and IntroVAE's."""
    return build_conditional_generator(config, residual=False)


def build_wgan_generator(config: Config) -> ConditionalGenerator:
    """The CWGAN-GP generator: the same with the residual shortcut in the grey branch (sec. 5.1.1)."""
    return build_conditional_generator(config, residual=True)


CNN_ARCHITECTURE: Config = {"image_size": 64, "channels": list(CNN_CHANNELS)}
LATENT_ARCHITECTURE: Config = {
    "image_size": 64,
    "latent_dim": LATENT_DIM,
    "cond_channels": list(CONDITIONAL_CHANNELS),
    "zmap_channels": ZMAP_CHANNELS,
    "decoder_channels": list(DECODER_CHANNELS),
    "inference_z": "mean",
}
WGAN_ARCHITECTURE: Config = {**LATENT_ARCHITECTURE, "inference_z": "sample"}

_TINY_LATENT: Config = {"cond_channels": [4, 8, 16], "zmap_channels": 4, "decoder_channels": [8, 8, 8, 8, 8], "latent_dim": 16}
PAPER000_TINY = {build_cnn: {"channels": [4, 8, 16, 16, 16, 8, 4]}, build_vae_generator: _TINY_LATENT, build_wgan_generator: _TINY_LATENT}

for _name, _description, _paper, _build, _architecture in [
    ("cnn-l1", "dilated CNN (Table 1) regressing RGB with an L1 loss, 64 px", "000 sec. 3, Table 1", build_cnn, CNN_ARCHITECTURE),
    ("cnn-l2", "dilated CNN (Table 1) regressing RGB with an L2 loss, 64 px", "000 sec. 3, Table 1", build_cnn, CNN_ARCHITECTURE),
    ("cvae-l1", "conditional VAE (Tables 2-4), KL + L1, decodes z = 0 at inference, 64 px", "000 sec. 4, Tables 2-4",
     build_vae_generator, LATENT_ARCHITECTURE),
    ("cvae-l2", "conditional VAE (Tables 2-4), KL + L2, decodes z = 0 at inference, 64 px", "000 sec. 4, Tables 2-4",
     build_vae_generator, LATENT_ARCHITECTURE),
    ("cwgan-gp", "conditional WGAN-GP, residual critic fed the grey image, GP 10, samples z, 64 px", "000 sec. 5.1.1",
     build_wgan_generator, WGAN_ARCHITECTURE),
    ("cwgan-gp-l1", "conditional WGAN-GP + L1 reconstruction, critic:generator 1:1, samples z, 64 px", "000 sec. 5.1.2",
     build_wgan_generator, WGAN_ARCHITECTURE),
    ("age", "Adversarial Generative Encoder (Algorithm 1) on the CVAE networks, decodes z = 0, 64 px", "000 sec. 6.1, Alg. 1",
     build_vae_generator, LATENT_ARCHITECTURE),
    ("introvae", "Introspective VAE (Algorithm 2; alpha 0.5, beta 0.4, m 120) on the CVAE networks, 64 px", "000 sec. 6.2, Alg. 2",
     build_vae_generator, LATENT_ARCHITECTURE),
]:
    register_model(ModelSpec(name=_name, description=_description, paper=_paper, build=_build, architecture=_architecture,
                             tiny=PAPER000_TINY[_build], output="rgb", aliases=("ivae",) if _name == "introvae" else ()))
