"""One save/load pair for a model's inference network, in the spirit of diffusers'
``save_pretrained`` / ``from_pretrained``: a weights file carries the model's name and config, so
:func:`load_pretrained` rebuilds the network from the file alone (a registered name loads its
shipped weights), and :func:`save_pretrained` writes one. The CLI, ``Colorizer``, the diverse
samplers, evaluation, the training loop's export, the benchmarks and the tests all use these.

Loading checks an untrusted file before allocating anything: the config's values against the
model's architecture defaults, the bytes and parameters the header declares and what one photo
costs against recolor's bounds (``model_cost.py``), the tensor shapes against a build on the meta
device; then the tensors' checksum and that they are finite.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .checkpoint import Checkpoint, CheckpointError, find_weights, load_checkpoint, read_checkpoint_header, save_checkpoint, shipped_weights
from .model_cost import TooCostly, check_declared_bytes, check_input_cost, check_parameters
from .registry import Config, ModelSpec, get_model_spec


@dataclass
class Pretrained:
    """A model rebuilt from a weights file: its spec, its architecture config and its network (fp32, eval mode)."""

    spec: ModelSpec
    config: Config
    network: nn.Module
    checkpoint: Checkpoint

    @property
    def path(self) -> Path:
        return self.checkpoint.path


def checked_model(checkpoint: Checkpoint, zero_started_may_lack: bool = False, measure_input: bool = True) -> tuple[ModelSpec, Config]:
    """The model spec and architecture config of a checkpoint (tensors loaded or header only), or CheckpointError.

    The config's values are checked against the model's defaults; the bytes the header declares,
    the generator's size, its tensor shapes in the file against a build on the meta device, that
    its ``image_size`` fits the network and, with ``measure_input``, what one photo at that size
    costs (``model_cost.py``, a forward pass on the meta device), before anything is allocated.
    ``zero_started_may_lack``: a file to fine-tune from may lack the modules a newer network starts
    at zero (its ``zero_started`` prefixes: hint branches); training builds them as they start.
    """
    stored = checkpoint.generator_state(checkpoint.shapes)
    try:
        spec = get_model_spec(checkpoint.model)
        config = spec.architecture_config(checkpoint.config)
        check_declared_bytes(checkpoint.tensor_bytes)
        check_parameters(stored.values())
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint.path}: {exc.args[0] if exc.args else exc}") from None
    network = spec.meta_network(config)
    expected = {key: tuple(value.shape) for key, value in network.state_dict().items()}
    if zero_started_may_lack:
        prefixes = tuple(getattr(network, "zero_started", ()))
        expected = {key: shape for key, shape in expected.items() if key in stored or not key.startswith(prefixes)}
    if stored != expected:
        wrong = sorted(set(stored) ^ set(expected)) or sorted(key for key in stored if stored[key] != expected[key])
        raise CheckpointError(f"{checkpoint.path}: tensors do not fit model '{spec.name}' with its stored config "
                              f"({len(wrong)} differ, first '{wrong[0]}')")
    try:
        check_input_cost(network, config, measure=measure_input)
    except TooCostly as exc:
        raise CheckpointError(f"{checkpoint.path}: {exc}") from None
    return spec, config


def network_from_checkpoint(checkpoint: Checkpoint) -> Pretrained:
    """Build the checkpoint's inference network and load its weights (a training checkpoint gives its EMA when it has one)."""
    return _checked_network(checkpoint, *checked_model(checkpoint))


def _checked_network(checkpoint: Checkpoint, spec: ModelSpec, config: Config) -> Pretrained:
    """The network of a checkpoint whose model :func:`checked_model` has accepted, with its weights."""
    state = checkpoint.generator_state()
    if not all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point()):
        raise CheckpointError(f"{checkpoint.path}: weights contain NaN or infinite values (a corrupt or diverged model)")
    # fp16 weights become fp32; integer buffers (BatchNorm's batch counter) keep their dtype
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    try:
        network = _network_with_weights(spec, config, state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{checkpoint.path}: weights do not fit model '{spec.name}' with its stored config ({first})") from None
    return Pretrained(spec, config, network.float().eval(), checkpoint)


def _network_with_weights(spec: ModelSpec, config: Config, state: dict[str, torch.Tensor]) -> nn.Module:
    """The network built with ``state`` as its weights, skipping the random initialisation the file overwrites.

    Built on the meta device and given the file's tensors (diffusers' ``low_cpu_mem_usage`` idea):
    a one-photo ``recolor colorize`` no longer spends a tenth of a second drawing pix2pix's random
    weights. A network whose constructor makes a tensor it does not store (a non-persistent buffer
    from a torch factory function) would keep it on the meta device, so such a network is built for
    real instead. (effnet-unet's ab-bin centres are such a buffer, but made from a cached CPU tensor.)
    """
    with torch.device("meta"):
        network = spec.build(config)
    network.load_state_dict(state, assign=True)
    if any(tensor.is_meta for tensor in (*network.parameters(), *network.buffers())):
        network = spec.build(config)
        network.load_state_dict(state)
    return network


def load_pretrained(name_or_path: str | Path) -> Pretrained:
    """A registered model's shipped weights, or a ``.safetensors`` file; KeyError (unknown name) or CheckpointError, one line each."""
    path = find_weights(name_or_path)
    # an untrusted file is checked before its tensors are read; the weights recolor ships skip the meta
    # forward pass (a fifth of a second for effnet-unet), which the tests run on each of them instead
    spec, config = checked_model(read_checkpoint_header(path), measure_input=not _is_shipped(name_or_path, path))
    # not checked again once read: the shapes are the header's, and loading them into the network checks them too
    return _checked_network(load_checkpoint(path), spec, config)


def _is_shipped(name_or_path: str | Path, path: Path) -> bool:
    """Whether ``path`` is the file recolor ships for the model named ``name_or_path``."""
    try:
        return not isinstance(name_or_path, Path) and path == shipped_weights(name_or_path)
    except (KeyError, CheckpointError):
        return False


def save_pretrained(path: str | Path, network: nn.Module, model: str, config: Mapping[str, Any],
                    extra: dict[str, Any] | None = None, dtype: torch.dtype | None = torch.float16) -> Path:
    """Write an inference network as a self-describing weights file (fp16 by default), atomically."""
    return save_checkpoint(path, network.state_dict(), model, dict(config), kind="weights", extra=extra, dtype=dtype)
