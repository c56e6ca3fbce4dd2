"""The contract between one method's training step and the shared training loop.

A recipe owns its networks (``self.networks``, one of them named ``"generator"``) and their
optimisers (``self.optimizers``) and implements :meth:`Recipe.train_step`. The
:class:`~recolor.training.loop.Trainer` does everything else: devices, mixed precision, data,
checkpoints and resume, logging, samples and validation. The loop calls :meth:`Recipe.run_train_step`,
which runs ``train_step`` and then updates the fp16 loss scale once.
"""
from __future__ import annotations

import contextlib
from types import MappingProxyType
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Config, ModelSpec

Batch = dict[str, torch.Tensor]


class Recipe:
    """Base class: subclasses build networks in ``__init__`` and define ``train_step``."""

    # generator buffers that ``prepare`` computes from the training photos (e.g. a colour prior):
    # fine-tuning with --init-from keeps these fresh values rather than the checkpoint's
    data_statistics: tuple[str, ...] = ()

    def __init__(self, spec: ModelSpec, config: Config, device: torch.device) -> None:
        self.spec = spec
        # read-only: what a run stores and resumes from is the config it was given, never a recipe's edit of it
        self.config: Mapping[str, Any] = MappingProxyType(dict(config))
        self.device = device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        # set by the Trainer: mixed-precision dtype (None = fp32), a GradScaler for fp16, and the
        # optimisation steps in one epoch of this process (under torchrun: of this rank's share)
        self.amp_dtype: torch.dtype | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.steps_per_epoch: int | None = None
        self._scaler_stepped = False  # an optimiser stepped through the scaler since its last update

    # --- what subclasses implement -------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on a batch (``L``, ``ab``, ``rgb``, ``label``); returns losses to log.

        The key ``"recon"`` (reconstruction loss, when the method has one) is what tests
        and progress bars watch.
        """
        raise NotImplementedError

    def prepare(self, dataset: torch.utils.data.Dataset) -> None:
        """Called once before the first step of a fresh run (e.g. to compute data statistics)."""

    # --- shared helpers ------------------------------------------------------------------
    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    def predict_ab(self, lightness: torch.Tensor) -> torch.Tensor:
        """Normalised ab for normalised L at the input's size (validation and samples compare there)."""
        with self.autocast():
            ab = self.spec.predict_ab(self.generator, lightness).float()
        if ab.shape[-2:] != lightness.shape[-2:]:
            ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
        return ab

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def run_train_step(self, batch: Batch) -> dict[str, float]:
        """One training step as the loop runs it: :meth:`train_step`, then the fp16 loss scale
        updated once, after every optimiser of the step has stepped (a GAN steps two)."""
        losses = self.train_step(batch)
        if self.scaler is not None and self._scaler_stepped:
            self.scaler.update()
        self._scaler_stepped = False
        return losses

    def optimize(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> None:
        """zero_grad, backward and step for one optimiser, through the GradScaler under fp16
        (whose scale :meth:`run_train_step` updates once the whole step is done)."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward(retain_graph=retain_graph)
            self.scaler.step(optimizer)
            self._scaler_stepped = True
        else:
            loss.backward(retain_graph=retain_graph)
            optimizer.step()

    @contextlib.contextmanager
    def networks_replaced(self, replacements: dict[str, nn.Module]) -> Iterator[None]:
        """The networks of these names replaced while open (an averaged generator, the plain
        network inside a DDP wrapper), the originals back after."""
        originals = {name: self.networks[name] for name in replacements}
        self.networks.update(replacements)
        try:
            yield
        finally:
            self.networks.update(originals)

    @staticmethod
    @contextlib.contextmanager
    def frozen(*modules: nn.Module) -> Iterator[None]:
        """Stop gradients into a critic while the generator steps (saves the critic's backward)."""
        previous = [[p.requires_grad for p in m.parameters()] for m in modules]
        for module in modules:
            module.requires_grad_(False)
        try:
            yield
        finally:
            for module, flags in zip(modules, previous):
                for parameter, flag in zip(module.parameters(), flags):
                    parameter.requires_grad_(flag)

    def adam(self, module: nn.Module, lr_key: str = "lr", betas_key: str = "betas") -> torch.optim.Adam:
        return torch.optim.Adam(module.parameters(), lr=self.config[lr_key], betas=tuple(self.config[betas_key]))

    def extra_metadata(self) -> dict[str, Any]:
        """JSON-able facts stored with checkpoints and exported weights (besides the config)."""
        return {}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_metadata` stored, when a run resumes."""
