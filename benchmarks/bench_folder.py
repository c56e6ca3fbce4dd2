"""Colorize a folder of photos: the pipeline of `recolor colorize` against a plain reference loop.

The reference is the loop one would write first, in the same process, on the same files and
weights: decode with ``recolor.imageio.decode_photo``, run the fp32 model (NCHW) on one photo at a
time, upsample ab to full size and convert the whole photo with ``recolor.color.lab_to_rgb``,
save. The pipeline is ``recolor.pipeline.colorize_files`` on the jobs of ``recolor.planning.plan_colorize``,
with the CLI's defaults (bf16 on CPU,
fp16/bf16 on CUDA, channels_last, batches of 8, decoding/saving threads). Both write their
outputs (JPEG, as the inputs) into temporary folders.

    python benchmarks/bench_folder.py                      # 200 photos of ../shared/data/photos/val
    python benchmarks/bench_folder.py --count 16 --repeat 1  # a quick check
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, pix2pix_weights  # noqa: E402

from recolor.color import denormalize_ab, lab_to_rgb, normalize_l  # noqa: E402
from recolor.imageio import list_image_files, decode_photo, save_image  # noqa: E402
from recolor.inference import Colorizer  # noqa: E402
from recolor.pipeline import colorize_files  # noqa: E402
from recolor.planning import plan_colorize  # noqa: E402
from recolor.pretrained import load_pretrained  # noqa: E402


def reference_loop(files: list[Path], weights: Path, out_dir: Path) -> None:
    """The plain loop: one photo at a time, fp32, no batching, no threads, whole-image maths."""
    pretrained = load_pretrained(weights)
    generator, size = pretrained.network, pretrained.config["image_size"]
    for path in files:
        image = decode_photo(path)
        lightness = image.lightness
        small = normalize_l(F.interpolate(lightness[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False))
        with torch.no_grad():
            ab = generator(small).float()
        ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)[0]
        rgb = lab_to_rgb(torch.cat((lightness, denormalize_ab(ab.clamp(-1, 1))), dim=0))
        pixels = rgb.mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).contiguous().numpy()
        save_image(out_dir / path.name, pixels, image.alpha, image.icc_profile)


def pipeline_run(files: list[Path], colorizer: Colorizer, out_dir: Path, batch_size: int, workers: int | None) -> None:
    plan = plan_colorize([str(path) for path in files], out_dir)  # as `recolor colorize FILES -o OUT_DIR` plans it
    failed = [record["error"] for record in plan.records if record["status"] == "error"]
    failed += [outcome.error for outcome in colorize_files(colorizer, plan.jobs, batch_size=batch_size, workers=workers) if not outcome.ok]
    if failed:
        raise RuntimeError(f"pipeline failed on {len(failed)} files: {failed[:3]}")


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=SHARED / "val")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--model", help="pix2pix weights (default: weights/pix2pix.safetensors or ../runs/pix2pix/last.safetensors)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds (alternating); the best of each is kept")
    args = parser.parse_args()

    files = list_image_files(args.folder)[: args.count]
    if not files:
        sys.exit(f"{args.folder}: no photos (pass --folder)")
    weights = pix2pix_weights(args.model)
    colorizer = Colorizer.load(weights, engine="torch", device=args.device)
    if colorizer.device.type != "cpu":
        sys.exit("the reference loop is a CPU loop; run this benchmark with --device cpu")
    print(f"machine: {machine()}")
    print(f"weights: {weights}; {len(files)} photos from {args.folder}; pipeline: batch {args.batch_size}, "
          f"workers {args.workers or 'default'}, autocast {colorizer.amp_dtype}")
    scratch = Path(tempfile.mkdtemp(prefix="recolor-bench-folder-"))
    try:
        warm = files[: min(8, len(files))]  # one warm-up pass each: thread pools, allocator, oneDNN kernels
        reference_loop(warm, weights, scratch)
        pipeline_run(warm, colorizer, scratch, args.batch_size, args.workers)
        best = {"reference": float("inf"), "pipeline": float("inf")}
        for round_ in range(args.repeat):
            for name in ("reference", "pipeline"):
                out_dir = scratch / f"{name}{round_}"
                out_dir.mkdir()
                if name == "reference":
                    seconds = timed(reference_loop, files, weights, out_dir)
                else:
                    seconds = timed(pipeline_run, files, colorizer, out_dir, args.batch_size, args.workers)
                best[name] = min(best[name], seconds)
                print(f"  round {round_ + 1} {name:9s}: {seconds:6.2f} s  {len(files) / seconds:6.1f} images/s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    speedup = best["reference"] / best["pipeline"]
    print(f"reference loop: {len(files) / best['reference']:.1f} images/s; pipeline: {len(files) / best['pipeline']:.1f} images/s; "
          f"speed-up {speedup:.2f}x")


if __name__ == "__main__":
    main()
