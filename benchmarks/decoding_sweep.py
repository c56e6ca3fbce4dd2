"""Decoding settings of an ``effnet-unet`` checkpoint (temperature, colour boost): score several, or write one.

The classification head's ``temperature`` and ``colour_boost`` only change how bin probabilities
become a colour (``recolor/networks/efficientnet_unet.py``), not the trained weights, so they can be
chosen after training. This script writes a copy of the weights per setting (config changed,
tensors identical) and scores them with ``recolor evaluate`` in one run:

    python benchmarks/decoding_sweep.py runs/eff/model.safetensors --data ../shared/data/photos/val \
        --settings 0.38:0 0.38:0.5 0.38:1 [--limit 100]
    python benchmarks/decoding_sweep.py runs/eff/model.safetensors --write 0.38:0.5 weights/effnet-unet.safetensors

``--prior-data DIR`` (re)computes the file's colour prior (the rebalancing weights ``recolor
train`` computes from its training photos at the start of a run) from DIR, for files written
before the prior was stored.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from recolor.ab_bins import gamut_bin_centres, rebalancing_weights
from recolor.pretrained import load_pretrained, save_pretrained
from recolor.data import ColorPhotoDataset
from recolor.training.efficientnet_unet import training_bin_counts


def training_prior(folder: Path, size: int) -> torch.Tensor:
    """log rebalancing weights (mix 0.5) of a training folder, as the recipe's prepare() computes them."""
    centres = gamut_bin_centres()
    counts = training_bin_counts(ColorPhotoDataset(folder, size=size, train=True), centres)
    return rebalancing_weights(counts, centres, mix=0.5).log()


def with_decoding(source: Path, temperature: float, boost: float, target: Path, prior: torch.Tensor | None, size: int | None = None) -> Path:
    pretrained = load_pretrained(source)
    if pretrained.spec.name != "effnet-unet" or pretrained.config["loss"] != "ce":
        raise SystemExit(f"{source}: not an effnet-unet checkpoint with the classification head")
    stored = pretrained.checkpoint.config  # the training keys too: the file keeps its whole history
    config = {**stored, **pretrained.spec.architecture_config({**stored, "temperature": temperature, "colour_boost": boost,
                                                                "image_size": size or pretrained.config["image_size"]})}
    network = pretrained.network
    if prior is not None:
        network.bin_log_weights.copy_(prior)
    extra = {**pretrained.checkpoint.extra, "decoding_chosen_after_training": True}
    return save_pretrained(target, network, pretrained.spec.name, config, extra=extra)


def parse_setting(text: str) -> tuple[float, float]:
    temperature, _, boost = text.partition(":")
    return float(temperature), float(boost or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("--data", type=Path, help="photos to score on (e.g. photos/val)")
    parser.add_argument("--settings", nargs="+", default=["0.38:0"], help="TEMPERATURE:BOOST pairs")
    parser.add_argument("--prior-data", type=Path, help="training folder to compute the colour prior from")
    parser.add_argument("--prior-size", type=int, default=192)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--size", type=int, help="the model's input size at inference (default: the file's image_size)")
    parser.add_argument("--eval-size", type=int, help="recolor evaluate's crop side (its --size; default: min(256, the smallest photo side))")
    parser.add_argument("--write", nargs=2, metavar=("T:BOOST", "PATH"), help="only write the weights with this setting to PATH")
    args = parser.parse_args()
    prior = training_prior(args.prior_data, args.prior_size) if args.prior_data else None
    if args.write:
        print(with_decoding(args.weights, *parse_setting(args.write[0]), Path(args.write[1]), prior, args.size))
        return
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "recolor.cli", "evaluate", "--data", str(args.data), "--metric", "ab-l1",
                   "--metric", "psnr", "--metric", "colourfulness", "--quiet"]
        for setting in args.settings:
            name = f"T{setting.replace(':', '_b')}"
            command += ["--model", str(with_decoding(args.weights, *parse_setting(setting), Path(folder) / f"{name}.safetensors", prior, args.size))]
        if args.limit:
            command += ["--limit", str(args.limit)]
        if args.eval_size:
            command += ["--size", str(args.eval_size)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
