"""The ONNX engine against the torch-only recolor before it (issue 24), side by side in one run.

Two scenarios, each a fresh ``python -m recolor.cli colorize ... -q`` process with the checkout as
its working directory (so each imports its own package), the default model and the CLI's defaults:

* one 768x512 greyscale JPEG (the astronaut, resized): the wall and CPU time of the whole command;
* a folder of 100 greyscale JPEGs of 768x512 (../shared/data/photos/val resized when present, else
  scikit-image's photos, shifted): photos per second of the whole command, start-up included.

Each repeat runs both scenarios in every checkout, alternately; medians over the repeats. Pin the
run to one core and one thread as the README's figures were (``taskset -c 1``, OMP_NUM_THREADS=1).

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/engines.py --baseline 77ac765 --repeats 5
    python benchmarks/engines.py --baseline-dir /tmp/old --repeats 3
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED  # noqa: E402
from startup import ROOT, export_ref, timed_run  # noqa: E402

SIZE = (768, 512)
FOLDER_PHOTOS = 100


def one_photo(folder: Path) -> Path:
    from skimage import data

    path = folder / "astronaut_768x512.jpg"
    Image.fromarray(data.astronaut()).convert("L").resize(SIZE, Image.Resampling.LANCZOS).save(path, quality=92)
    return path


def photo_folder(folder: Path, count: int = FOLDER_PHOTOS) -> Path:
    """``count`` grey 768x512 JPEGs: photos/val resized (cycled), or scikit-image's photos shifted."""
    target = folder / "photos"
    target.mkdir()
    sources = sorted((SHARED / "val").glob("*.jpg"))
    if not sources:
        from skimage import data

        sources = [Image.fromarray(getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")]
    for index in range(count):
        source = sources[index % len(sources)]
        image = Image.open(source) if isinstance(source, Path) else source
        image = image.convert("L").resize(SIZE, Image.Resampling.LANCZOS)
        if index >= len(sources):  # a different photo each time: roll the pixels
            image = Image.fromarray(np.roll(np.asarray(image), index * 37, axis=1))
        image.save(target / f"photo_{index:03d}.jpg", quality=92)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=None, help="a git ref to compare with (exported with git archive), e.g. 77ac765")
    parser.add_argument("--baseline-dir", type=Path, default=None, help="or another checkout of recolor, as it is")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder-repeats", type=int, default=None, help="repeats of the folder scenario (default: --repeats)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="recolor-engines-"))
    try:
        checkouts = {}
        if args.baseline:
            checkouts[f"{args.baseline} (torch)"] = export_ref(args.baseline, scratch)
        if args.baseline_dir:
            checkouts[f"{args.baseline_dir} (torch)"] = args.baseline_dir.resolve()
        checkouts["this checkout (engine auto)"] = ROOT
        photo, folder = one_photo(scratch), photo_folder(scratch)
        command = [sys.executable, "-m", "recolor.cli", "colorize"]
        runs = {"one photo": (command + [str(photo), "-o", str(scratch / "out1"), "--overwrite", "-q"], args.repeats),
                f"{FOLDER_PHOTOS} photos": (command + [str(folder), "-o", str(scratch / "out100"), "--overwrite", "-q"],
                                            args.folder_repeats or args.repeats)}
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, affinity {sorted(os.sched_getaffinity(0))}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; photos {SIZE[0]}x{SIZE[1]} JPEG; checkouts alternating")
        for folder_path in checkouts.values():  # warm-up, not counted: bytecode compiled, files in the page cache
            timed_run(runs["one photo"][0], folder_path)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for scenario, (argv, repeats) in runs.items():
            for repeat in range(repeats):
                for label, folder_path in checkouts.items():
                    figures.setdefault((scenario, label), []).append(timed_run(argv, folder_path))
                print(f"  {scenario}: repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
        report(runs, checkouts, figures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(runs: dict, checkouts: dict, figures: dict) -> None:
    baseline = next(iter(checkouts))
    print("| scenario | checkout | median wall s | median CPU s | photos/s | new / old |")
    print("|---|---|---|---|---|---|")
    for scenario in runs:
        photos = FOLDER_PHOTOS if scenario != "one photo" else 1
        wall = {label: statistics.median(w for w, _ in figures[(scenario, label)]) for label in checkouts}
        for label in checkouts:
            cpu = statistics.median(c for _, c in figures[(scenario, label)])
            walls = ", ".join(f"{w:.2f}" for w, _ in figures[(scenario, label)])
            ratio = "" if label == baseline else (f"{wall[label] / wall[baseline]:.3f} of the wall time" if photos == 1
                                                  else f"{wall[baseline] / wall[label]:.2f}x the photos/s")
            print(f"| {scenario} | {label} | {wall[label]:.2f} ({walls}) | {cpu:.2f} | {photos / wall[label]:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
