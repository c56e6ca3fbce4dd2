"""Device and mixed-precision choices shared by inference and training (bottom layer: imports torch only)."""
from __future__ import annotations

from pathlib import Path

import torch

# x86 feature flags (Linux /proc/cpuinfo) of CPUs that compute in bf16 natively: AVX-512 BF16
# (Cooper Lake, Zen 4 on) and AMX (Sapphire Rapids on). torch's get_cpu_capability() names only the
# vector width its kernels were built for (AVX512), never these.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
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


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them in ``cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":  # the first processor's: all cores of a machine share them
            return frozenset(value.split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (autocast then runs about 2x faster than fp32)."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return "AVX512_BF16" in capability or "AMX" in capability or bool(NATIVE_BF16_FLAGS & cpu_flags())


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
