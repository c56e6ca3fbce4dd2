"""Device and mixed-precision choices shared by inference and training (bottom layer: imports torch only)."""
from __future__ import annotations

import torch

from .options import OptionError


def resolve_device(name: str) -> torch.device:
    """auto, cpu, cuda, cuda:N (or mps where torch has it), or a one-line :class:`~recolor.options.OptionError` (a ValueError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError("device", name, "unknown device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", name, "no CUDA device is available (auto uses the CPU then)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise OptionError("device", name, f"there are only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError("device", name, "this machine has no Apple MPS device (use auto, cpu, cuda or cuda:N)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise OptionError("device", name, "not supported (use auto, cpu, cuda or cuda:N)")
    return device


def cpu_has_native_bf16() -> bool:
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return "AVX512_BF16" in capability or "AMX" in capability


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 on CPUs with native bf16 (AVX-512 bf16, AMX: ~2x faster) and on
    bf16-capable GPUs; fp32 on other CPUs, where bf16 is emulated and several times slower."""
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise OptionError("precision", name, "unknown precision (auto, fp32, bf16, fp16)")
    if name == "fp16" and device.type != "cuda":
        raise OptionError("precision", name, "fp16 autocast needs CUDA; use bf16 on the CPU")
    return table[name]
