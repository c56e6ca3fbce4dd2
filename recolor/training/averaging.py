"""Averages of the generator's weights, behind one interface: none, EMA (``--ema``), SWA (``--swa-from-epoch``).

GAN generators wander from step to step (validation ab-L1 swung by +-0.01 between epochs of the
shipped runs); an average of their weights is a standard remedy. Not in the papers: opt-in.

The Trainer calls, whatever the average: :meth:`WeightAverage.start` once the weights are set
(fresh run or resume), :meth:`~WeightAverage.after_step` and :meth:`~WeightAverage.after_epoch`,
:meth:`~WeightAverage.in_use` around validation, samples and exports, :meth:`~WeightAverage.finish`
at the end; :meth:`~WeightAverage.checkpoint_tensors` and :meth:`~WeightAverage.checkpoint_extra`
go into ``last.safetensors``, so a resumed run goes on with the average.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterable

import torch

from ..checkpoint import EMA_PREFIX, Checkpoint
from .distributed import unwrap
from .recipe import Recipe

SWA_PREFIX = "swa"  # training checkpoints keep the running SWA mean under this prefix


class WeightAverage:
    """No averaging: the interface, every method a no-op."""

    def start(self, recipe: Recipe, checkpoint: Checkpoint | None = None) -> None:
        """Begin from the recipe's generator, or go on with what a resumed ``checkpoint`` kept."""

    def after_step(self, recipe: Recipe) -> None:
        """Called after every training step."""

    def after_epoch(self, recipe: Recipe, epoch: int) -> None:
        """Called when epoch number ``epoch`` (counted from 1) is complete."""

    def in_use(self, recipe: Recipe) -> contextlib.AbstractContextManager:
        """While open, the recipe's generator is the average (validation, samples, exports)."""
        return contextlib.nullcontext()

    def finish(self, recipe: Recipe, inputs: Iterable[torch.Tensor]) -> dict[str, Any]:
        """End of run: put the average into the generator itself when it lives apart; returns facts
        for the log (empty when the generator is unchanged). ``inputs``: training L batches."""
        return {}

    def export_extra(self) -> dict[str, Any]:
        """Facts stored with exported weights."""
        return {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {}


class ExponentialAverage(WeightAverage):
    """The exponential moving average of the generator, updated every step (Yazici et al. 2019,
    "The unusual effectiveness of averaging in GAN training"). BatchNorm statistics are averaged
    with the weights (as timm's ModelEmaV2), so none need recomputing."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.average: torch.nn.Module | None = None

    def start(self, recipe: Recipe, checkpoint: Checkpoint | None = None) -> None:
        # a resumed run that had no EMA yet starts it from the resumed generator
        self.average = copy.deepcopy(unwrap(recipe.generator)).requires_grad_(False)
        state = checkpoint.sub_state(EMA_PREFIX) if checkpoint is not None else {}
        if state:
            reference = self.average.state_dict()
            self.average.load_state_dict({key: value.to(reference[key].dtype) for key, value in state.items()})

    @torch.no_grad()
    def after_step(self, recipe: Recipe) -> None:
        current = unwrap(recipe.generator).state_dict()
        for key, average in self.average.state_dict().items():
            if average.is_floating_point():
                average.lerp_(current[key].to(average.dtype), 1.0 - self.decay)
            else:
                average.copy_(current[key])  # BatchNorm's batch counter

    def in_use(self, recipe: Recipe) -> contextlib.AbstractContextManager:
        return recipe.networks_replaced({"generator": self.average})

    def finish(self, recipe: Recipe, inputs: Iterable[torch.Tensor]) -> dict[str, Any]:
        return {}  # exports see the average through in_use; the raw generator stays in last.safetensors

    def export_extra(self) -> dict[str, Any]:
        return {"ema_decay": self.decay}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{EMA_PREFIX}.{key}": value for key, value in self.average.state_dict().items()}


class EpochAverage(WeightAverage):
    """Stochastic weight averaging (Izmailov et al. 2018): the running mean of the generator's
    weights at the end of every epoch from ``from_epoch`` on, loaded into the generator at the
    end of the run with BatchNorm statistics recomputed on training batches: those of the
    BatchNorms that training updates, not of a frozen part (see :func:`frozen_parts`)."""

    def __init__(self, from_epoch: int, norm_batches: int = 50) -> None:
        self.from_epoch, self.norm_batches = from_epoch, norm_batches
        self.mean: dict[str, torch.Tensor] = {}
        self.count = 0
        self.applied = False

    def start(self, recipe: Recipe, checkpoint: Checkpoint | None = None) -> None:
        if checkpoint is not None:
            self.mean = {key: value.float() for key, value in checkpoint.sub_state(SWA_PREFIX).items()}
            self.count = int(checkpoint.extra.get("swa_mean_of_epochs", 0)) if self.mean else 0

    def after_epoch(self, recipe: Recipe, epoch: int) -> None:
        if epoch < self.from_epoch:
            return
        state = unwrap(recipe.generator).state_dict()
        self.count += 1
        if not self.mean:
            self.mean = {key: value.detach().float().clone() for key, value in state.items() if value.is_floating_point()}
            return
        for key, average in self.mean.items():
            average += (state[key].detach().float() - average) / self.count

    @torch.no_grad()
    def finish(self, recipe: Recipe, inputs: Iterable[torch.Tensor]) -> dict[str, Any]:
        """Load the mean into the generator and recompute BatchNorm statistics on training batches."""
        if not self.count:
            return {}
        generator = unwrap(recipe.generator)
        current = generator.state_dict()
        generator.load_state_dict({**current, **{key: value.to(current[key].dtype) for key, value in self.mean.items()}})
        self.applied = True
        generator.train()
        for part in frozen_parts(generator):
            part.eval()  # as training runs it (effnet-unet's ImageNet encoder): its statistics are kept
        norms = [module for module in generator.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.training]
        if norms:
            momenta = [module.momentum for module in norms]
            for module in norms:
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the pass
            for index, lightness in enumerate(inputs):
                if index >= self.norm_batches:
                    break
                with recipe.autocast():
                    generator(lightness)
            for module, momentum in zip(norms, momenta):
                module.momentum = momentum
        return {"swa_epochs": self.count}

    def export_extra(self) -> dict[str, Any]:
        return {"swa_epochs": self.count} if self.applied else {}

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{SWA_PREFIX}.{key}": value for key, value in self.mean.items()}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"swa_mean_of_epochs": self.count} if self.count else {}


def frozen_parts(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The largest sub-modules of ``network`` whose parameters are all frozen (``requires_grad``
    False), such as effnet-unet's ImageNet encoder while ``encoder_lr`` is 0. Recipes run a frozen
    part in eval mode, so training keeps its BatchNorm statistics; a recomputation must too."""
    parameters = list(network.parameters())
    if parameters and not any(parameter.requires_grad for parameter in parameters):
        return [network]
    return [part for child in network.children() for part in frozen_parts(child)]


def weight_average(ema_decay: float = 0.0, swa_from_epoch: int | None = None) -> WeightAverage:
    """The average the settings ask for (``--ema`` or ``--swa-from-epoch``, at most one)."""
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema decay {ema_decay}: must be in [0, 1), e.g. 0.999")
    if ema_decay and swa_from_epoch is not None:
        raise ValueError("weight averaging: use the EMA (--ema) or SWA (--swa-from-epoch), not both")
    if ema_decay:
        return ExponentialAverage(ema_decay)
    if swa_from_epoch is not None:
        return EpochAverage(swa_from_epoch)
    return WeightAverage()
