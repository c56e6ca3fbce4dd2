"""`recolor colorize` on an idle and on a loaded machine: the same photos, with and without busy processes.

A machine's other work should cost the tool its fair share of the CPUs and no more. Thread
oversubscription costs far more than that: OpenMP threads that wait for each other at every
operator's barrier while the kernel gives their cores to another process made 20 photos take
17-22 s instead of 0.7-0.8 s (issue 28). This runs the command line as a user does, in a child
process on this process's CPUs (``os.sched_getaffinity``; run it under ``taskset``), first alone
and then beside ``--busy`` processes that spin on the same CPUs, and prints both figures: the
colorize time the tool itself reports on its summary line (the model's loading excluded) and the
whole command's wall time.

    taskset -c 1 python benchmarks/bench_loaded.py                  # 20 photos of ../shared/data/photos/val, 2 busy processes
    taskset -c 2,3 python benchmarks/bench_loaded.py --threads 2    # any recolor colorize option after the known ones

The fair-share figure is what the loaded run would take if the tool lost nothing but its share:
its threads and the busy processes, one per CPU at a time, split the CPUs evenly.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, machine  # noqa: E402

SUMMARY = re.compile(r"colorized, .* in ([0-9.]+) s ")


@contextmanager
def busy_processes(count: int, cpus: set[int]):
    """``count`` processes spinning on ``cpus`` (as the other jobs of a busy machine), stopped afterwards."""
    spin = "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')})\nwhile True: pass"
    children = [subprocess.Popen([sys.executable, "-c", spin, ",".join(map(str, sorted(cpus)))]) for _ in range(count)]
    try:
        time.sleep(0.5)  # running before the tool starts
        yield
    finally:
        for child in children:
            child.kill()
            child.wait()


def run_tool(files: list[Path], out: Path, extra: list[str]) -> tuple[float, float]:
    """(colorize seconds the tool reports, the command's wall seconds) for one run of ``recolor colorize``."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("OMP_NUM_THREADS", None)  # the tool's own choice is what is measured
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "recolor.cli", "colorize", *map(str, files), "-o", str(out), "-q", *extra],
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    match = SUMMARY.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"recolor colorize failed ({done.returncode}): {done.stderr[-2000:]}")
    return float(match.group(1)), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="photos (from ../shared/data/photos/val)")
    parser.add_argument("--busy", type=int, default=2, help="busy processes on the same CPUs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (the median is printed)")
    args, extra = parser.parse_known_args()
    files = sorted((SHARED / "val").glob("*.jpg"))[: args.count]
    if len(files) < args.count:
        sys.exit(f"needs {args.count} photos in {SHARED / 'val'}")
    cpus = os.sched_getaffinity(0)
    print(f"{machine()}; CPUs of this run: {sorted(cpus)}; {len(files)} photos; recolor colorize {' '.join(extra)}".rstrip())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        run_tool(files[:2], out, extra)  # warm the file cache and the model file
        idle, loaded = [], []
        for _ in range(args.repeat):  # alternated, so that a drift in the machine's other load hits both alike
            idle.append(run_tool(files, out, extra))
            with busy_processes(args.busy, cpus):
                loaded.append(run_tool(files, out, extra))
    for label, runs in (("idle", idle), (f"loaded ({args.busy} busy)", loaded)):
        print(f"{label:>18}: colorize {statistics.median(r[0] for r in runs):6.2f} s, command {statistics.median(r[1] for r in runs):6.2f} s"
              f"   (runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")
    ratio = statistics.median(r[0] for r in loaded) / statistics.median(r[0] for r in idle)
    fair = (len(cpus) + args.busy) / len(cpus)  # the CPUs split evenly between the busy processes and the tool's share
    print(f"loaded / idle: {ratio:.1f}x (the fair share alone would be {fair:.1f}x; target: within 2x)")


if __name__ == "__main__":
    main()
