"""Shared pieces of the benchmark scripts: the machine, test photos, the model, child processes,
and evaluate's crops colorized and judged in batches.

Peak memory is the peak resident set size of a fresh child process that runs one scenario
(``ru_maxrss``), so that scenarios do not inherit each other's peaks.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "photos"
CANDIDATE_WEIGHTS = (ROOT / "weights" / "pix2pix.safetensors", ROOT.parent / "runs" / "pix2pix" / "last.safetensors")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} torch threads"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    return "; ".join(parts)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pix2pix_weights(explicit: str | None = None) -> Path:
    """The shipped (or currently training) pix2pix weights; a random model of the same shape as a fallback."""
    if explicit:
        return Path(explicit)
    for path in CANDIDATE_WEIGHTS:
        if path.is_file():
            return path
    fallback = Path("/tmp/recolor-bench/pix2pix-random.safetensors")
    if not fallback.is_file():
        import recolor.training  # noqa: F401
        from recolor.checkpoint import save_checkpoint
        from recolor.registry import get_model_spec

        spec = get_model_spec("pix2pix")
        config = spec.config({"image_size": 128, "ngf": 32, "num_downs": 7})
        save_checkpoint(fallback, spec.build(config).state_dict(), "pix2pix", config)
        print(f"note: no trained pix2pix weights found; timing a random model of the same shape ({fallback})", file=sys.stderr)
    return fallback


def test_photo(folder: Path, width: int, height: int) -> Path:
    """scikit-image's astronaut, resized to width x height, as a JPEG (quality 90)."""
    from PIL import Image
    from skimage import data

    path = folder / f"astronaut_{width}x{height}.jpg"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC).save(path, quality=90)
    return path


def run_child(script: Path, args: list[str], timeout: float = 1800) -> dict:
    """Run ``script --child ARGS`` in a fresh interpreter; its last stdout line is a JSON result."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(script), "--child", *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record.setdefault("child_wall_s", round(time.perf_counter() - started, 1))
    return record


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of the given columns (for benchmarks/README.md)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(column, "")) for column in columns) + " |")
    return "\n".join(lines)


def evaluation_crops(photos: list, size: int) -> tuple[torch.Tensor, list]:
    """The crops of ``photos`` (``find_photos``'s list) that ``recolor evaluate`` scores (uint8,
    N x 3 x S x S; unreadable and near-greyscale photos left out), and each one's (position, photo)."""
    from recolor.evaluation.photos import Skipped, read_chunk

    cropped = read_chunk(list(enumerate(photos)), {}, size, Skipped())
    return torch.from_numpy(np.stack(cropped.truths)), cropped.kept


def colorized_crops(colorizer, truth_u8: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """float RGB in [0, 1] of the crops as `recolor colorize` makes them, ``batch`` crops at a time."""
    from recolor.evaluation.contenders import colorize_batch

    return torch.cat([colorize_batch(colorizer, truth_u8[i : i + batch]) for i in range(0, len(truth_u8), batch)]).float() / 255


def top1_classes(judge, rgb: torch.Tensor, batch: int = 25) -> torch.Tensor:
    """The judge's likeliest class of each image (float RGB in [0, 1]), ``batch`` images at a time."""
    return torch.cat([judge.probabilities(rgb[i : i + batch]) for i in range(0, len(rgb), batch)]).argmax(dim=-1)
