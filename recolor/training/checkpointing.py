"""The run state on disk: what a run folder's weights files hold, and how a run gets it back.

* ``last.safetensors``           every network's weights (kind "training"), config, trainer state,
                                 the weight average when there is one (see ``averaging.py``), and
                                 the name of the run-state file that goes with them
* ``last.state-HASH.safetensors`` the rest of the run (``checkpoint.RunState``): every optimiser's
                                 state, the random streams (``random_state.py``), the fp16 loss
                                 scale; named by a hash of its bytes
* ``best.safetensors``           the generator with the lowest validation ab-L1 so far
* ``model.safetensors``          the fp16 generator exported for inference at the end

A checkpoint is one atomic set: the run-state file is written first under a name no earlier
checkpoint used, then ``last.safetensors``, which names it, replaces the previous one in one
rename (the commit), and only then is the previous run-state file removed. A kill at any moment
leaves the previous set or the new one whole, never a mixture. (Runs from before kept their
optimisers in ``last.optim.safetensors``; they resume from it, checked to be of the same step.)

The file format itself (self-describing safetensors, checksums, atomic writes) is ``recolor/checkpoint.py``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import (
    CHECKPOINT_NAME, Checkpoint, CheckpointError, RunState, load_checkpoint, load_run_state, read_checkpoint_header, run_state_bytes, save_checkpoint,
)
from ..imageio import atomic_write_bytes
from ..pretrained import save_pretrained
from .averaging import WeightAverage
from .distributed import unwrap
from .recipe import Recipe

OPTIMIZER_NAME = "last.optim.safetensors"  # the optimisers of runs from before run-state files (read on resume, then removed)
RUN_STATE_PATTERN = "last.state-*.safetensors"
_RUN_STATE_KEY = "run_state"  # in last.safetensors' extra: the name of its run-state file
EXPORT_NAME = "model.safetensors"
BEST_NAME = "best.safetensors"  # the generator with the lowest validation ab-L1 so far


class RunCheckpoints:
    """Save, restore, export and keep-the-best for one recipe's run folder."""

    def __init__(self, recipe: Recipe, out_dir: Path) -> None:
        self.recipe, self.out_dir = recipe, Path(out_dir)

    def save(self, trainer_state: dict[str, Any], average: WeightAverage, random_streams: tuple[dict, dict]) -> None:
        """One atomic checkpoint set: the run state, then ``last.safetensors`` naming it (rank 0 alone calls this).

        ``random_streams``: what ``random_state.capture_random_streams`` returned at the step saved.
        """
        tensors = {}
        for name, network in self.recipe.networks.items():
            for key, value in unwrap(network).state_dict().items():
                tensors[f"{name}.{key}"] = value
        tensors.update(average.checkpoint_tensors())
        streams, facts = random_streams
        if self.recipe.scaler is not None:
            facts = {**facts, "loss_scale": self.recipe.scaler.state_dict()}
        optimizers = {name: optimizer.state_dict() for name, optimizer in self.recipe.optimizers.items()}
        state_path = write_run_state(self.out_dir, RunState(optimizers, trainer_state["step"], streams, facts))
        extra = {"trainer": trainer_state, _RUN_STATE_KEY: state_path.name, **self.recipe.extra_metadata(), **average.checkpoint_extra()}
        save_checkpoint(self.out_dir / CHECKPOINT_NAME, tensors, self.recipe.spec.name, self.recipe.config, kind="training", extra=extra)
        # committed: the run states no checkpoint names any more (the previous one, one a kill left uncommitted) go
        for stale in [*self.out_dir.glob(RUN_STATE_PATTERN), self.out_dir / OPTIMIZER_NAME]:
            if stale != state_path:
                stale.unlink(missing_ok=True)
        atomic_write_bytes(self.out_dir / "trainer_state.json", json.dumps(trainer_state).encode())

    def read_last(self) -> Checkpoint | None:
        """The run folder's training checkpoint (None when there is none), checked to be this model's."""
        path = self.out_dir / CHECKPOINT_NAME
        if not path.exists():
            return None
        checkpoint = load_checkpoint(path)
        if checkpoint.model != self.recipe.spec.name:
            raise CheckpointError(f"{path}: checkpoint is for model '{checkpoint.model}', not '{self.recipe.spec.name}'")
        if checkpoint.kind != "training" or "trainer" not in checkpoint.extra:
            raise CheckpointError(f"{path}: exported weights, not a training checkpoint: nothing to resume (fine-tune from it with --init-from)")
        return checkpoint

    def restore(self, checkpoint: Checkpoint) -> RunState:
        """Networks, optimisers, the loss scale and the recipe's own state from a checkpoint of
        :meth:`read_last`; returns its run state (the caller restores the random streams last)."""
        # read before any network changes: a refused run state leaves the recipe untouched
        state = self.read_run_state(checkpoint)
        for name, network in self.recipe.networks.items():
            self._load_network(checkpoint.path, name, unwrap(network), checkpoint.sub_state(name))
        for name, optimizer in self.recipe.optimizers.items():
            optimizer.load_state_dict(state.optimizers[name])
        if self.recipe.scaler is not None and "loss_scale" in state.facts:  # --precision may change on resume
            self.recipe.scaler.load_state_dict(state.facts["loss_scale"])
        self.recipe.load_extra_metadata(checkpoint.extra)
        return state

    def read_run_state(self, checkpoint: Checkpoint) -> RunState:
        """The run state that ``checkpoint`` names (or, for a run from before, ``last.optim.safetensors``)."""
        name = checkpoint.extra.get(_RUN_STATE_KEY, OPTIMIZER_NAME)
        if not isinstance(name, str) or Path(name).name != name:
            raise CheckpointError(f"{checkpoint.path}: names no run-state file of its folder ({name!r})")
        return load_run_state(self.out_dir / name, step=checkpoint.extra["trainer"]["step"])

    def initialize_from(self, path: Path) -> None:
        """Fine-tuning: start from another run's networks (fresh optimisers, step 0).

        A training checkpoint gives every network it has; an exported weights file gives the
        generator alone (the critic then starts from scratch).
        """
        checkpoint = load_checkpoint(path)
        if checkpoint.model != self.recipe.spec.name:
            raise CheckpointError(f"{path}: checkpoint is for model '{checkpoint.model}', not '{self.recipe.spec.name}'")
        for name, network in self.recipe.networks.items():
            state = checkpoint.sub_state(name) if checkpoint.kind == "training" else (checkpoint.tensors if name == "generator" else {})
            if state:
                target = unwrap(network)
                reference = target.state_dict()
                state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
                # statistics `prepare` just computed from this run's photos stay: they describe the new data
                fresh = {key: reference[key] for key in self.recipe.data_statistics if name == "generator" and key in reference}
                # new inputs a network adds to an older one (hint branches) start as built: at zero
                fresh.update({key: value for key, value in reference.items() if key not in state and key.startswith(tuple(getattr(target, "zero_started", ())))})
                self._load_network(path, name, target, {**state, **fresh})

    @staticmethod
    def _load_network(path: Path, name: str, network: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
        try:
            network.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: {name} weights do not fit this config ({str(exc).splitlines()[0]})") from None

    def export(self, path: Path, trained_steps: int, extra: dict[str, Any] | None = None) -> Path:
        """The generator alone, fp16, kind "weights": what `recolor colorize --model PATH` loads."""
        extra = {"trained_steps": trained_steps, **self.recipe.extra_metadata(), **(extra or {})}
        return save_pretrained(path, unwrap(self.recipe.generator), self.recipe.spec.name, self.recipe.config, extra=extra)

    def keep_if_best(self, val_ab_l1: float, trained_steps: int, extra: dict[str, Any] | None = None) -> None:
        """Export the generator to ``best.safetensors`` whenever validation ab-L1 improves.

        GAN training is noisy from epoch to epoch; the best validated generator is often not the
        last one. The figure is stored with the weights so the choice stays visible.
        """
        best_path = self.out_dir / BEST_NAME
        if best_path.exists():
            with contextlib.suppress(CheckpointError, KeyError):
                if read_checkpoint_header(best_path).extra.get("val_ab_l1", float("inf")) <= val_ab_l1:
                    return
        self.export(best_path, trained_steps, extra={**(extra or {}), "val_ab_l1": val_ab_l1})


def write_run_state(out_dir: Path, state: RunState) -> Path:
    """Write ``state`` atomically under a name made of a hash of its bytes, so it never replaces the
    run state the committed ``last.safetensors`` names (two saves of one state write the same file)."""
    data = run_state_bytes(state)
    path = Path(out_dir) / RUN_STATE_PATTERN.replace("*", hashlib.sha256(data).hexdigest()[:16])
    atomic_write_bytes(path, data)
    return path
