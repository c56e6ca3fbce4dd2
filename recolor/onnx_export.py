"""``recolor export``: a model's network as an ONNX file that ONNX Runtime runs alone.

The graph is the network and its output's conversion to normalised ab (``ModelSpec.predict_ab``,
so paper 000's RGB output is converted inside it): inputs ``lightness`` (B, 1, H, W), for a
hint-taking network also ``local_hints`` (B, 3, H, W) and ``global_hints`` (B, G) (zeros: no
hints); output ``ab`` (B, 2, h, w). Batch and image size are dynamic where the network allows
(checked by running a second size; otherwise the size is fixed at the model's own). The file's
metadata (:class:`recolor.onnx_engine.OnnxModelInfo`) names the model, its config, recolor's
version, the inputs and outputs, the normalisation and the SHA-256 of the weights it came from.

Before anything is written, ONNX Runtime's output is checked against torch's on a batch of two
smooth random photos (with random hints for a hint-taking network) at the model's size and, for a
dynamic export, at a second, non-square size: the largest |ab| difference must be at most
:data:`TOLERANCE`. The file is written atomically, and never over an existing one unless asked.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .imageio.atomic import atomic_write_bytes
from .onnx_engine import (
    AB_OUTPUT, GLOBAL_HINTS_INPUT, LIGHTNESS_INPUT, LOCAL_HINTS_INPUT, NORMALISATION, OnnxModelInfo, file_sha256, session_options,
)
from .pretrained import Pretrained, load_pretrained

TOLERANCE = 1e-3  # largest |ab| difference (normalised) allowed between ONNX Runtime and torch
OPSET = 17


class ExportError(ValueError):
    """A model that cannot be exported, or an export that does not match torch: one line."""


@dataclass
class ExportReport:
    path: Path
    info: OnnxModelInfo
    max_difference: float
    bytes: int


class _AbNetwork(nn.Module):
    """The network with its output converted to normalised ab: what the engines consume."""

    def __init__(self, pretrained: Pretrained) -> None:
        super().__init__()
        self.spec, self.network = pretrained.spec, pretrained.network

    def forward(self, lightness: torch.Tensor, *hints: torch.Tensor) -> torch.Tensor:
        return self.spec.predict_ab(self.network, lightness, hints)


def check_target(target: Path, overwrite: bool) -> None:
    """ExportError before any work for a target that cannot or must not be written."""
    if target.suffix != ".onnx":
        raise ExportError(f"{target}: the output file must end in .onnx")
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists (pass --overwrite to replace it)")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"{target}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ExportError(f"{target}: cannot write there (permission denied)")


def example_inputs(batch: int, height: int, width: int, hints: bool, global_length: int,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Smooth random lightness in [-1, 1] (and random hints): a photo-like input for the check."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, max(2, height // 16), max(2, width // 16), generator=generator)
    lightness = nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False) * 2 - 1
    if not hints:
        return (lightness,)
    local = torch.zeros(batch, 3, height, width)
    for index in range(batch):
        for _ in range(4):
            row, column = (int(torch.randint(0, size - 5, (1,), generator=generator)) for size in (height, width))
            local[index, :2, row:row + 5, column:column + 5] = (torch.rand(2, 1, 1, generator=generator) * 2 - 1) * 0.6
            local[index, 2, row:row + 5, column:column + 5] = 1
    return lightness, local, torch.rand(batch, global_length, generator=generator)


def _onnx_bytes(module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str], dynamic_size: bool) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    dynamic = {name: (axes if name != GLOBAL_HINTS_INPUT else {0: "batch"}) for name in names}
    dynamic[AB_OUTPUT] = {0: "batch", 2: "out_height", 3: "out_width"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the tracer's warnings about constants are about shapes, which the check covers
        warnings.simplefilter("ignore")
        # unfolded, the initialisers stay the weights file's own tensors (BatchNorm is not folded into
        # the convolutions), which halves() can then store as they were stored; ONNX Runtime folds
        # and fuses them when it loads the file
        torch.onnx.export(module, inputs, buffer, input_names=names, output_names=[AB_OUTPUT], dynamic_axes=dynamic,
                          opset_version=OPSET, dynamo=False, do_constant_folding=False)
    import onnx

    graph = onnx.load_from_string(buffer.getvalue())
    softmax_over_channels_last(graph)
    halves(graph)
    return graph.SerializeToString()


def halves(graph) -> None:
    """Store every float32 initialiser that fp16 holds exactly (a shipped weights file's fp16
    tensors, widened) as fp16 with a Cast back to float32 in front of the graph: lossless, half
    the file (the shipped default's export is the size of its safetensors file), and ONNX Runtime
    computes in float32 as before (it folds the casts when it loads the file)."""
    from onnx import TensorProto, helper, numpy_helper

    casts = []
    for initializer in list(graph.graph.initializer):
        if initializer.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        half = values.astype(np.float16)
        if values.size < 16 or not np.array_equal(half.astype(np.float32), values):
            continue
        stored = numpy_helper.from_array(half, f"{initializer.name}.fp16")
        graph.graph.initializer.remove(initializer)
        graph.graph.initializer.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [initializer.name], to=TensorProto.FLOAT))
    for cast in reversed(casts):
        graph.graph.node.insert(0, cast)


def softmax_over_channels_last(graph) -> None:
    """Rewrite a classification head's ``Softmax(axis=1)`` over (B, Q, h, w) logits followed by the
    expectation ``Einsum("bqhw,qc->bchw")`` (the default model's annealed mean over its ab bins) as
    Transpose -> Softmax over the last axis -> MatMul -> Transpose: the same numbers, but ONNX
    Runtime's softmax over a middle axis transposes the tensor back and forth itself and its einsum
    does not reach the matrix-multiply kernel (measured: 23% of the default model's time)."""
    from onnx import helper

    consumers: dict[str, list] = {}
    for node in graph.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes = list(graph.graph.node)
    for softmax in nodes:
        axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"), None)
        users = consumers.get(softmax.output[0], [])
        if softmax.op_type != "Softmax" or axis != 1 or len(users) != 1 or users[0].op_type != "Einsum":
            continue
        einsum = users[0]
        equation = next(helper.get_attribute_value(a) for a in einsum.attribute if a.name == "equation")
        if equation.replace(b" ", b"") != b"bqhw,qc->bchw" or einsum.input[0] != softmax.output[0]:
            continue
        base = softmax.output[0]
        replacement = [
            helper.make_node("Transpose", [softmax.input[0]], [f"{base}.channels_last"], perm=[0, 2, 3, 1]),
            helper.make_node("Softmax", [f"{base}.channels_last"], [f"{base}.probabilities"], axis=-1),
            helper.make_node("MatMul", [f"{base}.probabilities", einsum.input[1]], [f"{base}.expectation"]),
            helper.make_node("Transpose", [f"{base}.expectation"], [einsum.output[0]], perm=[0, 3, 1, 2]),
        ]
        graph.graph.node.remove(softmax)
        position = list(graph.graph.node).index(einsum)  # after the einsum's other input is made
        graph.graph.node.remove(einsum)
        for offset, node in enumerate(replacement):
            graph.graph.node.insert(position + offset, node)


def _largest_difference(session, module: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str]) -> float:
    with torch.no_grad():
        expected = module(*inputs).float().numpy()
    got = session.run([AB_OUTPUT], {name: tensor.numpy() for name, tensor in zip(names, inputs)})[0]
    if got.shape != expected.shape:
        raise ExportError(f"ONNX Runtime's output is {got.shape}, torch's {expected.shape}")
    return float(np.abs(got - expected).max())


def export_onnx(model: str | Path, target: Path, overwrite: bool = False) -> ExportReport:
    """Export ``model`` (a name or a ``.safetensors`` file) to ``target`` and check it (see the module's doc)."""
    import onnx
    import onnxruntime

    check_target(target, overwrite)
    pretrained = load_pretrained(model)
    network = pretrained.network.float().eval()
    module = _AbNetwork(pretrained).eval()
    size = int(pretrained.config.get("image_size", 256))
    multiple = int(getattr(network, "multiple", 1))
    hints = bool(getattr(network, "takes_hints", False))
    global_length = 0
    if hints:
        from .hints import global_hint_length

        global_length = global_hint_length()
    names = [LIGHTNESS_INPUT] + ([LOCAL_HINTS_INPUT, GLOBAL_HINTS_INPUT] if hints else [])
    own = example_inputs(2, size, size, hints, global_length)
    # a second, non-square size shows whether the graph really is size-independent
    step = max(multiple, 8)
    other = example_inputs(1, size + step, max(step, size - step), hints, global_length, seed=1)
    torch.set_grad_enabled(False)
    try:
        for dynamic_size in (True, False):
            try:
                data = _onnx_bytes(module, own, names, dynamic_size)
            except Exception as exc:  # noqa: BLE001 - the exporter's many failure types, reported in one line
                raise ExportError(f"model '{pretrained.spec.name}' cannot be exported to ONNX "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
            options = session_options()
            options.log_severity_level = 4  # a size the graph cannot take is an expected answer here, not an error to print
            session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            difference = _largest_difference(session, module, own, names)
            if not dynamic_size:
                break
            try:
                difference = max(difference, _largest_difference(session, module, other, names))
                break
            except Exception:  # noqa: BLE001 - the graph fixed a size somewhere: export at the model's size
                continue
    finally:
        torch.set_grad_enabled(True)
    if not difference <= TOLERANCE:
        raise ExportError(f"model '{pretrained.spec.name}': ONNX Runtime differs from torch by {difference:.2e} in ab (limit {TOLERANCE:g}); nothing written")
    info = OnnxModelInfo(
        model=pretrained.spec.name, config=pretrained.config, version=__version__, inputs=names, outputs=[AB_OUTPUT],
        normalisation={name: NORMALISATION[name] for name in names + [AB_OUTPUT]}, weights_sha256=file_sha256(pretrained.path),
        image_size=size, multiple=multiple, global_hint_length=global_length, dynamic_size=dynamic_size,
    )
    graph = onnx.load_from_string(data)
    graph.doc_string = f"recolor {__version__}: {pretrained.spec.name} from {pretrained.path.name}"
    onnx.helper.set_model_props(graph, info.to_metadata())
    data = graph.SerializeToString()
    atomic_write_bytes(target, data)
    return ExportReport(target, info, difference, len(data))
