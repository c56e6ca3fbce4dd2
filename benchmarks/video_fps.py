"""Frames per second of ``recolor colorize film.mp4`` on a 640x360 clip (issue 26's target: 10).

The clip (a pan over scikit-image's astronaut, H.264 with an AAC track) is made in a temporary
folder; the whole path runs as the command line runs it (decode, network, steady colour, join,
H.264 encode, audio copied), steadied and per frame, then the stages alone. Wall time and this
process's CPU time are both printed: on a shared core the CPU time is the fairer figure.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/video_fps.py
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import peak_rss_mb, run_child  # noqa: E402
from recolor.inference import Colorizer  # noqa: E402
from recolor.planning import ColorizeJob  # noqa: E402
from recolor.video.colorize import VideoSettings, colorize_video  # noqa: E402
from recolor.video.stabilise import TemporalStabiliser  # noqa: E402
from recolor.video.synthetic import camera_frames, write_clip  # noqa: E402


def timed(work) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def memory_child(frames: int, size: tuple[int, int]) -> None:
    """Colorize a clip of ``frames`` frames in this (fresh) process; print its peak RSS as JSON."""
    from skimage import data

    colorizer = Colorizer.load(engine="torch", device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        write_clip(clip, (f for f in camera_frames([data.astronaut()], "zoom", frames, size)), fps=25)  # frames made lazily
        before = peak_rss_mb()
        outcome = colorize_video(colorizer, ColorizeJob(clip, Path(folder) / "out.mp4"), VideoSettings(), None)
        assert outcome.ok, outcome.error
    print(json.dumps({"frames": frames, "peak_rss_mb": round(peak_rss_mb(), 1), "before_mb": round(before, 1)}))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        memory_child(int(sys.argv[2]), (int(sys.argv[3]), int(sys.argv[4])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="auto (bf16 where the CPU has it natively), fp32, bf16")
    parser.add_argument("--memory", type=int, nargs="*", metavar="FRAMES",
                        help="instead: peak RSS of a fresh process colorizing 1280x720 clips of these lengths (e.g. 50 400)")
    args = parser.parse_args()
    if args.memory:
        for frames in args.memory:
            print(run_child(Path(__file__), [str(frames), "1280", "720"], timeout=7200))
        return
    from skimage import data

    # videos run the torch engine (the steadying works on its tensors); the ONNX engine's network is timed beside it
    colorizer = Colorizer.load(args.model, engine="torch", device=args.device, precision=args.precision)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {colorizer.device}, precision {colorizer.amp_dtype or 'fp32'}; "
          f"model {colorizer.name} at {colorizer.size} px; {args.frames} frames of {args.size[0]}x{args.size[1]}")
    frames = list(camera_frames([data.astronaut()], "pan", args.frames, tuple(args.size)))
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        write_clip(clip, frames, fps=25)
        colorize_video(colorizer, ColorizeJob(clip, Path(folder) / "warm.mp4"), VideoSettings(), None)  # warm-up
        for steady in (True, False):
            job = ColorizeJob(clip, Path(folder) / f"out-{steady}.mp4")
            wall, cpu = timed(lambda: colorize_video(colorizer, job, VideoSettings(stabilise=steady), None))
            label = "steady" if steady else "per-frame"
            print(f"whole path, {label}: {args.frames / wall:.1f} fps wall, {args.frames / cpu:.1f} fps by CPU time")
    small = torch.randn(8, 1, colorizer.size, colorizer.size)
    wall, cpu = timed(lambda: [colorizer.predict_ab(small) for _ in range(2)])
    print(f"network alone (batches of 8), torch: {16 / wall:.1f} fps wall, {16 / cpu:.1f} fps CPU")
    try:
        fast = Colorizer.load(args.model, engine="onnx")
    except (ValueError, OSError) as exc:
        print(f"network alone, ONNX Runtime: not measured ({exc})")
    else:
        small_array = small.numpy()
        fast.predict_ab(small_array)  # warm-up
        wall, cpu = timed(lambda: [fast.predict_ab(small_array) for _ in range(2)])
        print(f"network alone (batches of 8), ONNX Runtime: {16 / wall:.1f} fps wall, {16 / cpu:.1f} fps CPU")
    stabiliser = TemporalStabiliser()
    greys = [np.asarray(f[::2, ::2, 0]) for f in frames[:17]]
    greys = [np.ascontiguousarray(np.resize(g, (colorizer.size, colorizer.size))) for g in greys]
    field = np.zeros((colorizer.size, colorizer.size, 2), np.float32)
    wall, cpu = timed(lambda: [stabiliser(g, field) for g in greys])
    print(f"steady colour alone (flow at {colorizer.size} px): {len(greys) / wall:.1f} fps wall, {len(greys) / cpu:.1f} fps CPU")


if __name__ == "__main__":
    main()
