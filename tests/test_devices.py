"""Issue 29 (packaging 2): precision "auto" picks bf16 on CPUs with native bf16, found from the CPU's flags."""
from __future__ import annotations

import pytest
import torch

from recolor import devices

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f {extra}
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse2 avx2 avx512f {extra}
"""


@pytest.mark.parametrize("extra, native", [("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False)])
def test_cpu_flags_are_read_from_cpuinfo(tmp_path, extra, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    flags = devices.cpu_flags(cpuinfo)
    assert {"fpu", "sse2", "avx2", "avx512f", *extra.split()} == flags
    assert bool(devices.NATIVE_BF16_FLAGS & flags) is native


def test_no_cpuinfo_means_no_flags(tmp_path):
    assert devices.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("flags, expected", [({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16), ({"avx2", "amx_bf16"}, torch.bfloat16),
                                             ({"avx2", "avx512f"}, None), (set(), None)])
def test_auto_precision_follows_the_cpus_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(devices, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": frozenset(flags))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")  # what torch says on such CPUs
    assert devices.resolve_precision("auto", torch.device("cpu")) is expected
    assert devices.resolve_precision("fp32", torch.device("cpu")) is None  # an explicit choice stays
