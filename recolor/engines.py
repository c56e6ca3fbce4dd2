"""Which engine colorizes: torch (:class:`recolor.inference.Colorizer`) or ONNX Runtime
(:class:`recolor.onnx_engine.OnnxColorizer`). Choosing imports neither torch nor onnxruntime.

``auto`` takes ONNX Runtime on the CPU where the model has an up-to-date export (the shipped
default does: weights/effnet-unet.onnx) and nothing asks for torch's options, torch otherwise:
CUDA stays torch, batched. ``onnx`` insists (a one-line error says how to get an export);
``torch`` is the engine that training, diverse sampling, evaluation and ``suggest`` use.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

from . import DEFAULT_MODEL

ENGINES = ("auto", "onnx", "torch")


def cuda_present() -> bool:
    """Whether the CUDA driver sees a GPU (what ``--device auto`` would pick), asked of the driver
    itself: torch.cuda.is_available() would import torch, seconds of start-up."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    except (OSError, AttributeError):  # no driver (macOS, a machine without a GPU)
        return False


def onnx_refusal(device: str, precision: str, compile: bool) -> str | None:
    """Why these options need the torch engine (None when ONNX Runtime on the CPU can serve them)."""
    if device not in ("auto", "cpu"):
        return f"--device {device}: the ONNX engine runs on the CPU (use --engine torch for {device})"
    if precision not in ("auto", "fp32"):
        return f"--precision {precision}: the ONNX engine computes in fp32 (use --engine torch)"
    if compile:
        return "--compile is torch's (use --engine torch)"
    return None


def load_colorizer(model: str | Path = DEFAULT_MODEL, engine: str = "auto", device: str = "auto", size: int | None = None,
                   precision: str = "auto", compile: bool = False, chroma: float = 1.0, **torch_options):
    """A colorizer of ``model`` on ``engine`` (auto, onnx, torch): see the module's doc. Raises
    KeyError, CheckpointError or ValueError (OnnxEngineError for ``onnx`` without a usable export),
    each with a one-line message."""
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine}: use auto, onnx or torch")
    if engine != "torch":
        from .onnx_engine import OnnxColorizer, OnnxEngineError

        refusal = onnx_refusal(str(device), precision, compile) or (
            f"{', '.join(torch_options)}: the torch engine's options (use engine='torch')" if torch_options else None)
        if engine == "onnx" and refusal:
            raise ValueError(refusal)
        if engine == "onnx" or (refusal is None and not (device == "auto" and cuda_present())):
            try:
                return OnnxColorizer.load(model, size=size, chroma=chroma)
            except OnnxEngineError:
                if engine == "onnx" or str(model).endswith(".onnx"):
                    raise
    from .inference import Colorizer

    return Colorizer.load(model, engine="torch", device=device, size=size, precision=precision, compile=compile, chroma=chroma, **torch_options)
