"""The one learning-rate schedule of every recipe: constant, then a linear fall to 0.

``--decay-epochs N`` (pix2pix's n_epochs_decay): the fall spans the last N epochs of the run.
Otherwise a recipe's config may set ``lr_decay_epochs`` (paper 000 section 5.1: the fall starts
at the first step and reaches 0 after that many epochs, however long the run).

The rate of every optimiser's parameter group is its base rate times a factor that is a pure
function of the step, so a resumed run continues the same schedule. The base rates are those
the recipe built its optimisers with, from its config: a resumed run whose ``--lr`` changed goes
on at the new rate (the optimiser state restored from the checkpoint carries the old one).
"""
from __future__ import annotations

import torch


class LinearDecaySchedule:
    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], steps_per_epoch: int, decay_epochs: int = 0,
                 config_decay_epochs: float = 0.0) -> None:
        """Build before any optimiser state is restored: the rates of the groups now are the base rates."""
        self.optimizers = optimizers
        self.base_rates = {name: [group["lr"] for group in optimizer.param_groups] for name, optimizer in optimizers.items()}
        self.steps_per_epoch = steps_per_epoch
        self.decay_epochs, self.config_decay_epochs = decay_epochs, float(config_decay_epochs)

    def factor(self, step: int, total_steps: int) -> float:
        """The multiplier of the base rates for the step after ``step`` steps of a ``total_steps`` run."""
        if self.decay_epochs > 0:
            decay_steps, end_step = self.decay_epochs * self.steps_per_epoch, total_steps
        else:
            decay_steps = self.config_decay_epochs * self.steps_per_epoch
            end_step = decay_steps
        if decay_steps <= 0:
            return 1.0
        return min(1.0, max(0.0, (end_step - step) / decay_steps))

    def apply(self, step: int, total_steps: int) -> None:
        factor = self.factor(step, total_steps)
        for name, optimizer in self.optimizers.items():
            for group, base in zip(optimizer.param_groups, self.base_rates[name]):
                group["lr"] = base * factor

    def current(self) -> float:
        """The first optimiser's rate at the last step (for the log)."""
        optimizer = next(iter(self.optimizers.values()), None)
        return float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0
