"""The ResNet-18-encoder U-Net generator (paper 002 section 4.2, appendix A.2, Figures 12-13).

Encoder: torchvision's ResNet-18 without its average pooling and fully-connected layers (11.18 M
parameters, Figure 12). The L channel is replicated to three channels (eq. 12) because the encoder
was pre-trained on RGB. At 256x256 the encoder activations are

    conv1+bn+relu 64x128x128 | maxpool+layer1 64x64x64 | layer2 128x32x32 | layer3 256x16x16 | layer4 512x8x8

Decoder (Figure 13, 3.54 M parameters): ReLU -> 4x4 stride-2 transposed convolution -> BatchNorm,
each block reading the previous block's output concatenated with the mirrored encoder activation:

    512x8x8 -> 256x16x16 (+layer3) -> 128x32x32 (+layer2) -> 64x64x64 (+layer1) -> 64x128x128 (+conv1)
    -> ReLU -> transposed convolution to 2x256x256 -> tanh

so the widths entering each block are 512, 512, 256, 128, 128 (the paper's "C256-C512-C256-C128-C128"
lists the first block's output width, then the concatenated widths) and the total is 14.72 M
parameters (the paper's "15 million").

Differences from the paper, deliberate: Figure 13 lists no ReLU before the output transposed
convolution; the text says ReLUs are used "in all layers", and the pix2pix U-Net this decoder
mirrors has one, so we apply it. The encoder input is the normalised L replicated, without
ImageNet mean/std normalisation (the paper feeds eq. 12's I_3L directly).

Building this module never downloads anything: the encoder starts from torchvision's random
initialisation. The pre-trained weights are loaded by :func:`load_encoder_weights`, which the
training recipe calls once at the start of a fresh run; at inference every weight comes from the
checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoint import read_state_dict as read_foreign_state_dict
from ..registry import Config, ModelSpec, register_model
from .blocks import init_normal

ENCODER_WIDTHS = (64, 64, 128, 256, 512)  # conv1, layer1, layer2, layer3, layer4


class EncoderWeightsError(ValueError):
    """The encoder's pre-trained weights could not be obtained or do not fit ResNet-18."""


def resnet18_encoder() -> nn.Module:
    """torchvision's ResNet-18 (random init) with the average pooling and classifier removed."""
    from torchvision.models import resnet18  # here: torchvision takes seconds to import, and only this network needs it

    network = resnet18(weights=None)
    del network.avgpool, network.fc
    return network


class ResNetUNetGenerator(nn.Module):
    def __init__(self, out_channels: int = 2) -> None:
        super().__init__()
        self.encoder = resnet18_encoder()
        # (input width, output width) of each decoder block, innermost first
        blocks = [(512, 256), (256 + 256, 128), (128 + 128, 64), (64 + 64, 64)]
        self.decoder = nn.ModuleList(
            nn.Sequential(nn.ReLU(inplace=False), nn.ConvTranspose2d(source, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width))
            for source, width in blocks
        )
        self.output = nn.Sequential(nn.ReLU(inplace=False), nn.ConvTranspose2d(64 + 64, out_channels, 4, 2, 1), nn.Tanh())
        # paper 002 sec. 5.2: the decoder is N(0, 0.02); the encoder keeps its own (pre-trained) weights
        init_normal(self.decoder)
        init_normal(self.output)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (the encoder downsamples 32x)."""
        return 32

    def encode(self, lightness: torch.Tensor) -> list[torch.Tensor]:
        """Encoder activations, outermost first (conv1 at 1/2 ... layer4 at 1/32 resolution)."""
        e = self.encoder
        x = e.relu(e.bn1(e.conv1(lightness.repeat(1, 3, 1, 1))))  # eq. 12: L replicated to 3 channels
        skips = [x]
        x = e.layer1(e.maxpool(x))
        skips.append(x)
        for layer in (e.layer2, e.layer3, e.layer4):
            x = layer(x)
            skips.append(x)
        return skips

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        skips = self.encode(lightness)
        x = self.decoder[0](skips[-1])
        for block, skip in zip(self.decoder[1:], reversed(skips[1:-1])):
            x = block(torch.cat((x, skip), dim=1))
        return self.output(torch.cat((x, skips[0]), dim=1))


# --- pre-trained encoder weights -------------------------------------------------------------

# torchvision's ResNet18_Weights.IMAGENET1K_V1.url, written out so that importing this file (every
# inference does, to register the models) does not import torchvision (tests/test_gan_family.py checks it)
IMAGENET_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def download_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-18 weights (cached under $TORCH_HOME after the first download)."""
    try:
        return torch.hub.load_state_dict_from_url(IMAGENET_URL, map_location="cpu", progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch: all mean "no weights"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EncoderWeightsError(
            f"could not download the ImageNet ResNet-18 weights ({reason}). Without internet, fetch "
            f"{IMAGENET_URL} on another machine and pass it with --encoder-weights PATH "
            "(or --set encoder_weights=PATH; .pth or .safetensors), or use --encoder-weights none"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, or a .pth/.pt file read with weights_only=True
    (torchvision distributes ResNet-18 as a pickled .pth: weights_only refuses anything but tensors)."""
    return read_foreign_state_dict(path, EncoderWeightsError, "encoder weights", " (expected 'imagenet', 'none' or a .safetensors/.pth path)")


def load_encoder_weights(encoder: nn.Module, source: str | Path) -> str:
    """Load ``source`` into a :func:`resnet18_encoder`: "imagenet", "none" or a local state dict.

    Accepts a full torchvision ResNet-18 state dict (its ``fc.*`` entries are dropped), optionally
    with a ``module.`` or ``encoder.`` key prefix. Returns a short description of what was loaded.
    """
    source = str(source)
    if source.lower() == "none":
        return "random initialisation"
    state = download_imagenet_state_dict() if source.lower() == "imagenet" else read_state_dict(source)
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "encoder."):
            key = key.removeprefix(prefix)
        if not key.startswith("fc."):
            cleaned[key] = value
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(cleaned))
    unexpected = sorted(set(cleaned) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise EncoderWeightsError(f"{source}: not a ResNet-18 state dict ({detail})")
    for key, value in cleaned.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise EncoderWeightsError(f"{source}: '{key}' has shape {tuple(value.shape)}, ResNet-18 needs {tuple(expected[key].shape)}")
    encoder.load_state_dict(cleaned)
    return "ImageNet weights" if source.lower() == "imagenet" else f"weights from {source}"


def build_resnet_unet(config: Config) -> ResNetUNetGenerator:
    return ResNetUNetGenerator(out_channels=2)


register_model(ModelSpec(
    name="resnet18",
    description="U-Net with an ImageNet ResNet-18 encoder + 70x70 PatchGAN, BCE cGAN + 100*L1",
    paper="002 sec. 4.2, 5.2, App. A.2",
    build=build_resnet_unet,
    architecture={"image_size": 256},
    tiny={"image_size": 32},
))
