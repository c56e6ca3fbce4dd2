"""Steady colour against per-frame colorization (issue 26), on clips with known motion.

Clips are filmed by a virtual camera from colour photos of ``../shared/data/photos/val``
(:mod:`recolor.video.synthetic`): a pan, a zoom, a still shot with film grain, and a cut from one
photo to another half-way. The colorizer sees each frame's lightness only; the truth is the
colour frame. For every clip the same network runs per frame (DeOldify's method) and steadied
(:class:`recolor.video.stabilise.TemporalStabiliser`), and we report

* flicker: the warping error on ab/110 (Lai et al. 2018, L1 form; flow on the grey input),
* CDC (NTIRE 2023), the colour-histogram divergence between frames t and t+1, 2, 4,
* ab-L1 against the truth (ab/110, mean over frames), and
* after each cut: the frames until the steadied output's ab-L1 is within 0.003 of per-frame's.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/video_flicker.py            # 6 photos per motion
    python benchmarks/video_flicker.py --photos 2 --frames 12 --quick             # a check that it runs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recolor.inference import Colorizer  # noqa: E402
from recolor.video.frames import FrameColorizer  # noqa: E402
from recolor.video.metrics import CdcMeter, FlickerMeter, MotionTrack, ab_of, grey_of  # noqa: E402
from recolor.video.stabilise import StabiliserSettings, TemporalStabiliser  # noqa: E402
from recolor.video.synthetic import camera_frames  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "val"
CUT_TOLERANCE = 0.003


def load_photos(count: int) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(PHOTOS.glob("bsds_*.jpg"))[: 2 * count]
    if len(files) < 2 * count:
        sys.exit(f"need {2 * count} photos in {PHOTOS} (shared data absent?)")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def score(frames: list[np.ndarray], colorized: list[np.ndarray], motions: list) -> dict:
    flicker, cdc = FlickerMeter(), CdcMeter()
    errors = []
    for truth, out, motion in zip(frames, colorized, motions):
        ab = ab_of(out)
        flicker.update(ab, motion)
        cdc.update(out)
        errors.append(float(np.abs(ab - ab_of(truth)).mean()))
    return {"flicker": flicker.result(), "cdc": cdc.result(), "ab_l1": float(np.mean(errors)), "errors": errors}


def run(args: argparse.Namespace) -> None:
    colorizer = Colorizer.load(args.model, device="cpu")
    photos = load_photos(args.photos)
    size = tuple(args.size)
    settings = StabiliserSettings(blend=args.blend)
    rows = {}
    cut_lags, detected = [], []
    started = time.perf_counter()
    for motion in ("pan", "zoom", "still", "cut"):
        totals = {"truth": [], "per-frame": [], "steady": []}
        for index in range(args.photos):
            pair = photos[2 * index : 2 * index + 2]
            frames = list(camera_frames(pair, motion, args.frames, size, seed=index))
            track = MotionTrack()
            motions = [track.step(grey_of(f)) for f in frames]
            stabiliser = TemporalStabiliser(settings)
            outputs = {"per-frame": FrameColorizer(colorizer), "steady": FrameColorizer(colorizer, stabiliser)}
            results = {"truth": score(frames, frames, motions)}  # the clip's own flicker: flow errors, real changes
            totals["truth"].append(results["truth"])
            for name, runner in outputs.items():
                colorized = []
                for start in range(0, len(frames), 8):
                    colorized += runner.colorize(frames[start : start + 8])
                results[name] = score(frames, colorized, motions)
                totals[name].append(results[name])
            if motion == "cut":
                cut = args.frames // 2
                detected.append(cut in stabiliser.cuts)
                lag = next((k for k in range(args.frames - cut)
                            if results["steady"]["errors"][cut + k] <= results["per-frame"]["errors"][cut + k] + CUT_TOLERANCE), None)
                cut_lags.append(lag)
        rows[motion] = {name: {key: float(np.mean([r[key] for r in runs])) for key in ("flicker", "cdc", "ab_l1")} for name, runs in totals.items()}
    seconds = time.perf_counter() - started
    print(f"model {colorizer.name} at {colorizer.size} px; {args.photos} clips per motion, {args.frames} frames of {size[0]}x{size[1]}; "
          f"blend {args.blend}; {seconds:.0f} s")
    print("| clips | method | flicker | CDC | ab-L1 |")
    print("|---|---|---|---|---|")
    for motion, result in rows.items():
        for name, values in result.items():
            print(f"| {motion} | {name} | {values['flicker']:.4f} | {values['cdc']:.5f} | {values['ab_l1']:.4f} |")
    every = {name: {key: float(np.mean([rows[m][name][key] for m in rows])) for key in ("flicker", "cdc", "ab_l1")} for name in ("truth", "per-frame", "steady")}
    for name, values in every.items():
        print(f"| all | {name} | {values['flicker']:.4f} | {values['cdc']:.5f} | {values['ab_l1']:.4f} |")
    ratio = every["steady"]["flicker"] / every["per-frame"]["flicker"]
    worse = every["steady"]["ab_l1"] - every["per-frame"]["ab_l1"]
    print(f"steady/per-frame flicker: {ratio:.2f} (target <= 0.5); ab-L1 change: {worse:+.4f} (target <= +{CUT_TOLERANCE})")
    print(f"cuts detected at the cut frame: {sum(detected)}/{len(detected)}; frames until followed (within {CUT_TOLERANCE} of per-frame): {cut_lags}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--photos", type=int, default=6, help="clips per motion (the cut uses two photos each)")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(384, 216), metavar=("W", "H"))
    parser.add_argument("--blend", type=float, default=StabiliserSettings.blend)
    parser.add_argument("--quick", action="store_true", help="(only a smaller default run: pass --photos/--frames)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
