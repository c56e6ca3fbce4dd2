"""The hint spread's three scalars of a hint-taking ``effnet-unet`` checkpoint: score several, or write one.

``recolor/networks/hint_spread.py`` carries a point's colour over the cells whose encoder features
look like the point's, with three learnt scalars (gain, sharpness of the feature similarity,
distance fall-off). On a CPU budget they learn slowly: the twelfth session's shipped file left
training with a gain of 1.1 (x SCALE), so one point coloured a spot around it rather than its
object. They act only where there are hints (no hint: the same output, exactly), so, as the
decoding's colour boost, they can be chosen after training on photos/val. This script writes a
copy of the weights per setting (those three tensors changed, everything else identical) and
scores them with ``recolor evaluate --hints`` in one run:

    python benchmarks/hint_spread_sweep.py weights/effnet-unet.safetensors --data ../shared/data/photos/val \
        --settings 1:0:0 4:-0.05:-0.1 8:0:0 [--limit 100] [--hints 1 --hints 5]
    python benchmarks/hint_spread_sweep.py weights/effnet-unet.safetensors --write 4:-0.05:-0.1 out.safetensors

A setting ``G:S:F`` multiplies the gain by G and adds S to the stored sharpness and F to the
stored fall-off (both stored as logs / 10: +0.1 is e times sharper or steeper).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recolor.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402


def parse_setting(text: str) -> tuple[float, float, float]:
    gain, sharpness, falloff = (float(part) for part in text.split(":"))
    return gain, sharpness, falloff


def with_spread(source: Path, setting: tuple[float, float, float], target: Path) -> Path:
    """A copy of ``source`` with its hint spread's scalars moved by ``setting``; says so in its extra."""
    checkpoint = load_checkpoint(source)
    if "hint_spread.gain" not in checkpoint.tensors:
        raise SystemExit(f"{source}: no hint spread (a hint-taking effnet-unet has one)")
    gain, sharpness, falloff = setting
    tensors = dict(checkpoint.tensors)
    tensors["hint_spread.gain"] = tensors["hint_spread.gain"].float() * gain
    tensors["hint_spread.sharpness"] = tensors["hint_spread.sharpness"].float() + sharpness
    tensors["hint_spread.falloff"] = tensors["hint_spread.falloff"].float() + falloff
    extra = dict(checkpoint.extra or {})
    extra["hint_spread_chosen_after_training"] = extra.get("hint_spread_chosen_after_training", []) + [
        {"gain_times": gain, "sharpness_plus": sharpness, "falloff_plus": falloff, "by": "benchmarks/hint_spread_sweep.py"}]
    save_checkpoint(target, tensors, checkpoint.model, checkpoint.config, kind=checkpoint.kind, dtype=torch.float16, extra=extra)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--settings", nargs="+", type=parse_setting, default=[])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--hints", type=int, action="append", default=None)
    parser.add_argument("--write", nargs=2, metavar=("SETTING", "OUT"))
    args = parser.parse_args()
    if args.write:
        print(with_spread(args.checkpoint, parse_setting(args.write[0]), Path(args.write[1])))
        return
    if not args.settings or args.data is None:
        parser.error("--settings and --data to score, or --write SETTING OUT")
    with tempfile.TemporaryDirectory() as folder:
        models = [with_spread(args.checkpoint, setting, Path(folder) / "spread_{}_{}_{}.safetensors".format(*setting))
                  for setting in args.settings]
        command = [sys.executable, "-m", "recolor.cli", "evaluate", "--data", str(args.data), "--metric", "psnr", "--metric", "ab-l1", "--json",
                   *[option for model in models for option in ("-m", str(model))],
                   *[option for count in (args.hints or [1, 5]) for option in ("--hints", str(count))],
                   *(["--limit", str(args.limit)] if args.limit else [])]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
    for row in json.loads(result.stdout)["rows"]:
        if row.get("kind") == "model":
            print(f"{row['name']:50s} ab-L1 {row['values']['ab_l1']:.4f}  PSNR {row['values']['psnr']:.2f} dB")


if __name__ == "__main__":
    main()
