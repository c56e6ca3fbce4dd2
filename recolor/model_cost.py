"""What a model file may make recolor spend, judged from its header and a build on the meta device.

A model file is untrusted. Each config value is checked on its own (``registry.check_config_value``),
but values within their ranges can still add up to a network no machine holds: a consistent file
declaring ``num_downs`` 14 asks for 16,384 px inputs, ``ngf`` 700 for 4.5 billion parameters, and a
sparse file can declare 20 GB of zeros in 0 bytes on disk. These bounds refuse such a file before
any tensor is read:

* :data:`MAX_TENSOR_BYTES`: the tensors a file declares, all of them (a training checkpoint's
  critic and weight average are read too): 2 GiB;
* :data:`MAX_PARAMETERS`: the generator's tensors: 2**27 elements (134M, 512 MiB in fp32; the
  largest default network, divcolor-skip, has 58M, pix2pix 54M);
* the input size: the config's ``image_size`` must be a size the network takes (a multiple of its
  ``multiple``, as ``recolor train`` requires), so that a file cannot ask for inputs far larger
  than it says;
* :data:`MAX_ACTIVATION_BYTES`: the outputs of every layer for one photo at that size, in fp32, from
  a forward pass on the meta device (shapes only): 4 GiB (the default effnet-unet needs 137 MiB at
  256 px; pix2pix at 2,048 px, the largest ``image_size``, 3.2 GiB).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .registry import Config

MAX_TENSOR_BYTES = 2 * 2**30
MAX_PARAMETERS = 2**27
MAX_ACTIVATION_BYTES = 4 * 2**30

# bytes per element of the safetensors dtypes (an unknown one counts as 8, the most)
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
                "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


class TooCostly(ValueError):
    """A model file asks for more memory than recolor allows (one line, without the file's name)."""


def _gib(count: float) -> str:
    return f"{count / 2**30:.3g} GiB"


def declared_bytes(shapes_and_dtypes: Iterable[tuple[tuple[int, ...], str]]) -> int:
    """The bytes of tensors as a safetensors header declares them (shape, dtype name)."""
    return sum(math.prod(shape) * _DTYPE_BYTES.get(dtype, 8) for shape, dtype in shapes_and_dtypes)


def check_declared_bytes(total: int) -> None:
    if total > MAX_TENSOR_BYTES:
        raise TooCostly(f"its tensors declare {_gib(total)}, more than the {_gib(MAX_TENSOR_BYTES)} a model file may hold")


def check_parameters(shapes: Iterable[tuple[int, ...]]) -> None:
    count = sum(math.prod(shape) for shape in shapes)
    if count > MAX_PARAMETERS:
        raise TooCostly(f"its network has {count:,} parameters, more than the {MAX_PARAMETERS:,} recolor loads")


def check_input_cost(network: nn.Module, config: Config, measure: bool = True) -> None:
    """The network (built on the meta device) takes ``image_size`` inputs, and (``measure``) one
    photo's layer outputs at that size stay within :data:`MAX_ACTIVATION_BYTES`."""
    size, multiple = int(config.get("image_size", 256)), int(getattr(network, "multiple", 1))
    if size < multiple or size % multiple:
        raise TooCostly(f"image_size {size} does not fit its network, which takes multiples of {multiple} px "
                        "(`recolor train` writes no such file)")
    total = layer_output_bytes(network, size) if measure else 0
    if total > MAX_ACTIVATION_BYTES:
        raise TooCostly(f"its layers' outputs for one {size} px photo take {_gib(total)}, more than the {_gib(MAX_ACTIVATION_BYTES)} recolor allows")


def layer_output_bytes(network: nn.Module, size: int) -> int:
    """The bytes of every leaf module's output for one fp32 photo of ``size`` x ``size`` (the
    network and the input on the meta device: no memory is spent, nothing is computed)."""
    total = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal total
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()

    # a meta build keeps a buffer made from an existing CPU tensor (effnet-unet's ab-bin centres) on
    # the CPU, and a forward may make tensors of its own: everything goes to, and is made on, the meta device
    network.to("meta")
    hooks = [module.register_forward_hook(count) for module in network.modules() if not any(True for _ in module.children())]
    training = network.training
    try:
        network.eval()
        with torch.no_grad(), torch.device("meta"):
            network(torch.empty(1, 1, size, size))
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TooCostly(f"its network does not run on a {size} px photo ({first[:200]})") from None
    finally:
        for hook in hooks:
            hook.remove()
        network.train(training)
    return total
