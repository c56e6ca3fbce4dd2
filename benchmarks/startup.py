"""Start-up: `recolor --help` and a one-photo `recolor colorize`, this checkout against another, side by side.

Each repeat runs every scenario once in each checkout, alternately, as fresh processes
(``python -m recolor.cli ...`` with the checkout as working directory, so each imports its own
package). Reported per scenario: the median wall time and the median CPU time (user + system
of the child) over the repeats, and the ratio baseline / this checkout. On a machine loaded by
other work the wall times swing with the load; the CPU times and the ratios, measured
alternately, are the figures to compare.

The one-photo colorize is scikit-image's astronaut (512 x 512) saved as a grey PNG, colorized
with the default model from the checkout's own ``weights/`` (``--model`` picks another).
Two floors are measured alongside: the interpreter's own start (``python -c pass``, with the
site packages' ``.pth`` files), below which ``--help`` cannot go, and ``import torch``, below which
no command that runs a network can go. The table also gives each speed-up of what recolor adds on
top of its floor (the time above it).
``--importtime`` also prints, per scenario and checkout, the modules that took longest to import
(``python -X importtime``: wall time, inflated under load, but it names where the time goes).

    python benchmarks/startup.py --baseline main          # main as committed (git archive), 5 repeats
    python benchmarks/startup.py --baseline 66de7b5 --baseline main   # several refs, each against the first
    python benchmarks/startup.py --baseline-dir ../main   # another working tree as it is
    python benchmarks/startup.py --repeats 3 --model pix2pix --importtime
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERPRETER = "python -c pass (the floor)"
TORCH = "python -c 'import torch' (the floor of a run)"


def export_ref(ref: str, folder: Path) -> Path:
    """The files of git ref ``ref`` of this repository, written into ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True, check=True)
    target = folder / f"recolor-{ref.replace('/', '_')}"
    target.mkdir()
    with tempfile.TemporaryFile() as handle:
        handle.write(archive.stdout)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(target, filter="data")
    return target


def grey_photo(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / "astronaut_grey.png"
    Image.fromarray(data.astronaut()).convert("L").save(path)
    return path


def timed_run(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; raises when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} in {cwd} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def slowest_imports(command: list[str], cwd: Path, count: int = 8) -> list[tuple[float, str]]:
    """The top-level imports with the largest cumulative time (seconds, module) in one run."""
    result = subprocess.run([command[0], "-X", "importtime", *command[1:]], cwd=cwd, capture_output=True, text=True)
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            if not name.startswith("  "):  # top level (children are indented)
                rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:count]


def scenarios(photo: Path, out: Path, model: str | None) -> dict[str, list[str]]:
    colorize = [sys.executable, "-m", "recolor.cli", "colorize", str(photo), "-o", str(out), "--overwrite", "-q"]
    return {
        INTERPRETER: [sys.executable, "-c", "pass"],
        TORCH: [sys.executable, "-c", "import torch"],
        "recolor --help": [sys.executable, "-m", "recolor.cli", "--help"],
        f"colorize 1 photo ({model or 'default model'})": colorize + (["--model", model] if model else []),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", action="append", default=[], help="a git ref of this repository to compare with (e.g. main), "
                        "exported with git archive; repeatable: speed-ups are against the first baseline")
    parser.add_argument("--baseline-dir", type=Path, action="append", default=[], help="or another checkout of recolor, as it is (repeatable)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", help="model for the colorize run (default: the checkout's default model)")
    parser.add_argument("--importtime", action="store_true", help="also list the slowest top-level imports of each scenario")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="recolor-startup-"))
    try:
        checkouts = {f"{ref} (git)": export_ref(ref, scratch) for ref in args.baseline}
        checkouts |= {str(folder): folder.resolve() for folder in args.baseline_dir}
        checkouts["this checkout"] = ROOT
        runs = scenarios(grey_photo(scratch), scratch / "out", args.model)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
              f"{args.repeats} repeats, checkouts alternating")
        for command in runs.values():  # warm-up, not counted: bytecode compiled, files in the page cache
            for folder in checkouts.values():
                timed_run(command, folder)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for repeat in range(args.repeats):
            for scenario, command in runs.items():
                for label, folder in checkouts.items():
                    figures.setdefault((scenario, label), []).append(timed_run(command, folder))
            print(f"  repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        report(runs, checkouts, figures)
        if args.importtime:
            for scenario, command in runs.items():
                for label, folder in checkouts.items():
                    top = ", ".join(f"{name} {seconds:.2f}" for seconds, name in slowest_imports(command, folder))
                    print(f"slowest imports, {scenario}, {label} (s, wall): {top}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(runs: dict, checkouts: dict, figures: dict) -> None:
    """A Markdown table: medians per scenario and checkout, and how many times faster this checkout
    starts, in all and above its floor: the interpreter's own start for ``--help``, importing torch
    for a colorize (no command that runs a network can start faster than torch imports)."""
    print("| scenario | checkout | median wall s | median CPU s | speed-up (wall, CPU) | above its floor (wall, CPU) |")
    print("|---|---|---|---|---|---|")
    baseline = next(iter(checkouts))
    floors = {floor: (statistics.median(w for label in checkouts for w, _ in figures[(floor, label)]),
                      statistics.median(c for label in checkouts for _, c in figures[(floor, label)])) for floor in (INTERPRETER, TORCH)}
    for scenario in runs:
        wall = {label: statistics.median(w for w, _ in figures[(scenario, label)]) for label in checkouts}
        cpu = {label: statistics.median(c for _, c in figures[(scenario, label)]) for label in checkouts}
        floor_wall, floor_cpu = floors[TORCH if scenario.startswith("colorize") else INTERPRETER]
        for label in checkouts:
            faster = above = ""
            if label != baseline:
                faster = f"{wall[baseline] / wall[label]:.2f}x, {cpu[baseline] / cpu[label]:.2f}x"
                if scenario not in floors:
                    above = f"{ratio_above(wall, baseline, label, floor_wall)}, {ratio_above(cpu, baseline, label, floor_cpu)}"
            print(f"| {scenario} | {label} | {wall[label]:.2f} | {cpu[label]:.2f} | {faster} | {above} |")


def ratio_above(times: dict[str, float], baseline: str, label: str, floor: float) -> str:
    """How many times less time above the floor this checkout takes; '-' when it is within noise of it."""
    mine = times[label] - floor
    return f"{(times[baseline] - floor) / mine:.2f}x" if mine > 0.005 else "-"


if __name__ == "__main__":
    main()
