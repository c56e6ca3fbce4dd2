"""Self-describing safetensors checkpoints.

A weights file holds tensors plus string metadata:

* ``recolor.model``  the registry name,
* ``recolor.config`` the full model config as JSON (so the file alone rebuilds the network),
* ``recolor.format`` this format's version,
* ``recolor.kind``   ``"weights"`` (inference export: generator only, usually fp16) or
  ``"training"`` (every network of a recipe, prefixed ``<network>.``),
* ``recolor.extra``  JSON with anything else (training step, validation figures, statistics).

Optimiser state goes into a second safetensors file beside the training checkpoint
(``*.optim.safetensors``): its tensors flattened, its structure as JSON metadata. Nothing is ever
unpickled. Every write is atomic (temporary file, then rename).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .imageio import atomic_write_bytes

FORMAT_VERSION = "1"
EMA_PREFIX = "ema"  # training checkpoints keep the moving average of the generator under this prefix (--ema)
_KEY_MODEL, _KEY_CONFIG, _KEY_FORMAT, _KEY_KIND, _KEY_EXTRA = (
    "recolor.model", "recolor.config", "recolor.format", "recolor.kind", "recolor.extra",
)


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, or lacks the metadata that describes it."""


def _contiguous(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        out[key] = tensor.contiguous()
    return out


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    model: str,
    config: dict[str, Any],
    kind: str = "weights",
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write tensors with recolor metadata, atomically. ``dtype`` casts floating tensors (fp16 export)."""
    metadata = {
        _KEY_MODEL: model,
        _KEY_CONFIG: json.dumps(config, sort_keys=True),
        _KEY_FORMAT: FORMAT_VERSION,
        _KEY_KIND: kind,
        _KEY_EXTRA: json.dumps(extra or {}, sort_keys=True),
    }
    path = Path(path)
    atomic_write_bytes(path, save(_contiguous(tensors, dtype), metadata=metadata))
    return path


class Checkpoint:
    """A loaded checkpoint: ``model``, ``config``, ``kind``, ``extra`` and ``tensors``."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
        self.path = path
        self.tensors = tensors
        missing = [key for key in (_KEY_MODEL, _KEY_CONFIG) if key not in metadata]
        if missing:
            raise CheckpointError(
                f"{path}: not a recolor checkpoint (metadata lacks {', '.join(missing)}; "
                "was it written by `recolor train`?)"
            )
        self.model = metadata[_KEY_MODEL]
        try:
            self.config = json.loads(metadata[_KEY_CONFIG])
            self.extra = json.loads(metadata.get(_KEY_EXTRA, "{}"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata is not valid JSON ({exc.msg})") from None
        if not isinstance(self.config, dict):
            raise CheckpointError(f"{path}: config metadata must be a JSON object")
        self.kind = metadata.get(_KEY_KIND, "weights")

    def sub_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors of one network of a training checkpoint (keys without the ``prefix.``)."""
        start = prefix + "."
        return {key[len(start):]: value for key, value in self.tensors.items() if key.startswith(start)}

    def generator_state(self) -> dict[str, torch.Tensor]:
        """The generator to colorize with: of a training checkpoint, its moving average when it has one."""
        if self.kind != "training":
            return self.tensors
        return self.sub_state(EMA_PREFIX) or self.sub_state("generator")


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable safetensors {what} ({reason})") from None
    return tensors, metadata


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    tensors, metadata = _read_safetensors(path, "checkpoint")
    return Checkpoint(path, tensors, metadata)


# --- optimiser state ----------------------------------------------------------------------

def optimizer_state_to_tensors(states: dict[str, dict]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Flatten ``{name: optimizer.state_dict()}`` into tensors + JSON structure (no pickling)."""
    tensors: dict[str, torch.Tensor] = {}
    structure: dict[str, Any] = {}
    for name, state_dict in states.items():
        entry: dict[str, Any] = {"param_groups": state_dict["param_groups"], "state": {}}
        for param_id, param_state in state_dict["state"].items():
            scalars = {}
            for key, value in param_state.items():
                if torch.is_tensor(value):
                    tensors[f"{name}/{param_id}/{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[key] = value
            entry["state"][str(param_id)] = scalars
        structure[name] = entry
    return tensors, {"recolor.optimizers": json.dumps(structure)}


def tensors_to_optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, dict]:
    structure = json.loads(metadata["recolor.optimizers"])
    states = {}
    for name, entry in structure.items():
        state: dict[int, dict[str, Any]] = {}
        for param_id, scalars in entry["state"].items():
            state[int(param_id)] = dict(scalars)
        for key, tensor in tensors.items():
            owner, param_id, field_name = key.split("/", 2)
            if owner == name:
                state.setdefault(int(param_id), {})[field_name] = tensor
        states[name] = {"state": state, "param_groups": entry["param_groups"]}
    return states


def save_optimizer_states(path: str | Path, states: dict[str, dict]) -> None:
    tensors, metadata = optimizer_state_to_tensors(states)
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


def load_optimizer_states(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    tensors, metadata = _read_safetensors(path, "optimiser state")
    if "recolor.optimizers" not in metadata:
        raise CheckpointError(f"{path}: not a recolor optimiser-state file")
    return tensors_to_optimizer_state(tensors, metadata)
