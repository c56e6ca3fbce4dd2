"""Diverse colorization, paper 004 (Deshpande et al. 2017): colour-field VAE + MDN.

Models ``divcolor`` (the paper's "ours") and ``divcolor-skip`` ("ours+skip", section 7: the VAE
decoder also sees a grey-level encoder through skip connections).

Losses (section 3.1 and 4), each per image then averaged over the batch:

* decoder: L_dec = L_hist + 0.1 L_mah + 1e-3 L_grad (eq. 4), with
  L_hist = sum_p w_p ||C_p - f_p||^2 (eq. 2, w_p = 1/H of the ab bin of the true colour),
  L_mah = sum_{k<=20} ((C - f)^T P_k)^2 / sigma_k^2 + ||(C - f)_res||^2 / sigma_20^2,
  L_grad = ||grad_h C - grad_h f||^2 + ||grad_v C - grad_v f||^2 (eq. 3);
* encoder: KL(Q(z|C) || N(0, I)) weighted 1e-2;
* MDN: the closest-component loss -log pi_m + ||z - mu_m||^2 / (2 sigma^2), sigma^2 = 0.1 (eq. 6),
  the target z being the VAE encoder's mean for the photo's colour field (encoder in eval mode).

The PCA basis (top 20 components of the training colour fields) and the ab histogram H are
computed from the training data when a run starts (:meth:`DivColorRecipe.prepare`) and kept as
buffers of the ``statistics`` network, so they are saved in every training checkpoint.

Differences from the paper, deliberate:

* grey-level features: the frozen encoder of recolor's own pix2pix U-Net instead of Zhang et al.'s
  conv7 (see ``networks/divcolor.py``); its weights are copied from ``feature_checkpoint`` at the
  start of a run and stored inside the divcolor checkpoint, so inference never needs that file;
* the paper trains the VAE to convergence, then the MDN on its codes; here both train in the same
  steps (the MDN's target is the current encoder's mean). ``mdn_start_step`` delays the MDN for a
  closer-to-two-stage schedule;
* H: the paper uses Zhang et al.'s ImageNet histogram; here H is the normalised histogram of the
  training set's 64x64 ab fields in 10 x 10 Lab-unit bins, smoothed (sigma 5 units) and mixed
  with a uniform distribution (lambda 0.5) before inverting, as Zhang et al. do for their weights
  (raw 1/H is infinite for empty bins), and scaled so that the mean weight over training pixels is 1;
* optimiser: Adam (the paper gives none for the VAE; the released MDN code uses plain SGD).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..ab_bins import ab_bin_index
from ..checkpoint import CheckpointError, find_weights, load_checkpoint, read_checkpoint_header
from ..color import rgb_to_lab_normalized
from ..losses import kl_divergence_normal
from ..networks.divcolor import FIELD_SIZE, ColourFieldEncoder, to_field_size
from ..networks.unet import UNET_ARCHITECTURE
from ..registry import Config, ModelSpec, attach_recipe
from .recipe import Batch, Recipe


# --- losses (section 3.1, eq. 2-4; section 4, eq. 6) --------------------------------------

def colourfulness_loss(predicted: torch.Tensor, target: torch.Tensor, bin_weights: torch.Tensor) -> torch.Tensor:
    """Eq. 2: sum over pixels of w_p ||C_p - f_p||^2 with w_p = 1/H looked up at the true colour's bin."""
    weights = bin_weights.flatten()[ab_bin_index(target, bin_weights.shape[-1])]
    return (weights[:, None] * (target - predicted).pow(2)).sum(dim=(1, 2, 3)).mean()


def mahalanobis_loss(predicted: torch.Tensor, target: torch.Tensor, components: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """Section 3.1 specificity loss: Mahalanobis distance along the top-k principal components plus
    the residual outside them divided by the k-th variance.

    ``components`` (k, D) has orthonormal rows, so C_res - f_res is the residual of C - f.
    """
    difference = (target - predicted).flatten(1)
    projections = difference @ components.t()
    along = (projections.pow(2) / variances).sum(dim=1)
    residual = difference - projections @ components
    return (along + residual.pow(2).sum(dim=1) / variances[-1]).mean()


def gradient_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 3: squared differences of horizontal and vertical finite differences."""
    horizontal = torch.diff(target, dim=-1) - torch.diff(predicted, dim=-1)
    vertical = torch.diff(target, dim=-2) - torch.diff(predicted, dim=-2)
    return (horizontal.pow(2).sum(dim=(1, 2, 3)) + vertical.pow(2).sum(dim=(1, 2, 3))).mean()


def mdn_closest_component_loss(z: torch.Tensor, means: torch.Tensor, log_weights: torch.Tensor, variance: float) -> torch.Tensor:
    """Eq. 6: only the component whose mean is closest to z is optimised: -log pi_m + ||z - mu_m||^2 / (2 sigma^2)."""
    distances = (z[:, None, :] - means).pow(2).sum(dim=-1)
    closest = distances.argmin(dim=1, keepdim=True)
    return (-log_weights.gather(1, closest)[:, 0] + distances.gather(1, closest)[:, 0] / (2.0 * variance)).mean()


# --- training-set statistics --------------------------------------------------------------

def principal_components(data: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``count`` principal directions (count, D) of rows of ``data`` (N, D) and their variances.

    Directions the data does not span (fewer images than components) get a zero row and the
    smallest real variance, so they add nothing along and leave the residual term as it is.
    """
    x = data.double()
    x = x - x.mean(dim=0)
    rows = x.shape[0]
    if rows <= x.shape[1]:  # eigen-decompose the N x N Gram matrix, cheaper than D x D
        eigenvalues, eigenvectors = torch.linalg.eigh(x @ x.t())
        eigenvalues, eigenvectors = eigenvalues.flip(0)[:count], eigenvectors.flip(1)[:, :count]
        directions = (x.t() @ eigenvectors) / eigenvalues.clamp_min(1e-30).sqrt()
        directions = directions.t()
    else:
        eigenvalues, eigenvectors = torch.linalg.eigh(x.t() @ x)
        eigenvalues, directions = eigenvalues.flip(0)[:count], eigenvectors.flip(1)[:, :count].t()
    variances = eigenvalues / max(rows - 1, 1)
    valid = variances > max(float(variances[0]), 1e-12) * 1e-9 if variances.numel() else variances.bool()
    components = torch.zeros(count, x.shape[1], dtype=torch.float64)
    full_variances = torch.ones(count, dtype=torch.float64)
    found = int(valid.sum())
    if found == 0:
        raise ValueError("the training colour fields have no variance (all photos the same colour?)")
    components[:found] = directions[:found]
    full_variances[:found] = variances[:found]
    full_variances[found:] = variances[found - 1]
    return components.float(), full_variances.float()


def colourfulness_loss_weights(fields: torch.Tensor, bins: int, sigma: float, uniform_mix: float) -> torch.Tensor:
    """Eq. 2's weights 1/H per ab bin (bins, bins), H smoothed and mixed with the uniform distribution,
    scaled to mean 1 over the training pixels (not the raw 1/H of the evaluation's weighted error)."""
    index = ab_bin_index(fields, bins).flatten()
    counts = torch.bincount(index, minlength=bins * bins).double().reshape(1, 1, bins, bins)
    probability = counts / counts.sum()
    if sigma > 0:
        radius = max(1, math.ceil(3 * sigma))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = kernel / kernel.sum()
        probability = F.conv2d(probability, kernel.view(1, 1, 1, -1), padding=(0, radius))
        probability = F.conv2d(probability, kernel.view(1, 1, -1, 1), padding=(radius, 0))
        probability = probability / probability.sum()
    probability = probability[0, 0]
    occupied = int((probability > 0).sum())
    mixed = (1.0 - uniform_mix) * probability + uniform_mix / max(occupied, 1)
    # without the uniform part a bin no training pixel fell in would weigh infinitely: give it the
    # rarest seen bin's weight (training batches are other crops than the statistics saw)
    mixed = torch.where(mixed > 0, mixed, mixed[mixed > 0].min())
    weights = 1.0 / mixed
    weights = weights / (probability * weights).sum()
    return weights.float()


class ColourFieldStatistics(nn.Module):
    """Buffers computed from the training set by ``prepare``: the PCA basis and the 1/H weights."""

    def __init__(self, components: int = 20, bins: int = 22) -> None:
        super().__init__()
        self.register_buffer("pca_components", torch.zeros(components, 2 * FIELD_SIZE * FIELD_SIZE))
        self.register_buffer("pca_variances", torch.ones(components))
        self.register_buffer("bin_weights", torch.ones(bins, bins))
        self.register_buffer("images", torch.zeros(()))  # how many photos the statistics come from (0 = not computed)

    @property
    def ready(self) -> bool:
        return float(self.images) > 0

    @torch.no_grad()
    def compute(self, fields: torch.Tensor, sigma: float, uniform_mix: float) -> None:
        """Fill the buffers from normalised ab fields (N, 2, 64, 64)."""
        components, variances = principal_components(fields.flatten(1), self.pca_components.shape[0])
        self.pca_components.copy_(components)
        self.pca_variances.copy_(variances)
        self.bin_weights.copy_(colourfulness_loss_weights(fields, self.bin_weights.shape[-1], sigma, uniform_mix))
        self.images.fill_(fields.shape[0])


def colour_fields(rgb_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, s, s) -> normalised ab at the VAE's 64x64 (antialiased)."""
    return to_field_size(rgb_to_lab_normalized(rgb_uint8.float() / 255.0)[1])


# --- the grey-level feature checkpoint ----------------------------------------------------

def feature_checkpoint_path(name_or_path: str) -> Path:
    try:
        return find_weights(name_or_path)
    except KeyError as exc:
        raise CheckpointError(f"feature_checkpoint: {exc.args[0]}") from None


def resolved_feature_config(config: Config) -> Config:
    """The config with ``feature_ngf`` / ``feature_norm`` filled in from the pix2pix checkpoint when unset (a new dict)."""
    if config["feature_ngf"] is not None and config["feature_norm"] is not None:
        return dict(config)
    checkpoint = read_checkpoint_header(feature_checkpoint_path(config["feature_checkpoint"]))  # its config alone
    if checkpoint.model != "pix2pix":
        raise CheckpointError(f"{checkpoint.path}: the grey-level features come from a pix2pix checkpoint, this one is '{checkpoint.model}'")
    stored = {**UNET_ARCHITECTURE, **checkpoint.config}
    if int(stored["num_downs"]) < int(config["feature_level"]) + 2:
        raise CheckpointError(f"{checkpoint.path}: its U-Net has {stored['num_downs']} levels, too few for feature_level {config['feature_level']}")
    return {**config, "feature_ngf": int(stored["ngf"]), "feature_norm": str(stored["norm"])}


# --- the recipe ---------------------------------------------------------------------------

class DivColorRecipe(Recipe):
    def __init__(self, spec: ModelSpec, config: Config, device) -> None:
        # the resolved feature settings are stored in the checkpoint's config: inference rebuilds the same encoder
        super().__init__(spec, resolved_feature_config(config), device)
        config = self.config
        generator = spec.build(config)
        self.networks["generator"] = generator
        self.networks["colour_encoder"] = ColourFieldEncoder(2, config["width"], config["latent_dim"], config["vae_dropout"])
        self.networks["statistics"] = ColourFieldStatistics(config["pca_components"], config["hist_bins"])
        betas = tuple(config["betas"])
        vae_parameters = list(self.networks["colour_encoder"].parameters()) + list(generator.decoder.parameters())
        self.optimizers["vae"] = torch.optim.Adam(vae_parameters, lr=config["lr"], betas=betas)
        self.optimizers["mdn"] = torch.optim.Adam(generator.mdn.parameters(), lr=config["mdn_lr"], betas=betas)
        self.steps = 0
        self.feature_source: dict[str, Any] = {}

    def prepare(self, dataset: Dataset) -> None:
        """Copy the pix2pix encoder weights in and compute the PCA basis and the ab histogram."""
        self.load_feature_weights()
        count = min(len(dataset), int(self.config["stats_images"]))
        indices = torch.linspace(0, len(dataset) - 1, count).round().long().unique().tolist()
        loader = DataLoader(Subset(dataset, indices), batch_size=64, shuffle=False, num_workers=0)
        fields = torch.cat([colour_fields(batch["rgb"]) for batch in loader])
        self.networks["statistics"].to("cpu").compute(fields, self.config["hist_sigma"], self.config["hist_uniform_mix"])
        self.networks["statistics"].to(self.device)

    def load_feature_weights(self) -> None:
        path = feature_checkpoint_path(self.config["feature_checkpoint"])
        checkpoint = load_checkpoint(path)
        stored = {**UNET_ARCHITECTURE, **checkpoint.config}
        if checkpoint.model != "pix2pix" or stored["ngf"] != self.config["feature_ngf"] or stored["norm"] != self.config["feature_norm"]:
            raise CheckpointError(f"{path}: not a pix2pix checkpoint with ngf={self.config['feature_ngf']}, norm={self.config['feature_norm']}")
        features = self.generator.features
        try:
            features.load_unet_state(checkpoint.generator_state())
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: its encoder does not fit ({str(exc).splitlines()[0]})") from None
        features.to(self.device)
        trainer_state = checkpoint.extra.get("trainer", {})
        self.feature_source = {"path": str(path), "steps": checkpoint.extra.get("trained_steps", trainer_state.get("step"))}

    def decoder_losses(self, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        statistics = self.networks["statistics"]
        return {
            "hist": colourfulness_loss(predicted, target, statistics.bin_weights),
            "mah": mahalanobis_loss(predicted, target, statistics.pca_components, statistics.pca_variances),
            "grad": gradient_loss(predicted, target),
        }

    def train_step(self, batch: Batch) -> dict[str, float]:
        if not self.networks["statistics"].ready:
            raise RuntimeError("divcolor: the PCA basis and the ab histogram are not computed (call prepare(dataset) first)")
        config, generator, encoder = self.config, self.generator, self.networks["colour_encoder"]
        lightness = batch["L"]
        field = to_field_size(batch["ab"])
        with self.autocast():
            mean, log_variance = encoder(field)
            mean, log_variance = mean.float(), log_variance.float()
            z = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
            grey = to_field_size(lightness) if generator.decoder.grey_skip else None
            predicted = generator.decoder(z, grey).float()
        # the losses run in fp32: the Mahalanobis residual divides by a small variance
        terms = self.decoder_losses(predicted, field)
        kl = kl_divergence_normal(mean, log_variance)
        decoder_loss = terms["hist"] + config["lambda_mah"] * terms["mah"] + config["lambda_grad"] * terms["grad"]
        self.optimize("vae", decoder_loss + config["kl_weight"] * kl)
        logs = {key: value.item() for key, value in terms.items()}
        logs.update(kl=kl.item(), recon=(predicted.detach() - field).abs().mean().item())
        self.steps += 1
        if self.steps > config["mdn_start_step"]:
            # the MDN's target is the photo's code as inference would see it: the encoder's mean in
            # eval mode (no dropout), as the released code computes the codes in a test pass
            encoder.eval()
            with torch.no_grad(), self.autocast():
                code = encoder(field)[0].float()
            encoder.train()
            with self.autocast():
                means, log_weights = generator.mixture(lightness)
            mdn_loss = mdn_closest_component_loss(code, means.float(), log_weights.float(), config["mdn_variance"])
            self.optimize("mdn", mdn_loss)
            logs["mdn"] = mdn_loss.item()
        return logs

    def extra_metadata(self) -> dict[str, Any]:
        return {"feature_source": self.feature_source, "recipe_steps": self.steps}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        self.feature_source = extra.get("feature_source", {})
        self.steps = int(extra.get("recipe_steps", 0))


DIVCOLOR_TRAINING: Config = {
    "vae_dropout": 0.3,
    "mdn_start_step": 0,  # > 0: VAE alone for that many steps first (closer to the paper's two stages)
    "feature_checkpoint": "pix2pix",  # model name (shipped weights) or a pix2pix .safetensors path
    "pca_components": 20,
    "hist_bins": 22,  # 10 x 10 Lab-unit bins over [-110, 110]
    "hist_sigma": 0.5,  # in bins: 5 Lab units, as Zhang et al.
    "hist_uniform_mix": 0.5,
    "stats_images": 2000,  # photos the PCA basis and the histogram are computed from
    "lambda_mah": 0.1,
    "lambda_grad": 1e-3,
    "kl_weight": 1e-2,
    "lr": 1e-4,
    "mdn_lr": 1e-4,
    "betas": [0.9, 0.999],
    "batch_size": 32,
}

for _name in ("divcolor", "divcolor-skip"):
    attach_recipe(_name, DivColorRecipe, DIVCOLOR_TRAINING, tiny={"pca_components": 4, "stats_images": 24})
