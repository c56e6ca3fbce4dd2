"""Distributed training under torchrun: DDP wrapping of a recipe's networks and the rank helpers.

The process group itself is set up by ``recolor.cli.distributed_context``. For the run every
network with trainable parameters is wrapped in DistributedDataParallel; rank 0 alone writes
(checkpoints, logs, samples, the export). BatchNorm stays per rank (statistics of the rank's own
batch, as in a one-process run with that batch size) unless ``sync_batchnorm`` (CUDA only).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .recipe import Recipe


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel (or torch.compile) wrapper."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


class DistributedRun:
    """One process's part in a run of ``world_size`` processes (a no-op for a single process)."""

    def __init__(self, recipe: Recipe, rank: int, world_size: int, seed: int, sync_batchnorm: bool = False) -> None:
        self.recipe, self.rank, self.world_size, self.seed = recipe, rank, world_size, seed
        self.device = recipe.device
        if sync_batchnorm and self.device.type != "cuda":
            raise ValueError("sync_batchnorm needs CUDA: torch's SyncBatchNorm runs on GPUs only")
        self.sync_batchnorm = sync_batchnorm
        self.enabled = world_size > 1
        self.is_main = rank == 0
        self._plain: dict[str, torch.nn.Module] = {}  # the networks inside their DDP wrappers, while wrapped

    @contextlib.contextmanager
    def wrapped_networks(self) -> Iterator[None]:
        """For the run: each network with trainable parameters inside DistributedDataParallel.

        Entered after ``prepare``/``load`` so that DDP's initial broadcast starts every rank from
        rank 0's weights whatever those did; the plain networks are put back at the end.
        """
        if not self.enabled:
            yield
            return
        plain = dict(self.recipe.networks)
        wrapped = {}
        for name in list(plain):
            if not any(parameter.requires_grad for parameter in plain[name].parameters()):
                continue  # frozen feature extractors, statistics holders: nothing to synchronise
            if self.sync_batchnorm:
                # keeps the Parameter objects, so the recipe's optimisers still own them
                plain[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(plain[name])
            # find_unused_parameters: some networks keep heads a step does not use (the AGE
            # encoder's log-variance); the graph walk it costs is small next to the convolutions
            wrapped[name] = DistributedNetwork(plain[name], device_ids=self._device_ids(), find_unused_parameters=True)
        hooks = [optimizer.register_step_pre_hook(self._average_direct_gradients) for optimizer in self.recipe.optimizers.values()]
        if self.recipe.scaler is not None:
            synced = SyncedGradScaler("cuda")
            synced.load_state_dict(self.recipe.scaler.state_dict())  # a resumed run's loss scale goes on
            self.recipe.scaler = synced
        # one random stream per rank (dropout masks, noise inputs); the weights are synchronised
        torch.manual_seed(self.seed + 7919 * (self.rank + 1))
        self._plain = plain
        self.recipe.networks.update(wrapped)
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
            self.recipe.networks.update(plain)
            self._plain = {}

    def _device_ids(self) -> list[int] | None:
        if self.device.type != "cuda":
            return None
        return [self.device.index if self.device.index is not None else torch.cuda.current_device()]

    def plain_networks(self) -> contextlib.AbstractContextManager:
        """The recipe's networks without their DDP wrappers, for work that one rank does alone."""
        return self.recipe.networks_replaced(self._plain)

    def _average_direct_gradients(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        """Before a step: average the gradients of networks a recipe used around DDP's forward.

        A recipe that calls a sub-network or method of a wrapped network (``generator.decoder``)
        computes gradients DDP never sees; they are averaged here. Averaging gradients DDP has
        already averaged leaves them as they are, so this can only make ranks agree.
        """
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for network in self.recipe.networks.values():
            if isinstance(network, DistributedNetwork) and network.used_directly:
                for parameter in network.module.parameters():
                    if id(parameter) in owned and parameter.grad is not None:
                        dist.all_reduce(parameter.grad)
                        parameter.grad.div_(self.world_size)

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when it is true on one (every rank must stop at the same step)."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(device_ids=[torch.cuda.current_device()]) if self.device.type == "cuda" else dist.barrier()


class DistributedNetwork(DistributedDataParallel):
    """DistributedDataParallel that tolerates the ways recipes use their networks.

    * A forward with gradients off, or while every parameter is frozen (``Recipe.frozen``), runs
      the plain module: no backward into these weights follows, so DDP has nothing to reduce.
    * Attributes that DDP lacks (sub-networks, methods: ``generator.decoder``) come from the
      wrapped module; the network is then marked ``used_directly`` and its gradients are averaged
      before each optimiser step (see ``DistributedRun._average_direct_gradients``).
    """

    def __init__(self, module: torch.nn.Module, **kwargs: Any) -> None:
        super().__init__(module, **kwargs)
        self.used_directly = False
        # DDP warns once when a network turns out to use every parameter after all: expected here
        warnings.filterwarnings("ignore", message="find_unused_parameters=True was specified in DDP constructor")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or not any(parameter.requires_grad for parameter in self.module.parameters()):
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "module" not in modules or name.startswith("__"):
                raise
            value = getattr(modules["module"], name)
            self.__dict__["used_directly"] = True
            return value


class SyncedGradScaler(torch.amp.GradScaler):
    """fp16 loss scaling whose skip-this-step decision is the same on every rank.

    With gradients that DDP averaged, an inf on one rank reaches all of them; gradients averaged
    only at step time (``_average_direct_gradients``) are checked before that, so the ranks
    pool their "found inf" flags here.
    """

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        super().unscale_(optimizer)
        if dist.is_available() and dist.is_initialized():
            for found in self._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values():
                dist.all_reduce(found, op=dist.ReduceOp.MAX)
