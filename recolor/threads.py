"""How many threads the tool computes with: the CPUs it may use, less those other work keeps busy.

torch's intra-op threads meet at a barrier after every operator. When there are more of them than
free CPUs, the kernel gives a CPU to another process in the middle of an operator and the other
threads wait for it at the barrier, for the rest of that process's time slice, at every
operator: with two busy processes on a two-core machine, 20 photos took 17-22 s instead of
0.7-0.8 s (issue 28), where one thread would have lost only its fair share. So the default is
the CPUs this process may run on (``os.sched_getaffinity``: ``taskset``, a container's or a
scheduler's CPU set, not the machine's count) less the CPUs that other processes kept busy in a
short sample at start (``/proc/stat``; Linux), and at least one. ``--threads N`` (or
:func:`use_threads`) sets it. The decoding and saving threads of :mod:`recolor.pipeline` take
their count from the same figure. Bottom layer: imports torch only when setting it.
"""
from __future__ import annotations

import sys

import os
import time
from pathlib import Path

from .options import OptionError

SAMPLE_SECONDS = 0.1  # long enough for a spinning process to show, short beside the model's loading


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over ``cpus`` from /proc/stat; None where it cannot be read."""
    busy = total = 0.0
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(value) for value in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return (busy, total) if total else None


def busy_cpus(seconds: float = SAMPLE_SECONDS) -> float:
    """How many of this process's CPUs other work kept busy over ``seconds`` (0 where it cannot be measured)."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return 0.0
    before = _cpu_times(cpus)
    time.sleep(seconds)  # this process sleeps meanwhile: what is busy is someone else's
    after = _cpu_times(cpus)
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


def default_threads() -> int:
    """The usable CPUs less those other processes keep busy, at least one."""
    cpus = usable_cpus()
    return max(1, min(cpus, round(cpus - busy_cpus()))) if cpus > 1 else 1


_CHOSEN: int | None = None  # what use_threads chose, for the engines and threads that do not ask torch


def use_threads(threads: int | None = None) -> int:
    """Compute with ``threads`` intra-op threads (default :func:`default_threads`); returns the count.

    torch is not imported for it (the ONNX engine's start-up never loads torch): when torch is
    loaded already its thread count is set, else OMP_NUM_THREADS, which torch reads on import."""
    global _CHOSEN
    if threads is not None and threads < 1:
        raise OptionError("threads", threads, "must be at least 1")
    count = threads or default_threads()
    _CHOSEN = count
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)
    else:
        os.environ["OMP_NUM_THREADS"] = str(count)
    return count


def chosen_threads() -> int:
    """The compute threads :func:`use_threads` chose (or would choose)."""
    return _CHOSEN or default_threads()
