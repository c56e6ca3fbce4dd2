"""Self-describing safetensors checkpoints.

A weights file holds tensors plus string metadata:

* ``recolor.model``  the registry name,
* ``recolor.config`` the full model config as JSON (so the file alone rebuilds the network),
* ``recolor.format`` this format's version,
* ``recolor.kind``   ``"weights"`` (inference export: generator only, usually fp16, a tensor with
  values beyond fp16's range kept fp32) or ``"training"`` (every network of a recipe, prefixed ``<network>.``),
* ``recolor.extra``  JSON with anything else (training step, validation figures, statistics),
* ``recolor.sha256`` a SHA-256 of the tensors (names, dtypes, shapes, bytes), verified on load;
  files written before it existed have none and load unverified.

A training run's other state (:class:`RunState`: every optimiser's state, the random streams, the
loss scale) goes into a second safetensors file beside the training checkpoint: its tensors
flattened, the optimisers' structure and the other facts as JSON metadata, the training step it
belongs to (``recolor.step``) and the same checksum (``training/checkpointing.py`` names the
pair). Nothing is ever unpickled. Every write is atomic (temporary file, fsync, rename).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as safetensors_load_file
from safetensors.torch import save

from .imageio import atomic_write_bytes
from .model_cost import declared_bytes
from .registry import get_model_spec
from .shipped import weights_dirs  # noqa: F401 (re-exported)

FORMAT_VERSION = "1"
CHECKPOINT_NAME = "last.safetensors"  # a training run's latest checkpoint in its run folder (what --resume reads)
EMA_PREFIX = "ema"  # training checkpoints keep the moving average of the generator under this prefix (--ema)
_KEY_MODEL, _KEY_CONFIG, _KEY_FORMAT, _KEY_KIND, _KEY_EXTRA = (
    "recolor.model", "recolor.config", "recolor.format", "recolor.kind", "recolor.extra",
)
_KEY_CHECKSUM, _KEY_STEP = "recolor.sha256", "recolor.step"
_KEY_OPTIMIZERS, _KEY_RUN = "recolor.optimizers", "recolor.run"  # a run state's optimisers (structure) and other facts


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, or lacks the metadata that describes it."""


def _contiguous(tensors: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """CPU copies, floating tensors cast to ``dtype``, except one whose values the cast would turn
    into infinities (beyond fp16's 65,504): it stays as it is, which every loader reads as well."""
    out = {}
    for key, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            cast = tensor.to(dtype)
            if not (torch.isinf(cast) & torch.isfinite(tensor)).any():
                tensor = cast
        out[key] = tensor.contiguous()
    return out


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    atomic_write_bytes(path, save(tensors, metadata=metadata | {_KEY_CHECKSUM: tensors_checksum(tensors)}))


def save_checkpoint(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    model: str,
    config: dict[str, Any],
    kind: str = "weights",
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write tensors with recolor metadata, atomically. ``dtype`` casts floating tensors (fp16 export),
    each that fits in it."""
    metadata = {
        _KEY_MODEL: model,
        _KEY_CONFIG: json.dumps(dict(config), sort_keys=True),
        _KEY_FORMAT: FORMAT_VERSION,
        _KEY_KIND: kind,
        _KEY_EXTRA: json.dumps(extra or {}, sort_keys=True),
    }
    path = Path(path)
    _save_safetensors(path, _contiguous(tensors, dtype), metadata)
    return path


class Checkpoint:
    """A loaded checkpoint: ``model``, ``config``, ``kind``, ``extra`` and ``tensors``."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str],
                 shapes: dict[str, tuple[int, ...]] | None = None, tensor_bytes: int | None = None):
        self.path = path
        self.tensors = tensors
        # every tensor's shape, and the bytes of them all; a header-only read (read_checkpoint_header) has these and no tensors
        self.shapes = shapes if shapes is not None else {key: tuple(value.shape) for key, value in tensors.items()}
        self.tensor_bytes = tensor_bytes if tensor_bytes is not None else sum(value.nbytes for value in tensors.values())
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
        self._stored_checksum = metadata.get(_KEY_CHECKSUM)

    @property
    def sha256(self) -> str | None:
        """The SHA-256 of the file's tensors: the one stored in its metadata, or (a file written before
        checksums were stored) computed from the tensors read; None for a header-only read of such a file."""
        if self._stored_checksum:
            return self._stored_checksum
        return tensors_checksum(self.tensors) if self.tensors else None

    def sub_state(self, prefix: str, of: dict | None = None) -> dict:
        """Tensors (or, with ``of=self.shapes``, shapes) of one network of a training checkpoint (keys without the ``prefix.``)."""
        start = prefix + "."
        source = self.tensors if of is None else of
        return {key[len(start):]: value for key, value in source.items() if key.startswith(start)}

    def generator_state(self, of: dict | None = None) -> dict:
        """The generator to colorize with: of a training checkpoint, its moving average when it has one."""
        if self.kind != "training":
            return self.tensors if of is None else of
        return self.sub_state(EMA_PREFIX, of) or self.sub_state("generator", of)


def _read_safetensors(path: Path, what: str, header_only: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, tuple], int]:
    """(tensors, metadata, shapes, the bytes of tensors the header declares); with ``header_only``
    no tensor is read (tensors is empty)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            slices = {key: handle.get_slice(key) for key in handle.keys()}
            shapes = {key: tuple(piece.get_shape()) for key, piece in slices.items()}
            declared = declared_bytes((shapes[key], piece.get_dtype()) for key, piece in slices.items())
            tensors = {} if header_only else {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable safetensors {what} ({reason})") from None
    if not header_only and _KEY_CHECKSUM in metadata and tensors_checksum(tensors) != metadata[_KEY_CHECKSUM]:
        raise CheckpointError(f"{path}: corrupt {what} (its tensors do not match the checksum stored with them)")
    return tensors, metadata, shapes, declared


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    tensors, metadata, shapes, declared = _read_safetensors(path, "checkpoint")
    return Checkpoint(path, tensors, metadata, shapes, declared)


def read_checkpoint_header(path: str | Path) -> Checkpoint:
    """The checkpoint's metadata and tensor shapes, without reading (or verifying) any tensor."""
    path = Path(path)
    _, metadata, shapes, declared = _read_safetensors(path, "checkpoint", header_only=True)
    return Checkpoint(path, {}, metadata, shapes, declared)


# --- foreign state dicts (ImageNet encoders, classifiers) ----------------------------------------

def read_state_dict(path: str | Path, error: type[Exception] = CheckpointError, what: str = "weights",
                    hint: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a foreign weights file: ``.safetensors``, or a torch file read with ``weights_only=True``
    (never unpickled); a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper and a ``module.``
    (DataParallel) prefix are removed. Any problem is ``error`` with a one-line message."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file{hint}")
    try:
        if path.suffix == ".safetensors":
            state: Any = safetensors_load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign file: any reader error means "not a state dict we can read"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{path}: not a readable state dict ({reason[:200]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise error(f"{path}: does not hold a state dict (name -> tensor)")
    return {key.removeprefix("module."): value for key, value in state.items()}


# --- where shipped weights live ------------------------------------------------------------

def find_weights(name_or_path: str | Path) -> Path:
    """The shipped ``weights/<model>.safetensors`` for a registered model name, else a checkpoint path.

    A registered name wins over a file or folder of that name in the working directory (``--model
    pix2pix`` with a ``pix2pix/`` folder beside it); a path is a ``Path`` object, or a string with a
    folder separator or the ``.safetensors`` suffix (write ``./pix2pix`` for a file named so).
    """
    text = str(name_or_path)
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    is_path = isinstance(name_or_path, Path) or text.endswith(".safetensors") or any(sep in text for sep in separators)
    if not is_path and not Path(text).is_file():
        return shipped_weights(text)  # KeyError for unknown names
    if not is_path:
        with contextlib.suppress(KeyError):
            return shipped_weights(text)
    candidate = Path(name_or_path)
    if not candidate.is_file():
        raise CheckpointError(f"{candidate}: no such checkpoint file")
    return candidate


def shipped_weights(name: str) -> Path:
    """The shipped weights file of a registered model; KeyError for an unknown name, CheckpointError when none ships."""
    spec = get_model_spec(name)
    for folder in weights_dirs():
        path = folder / f"{spec.name}.safetensors"
        if path.is_file():
            return path
    raise CheckpointError(f"no shipped weights for model '{spec.name}': train them (`recolor train --model {spec.name}`) and load the weights file it writes by its path")


def weights_label(model: str, path: Path | None) -> str:
    """How a run names the weights it colorizes with: the model's name for its shipped weights (or
    no file at all), else the file's path, so that a user's own fine-tune is never taken for the
    shipped model it was trained from."""
    if path is None:
        return model
    with contextlib.suppress(KeyError, CheckpointError, OSError):
        if os.path.samefile(shipped_weights(model), path):
            return model
    return str(path)


def ships_weights(name: str) -> bool:
    """Whether :func:`shipped_weights` finds a file for the registered model ``name``."""
    try:
        shipped_weights(name)
    except CheckpointError:
        return False
    return True


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
    return tensors, {_KEY_OPTIMIZERS: json.dumps(structure)}


def tensors_to_optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, dict]:
    structure = json.loads(metadata[_KEY_OPTIMIZERS])
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


_RUN_PREFIX = "run."  # a run state's other tensors (random streams), beside the optimisers' "name/id/field"


@dataclass
class RunState:
    """What a training run needs besides its networks' weights: every optimiser's state, the step
    they belong to, and other tensors and JSON facts (random streams, the fp16 loss scale)."""

    optimizers: dict[str, dict]
    step: int | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def run_state_bytes(state: RunState) -> bytes:
    """The safetensors file of a run state (checksummed like a checkpoint), for an atomic write."""
    tensors, metadata = optimizer_state_to_tensors(state.optimizers)
    tensors |= {_RUN_PREFIX + key: value.detach().cpu().contiguous() for key, value in state.tensors.items()}
    metadata[_KEY_RUN] = json.dumps(state.facts)
    if state.step is not None:
        metadata[_KEY_STEP] = str(state.step)
    return save(tensors, metadata=metadata | {_KEY_CHECKSUM: tensors_checksum(tensors)})


def load_run_state(path: str | Path, step: int | None = None) -> RunState:
    """A run state; with ``step``, refused unless it was saved at that step (files without a step are not checked)."""
    path = Path(path)
    tensors, metadata, _, _ = _read_safetensors(path, "optimiser state")
    if _KEY_OPTIMIZERS not in metadata:
        raise CheckpointError(f"{path}: not a recolor optimiser-state file")
    stored = metadata.get(_KEY_STEP)
    if step is not None and stored is not None and stored != str(step):
        raise CheckpointError(f"{path}: optimiser state of step {stored} but the weights are of step {step} "
                              "(the run was stopped between the two writes); resuming would mix them: start the run again, "
                              "or fine-tune from its weights with --init-from")
    others = {key[len(_RUN_PREFIX):]: value for key, value in tensors.items() if key.startswith(_RUN_PREFIX)}
    optimizers = tensors_to_optimizer_state({key: value for key, value in tensors.items() if not key.startswith(_RUN_PREFIX)}, metadata)
    try:
        facts = json.loads(metadata.get(_KEY_RUN, "{}"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc.msg})") from None
    return RunState(optimizers, int(stored) if stored is not None else None, others, facts)


def save_optimizer_states(path: str | Path, states: dict[str, dict], step: int | None = None) -> None:
    """Write optimiser states alone; ``step`` (the training step they belong to) is checked on load."""
    atomic_write_bytes(Path(path), run_state_bytes(RunState(states, step)))


def load_optimizer_states(path: str | Path, step: int | None = None) -> dict[str, dict]:
    """The optimiser states of a run-state file (see :func:`load_run_state`)."""
    return load_run_state(path, step).optimizers
