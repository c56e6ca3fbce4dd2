"""Widen an ``effnet-unet`` file's decoder without changing what it predicts (a start for `recolor train --init-from`).

A wider decoder trained from the ImageNet start would need the CPU-hours the shipped file already
had. Instead the shipped decoder is grown in place (the zero-outgoing-weight form of Net2Net, Chen,
Goodfellow and Shlens 2016): every old weight is kept, the new channels of each decoder block get
the fresh build's random incoming weights, and every weight that reads a new channel is zero, so the
widened network predicts exactly what the old one did (checked below) and training gives the new
channels their use.

    python benchmarks/widen_decoder.py weights/effnet-unet.safetensors runs/wide-init.safetensors --widths 320 160 64
    recolor train --model effnet-unet --init-from runs/wide-init.safetensors ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recolor.pretrained import load_pretrained, save_pretrained  # noqa: E402

BATCH_NORM_KEYS = ("weight", "bias", "running_mean", "running_var")


def widen_block(old: dict, new: dict, prefix: str, old_width: int, source: tuple[int, int], skip: int) -> None:
    """One conv_block (conv 0, BN 1, ReLU, conv 3, BN 4) grown from ``old_width`` channels to its width in
    ``new``, whose input is the previous block's output (``source`` old/new channels) followed by ``skip``
    encoder channels."""
    old_source, new_source = source
    first = new[prefix + "0.weight"]
    first[:, old_source:new_source] = 0  # reads the previous block's new channels
    first[:old_width, :old_source] = old[prefix + "0.weight"][:, :old_source]
    first[:old_width, new_source:new_source + skip] = old[prefix + "0.weight"][:, old_source:old_source + skip]
    second = new[prefix + "3.weight"]
    second[:, old_width:] = 0
    second[:old_width, :old_width] = old[prefix + "3.weight"]
    for norm in ("1", "4"):
        for key in BATCH_NORM_KEYS:
            new[f"{prefix}{norm}.{key}"][:old_width] = old[f"{prefix}{norm}.{key}"]
        new[f"{prefix}{norm}.num_batches_tracked"] = old[f"{prefix}{norm}.num_batches_tracked"].clone()


def widened_state(old_network: torch.nn.Module, new_network: torch.nn.Module, old_widths: list[int], new_widths: list[int]) -> dict:
    old, new = old_network.state_dict(), {key: value.clone() for key, value in new_network.state_dict().items()}
    for key in old:
        if not key.startswith(("decoder.", "output.")):
            new[key] = old[key].clone()  # the encoder and the colour prior
    skips = old_network.encoder.feature_info.channels()
    sources = [(skips[4], skips[4])] + list(zip(old_widths[:2], new_widths[:2]))
    for block, old_width in enumerate(old_widths):
        widen_block(old, new, f"decoder.{block}.", old_width, sources[block], skips[3 - block])
    new["output.weight"][:, old_widths[-1]:] = 0
    new["output.weight"][:, :old_widths[-1]] = old["output.weight"]
    new["output.bias"] = old["output.bias"].clone()
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--widths", type=int, nargs=3, required=True, help="the new decoder widths (1/16, 1/8, 1/4)")
    args = parser.parse_args()
    old = load_pretrained(args.source)
    old_widths = list(old.config["decoder_widths"])
    if old.spec.name != "effnet-unet" or any(new < was for new, was in zip(args.widths, old_widths)):
        raise SystemExit(f"{args.source}: needs an effnet-unet file whose decoder is at most {args.widths} wide")
    config = {**old.checkpoint.config, "decoder_widths": args.widths}
    network = old.spec.build(old.spec.architecture_config(config))
    network.load_state_dict(widened_state(old.network, network, old_widths, args.widths))
    probe = torch.rand(2, 1, 192, 192) * 2 - 1
    with torch.no_grad():
        difference = (network.eval()(probe, quarter=True) - old.network.eval()(probe, quarter=True)).abs().max().item()
    if difference > 1e-4:
        raise SystemExit(f"the widened network predicts differently (max logit difference {difference:.2e})")
    extra = {**old.checkpoint.extra, "widened_from": f"{args.source.name}, decoder {old_widths}"}
    print(save_pretrained(args.target, network, old.spec.name, config, extra=extra, dtype=torch.float32))


if __name__ == "__main__":
    main()
