"""Colorize throughput, latency and peak memory for a 768x512 photo and a 24-megapixel one.

Each (photo size, precision) runs in a fresh child process: it loads the model, colorizes the
photo once to warm up, then measures

* latency: one photo through the whole pipeline (decode, lightness, model, join, encode, save),
  the median of ``--latency-runs`` runs;
* throughput: ``--copies`` copies of the photo through ``colorize_files`` (batches + threads);
* peak RSS of the child (and, on CUDA, peak GPU memory allocated), next to its RSS just after
  loading the model (torch alone is several hundred MB).

Finally ``recolor colorize`` itself (default settings) runs on the 24-megapixel photo and its peak
RSS is reported: the figure behind "a 24-megapixel scan colorizes in under 2 GB".

    python benchmarks/bench_colorize.py                 # all scenarios
    python benchmarks/bench_colorize.py --quick         # small sizes, to check the script
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, peak_rss_mb, pix2pix_weights, run_child, table, test_photo  # noqa: E402

SCRIPT = Path(__file__).resolve()


def child(args: argparse.Namespace) -> None:
    from recolor.inference import Colorizer
    from recolor.pipeline import ColorizeJob, colorize_files

    torch.manual_seed(0)
    photo, out_dir = Path(args.photo), Path(tempfile.mkdtemp(prefix="recolor-bench-"))
    colorizer = Colorizer.load(args.model, device=args.device, precision=args.precision)
    baseline = peak_rss_mb()

    def run(count: int, tag: str) -> float:
        jobs = [ColorizeJob(photo, out_dir / f"{tag}_{i}{photo.suffix}") for i in range(count)]
        started = time.perf_counter()
        errors = [o.error for o in colorize_files(colorizer, jobs, batch_size=args.batch_size) if not o.ok]
        if colorizer.device.type == "cuda":
            torch.cuda.synchronize()
        if errors:
            raise RuntimeError(errors[0])
        return time.perf_counter() - started

    try:
        run(1, "warm")
        latency = statistics.median(run(1, f"lat{i}") for i in range(args.latency_runs))
        seconds = run(args.copies, "thr")
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    record = {
        "photo": args.label, "precision": args.precision, "latency_s": round(latency, 3),
        "images_per_s": round(args.copies / seconds, 2), "rss_after_load_mb": round(baseline), "peak_rss_mb": round(peak_rss_mb()),
    }
    if colorizer.device.type == "cuda":
        record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(record))


def child_cli(args: argparse.Namespace) -> None:
    out_dir = tempfile.mkdtemp(prefix="recolor-bench-cli-")
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "recolor.cli", "colorize", args.photo, "-o", out_dir, "--model", args.model, "--device", args.device, "-q"], check=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"photo": args.label, "cli_wall_s": round(time.perf_counter() - started, 1), "cli_peak_rss_mb": round(peak)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cli", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--photo", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="pix2pix weights (default: weights/pix2pix.safetensors or ../runs/pix2pix/last.safetensors)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latency-runs", type=int, default=3)
    parser.add_argument("--copies", type=int, default=None, help="photos per throughput run (default: 32 small, 4 large)")
    parser.add_argument("--quick", action="store_true", help="small photos and few copies: checks that the script runs")
    args = parser.parse_args()
    if args.child:
        (child_cli if args.cli else child)(args)
        return

    model = str(pix2pix_weights(args.model))
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else (args.device if args.device != "auto" else "cpu"))
    half = "fp16" if device.type == "cuda" else "bf16"
    folder = Path(tempfile.gettempdir()) / "recolor-bench-photos"
    sizes = {"768x512": (768, 512), "6000x4000 (24 MP)": (6000, 4000)}
    if args.quick:
        sizes = {"192x128": (192, 128), "1200x800": (1200, 800)}
    print(f"machine: {machine()}\nweights: {model}; device {device}")
    rows = []
    for label, (width, height) in sizes.items():
        photo = test_photo(folder, width, height)
        copies = args.copies or (32 if width * height < 4_000_000 else 4)
        if args.quick:
            copies = 4
        for precision in ("fp32", half):
            record = run_child(SCRIPT, ["--photo", str(photo), "--label", label, "--precision", precision, "--model", model,
                                        "--device", str(device), "--batch-size", str(args.batch_size), "--latency-runs",
                                        str(1 if args.quick else args.latency_runs), "--copies", str(copies)])
            rows.append(record)
            print(f"  {label:18s} {precision}: latency {record['latency_s']:.3f} s, {record['images_per_s']:.2f} images/s, "
                  f"peak RSS {record['peak_rss_mb']} MB (after load {record['rss_after_load_mb']} MB)"
                  + (f", peak GPU {record['peak_gpu_mb']} MB" if "peak_gpu_mb" in record else ""))
    big_label, (width, height) = list(sizes.items())[-1]
    cli = run_child(SCRIPT, ["--cli", "--photo", str(test_photo(folder, width, height)), "--label", big_label, "--model", model, "--device", str(device)])
    print(f"  recolor colorize on the {big_label} photo: peak RSS {cli['cli_peak_rss_mb']} MB, {cli['cli_wall_s']} s including start-up")
    columns = ["photo", "precision", "latency_s", "images_per_s", "rss_after_load_mb", "peak_rss_mb"] + (["peak_gpu_mb"] if device.type == "cuda" else [])
    print("\n" + table(rows, columns))


if __name__ == "__main__":
    main()
