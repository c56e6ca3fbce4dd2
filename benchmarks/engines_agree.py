"""Do the two engines give the same colours? Every photo of ../shared/data/photos/val (or a folder
given) through the torch engine (fp32) and the ONNX engine, each from its own decoding and
resizing: the largest |ab| difference (normalised, at the network's resolution) per photo, and the
largest difference of the full-size 8-bit outputs. The issue's bar: at most 1e-3 in ab.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/engines_agree.py [--model effnet-unet] [--folder DIR]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED  # noqa: E402

from recolor.imageio.photo import photo_from_pil  # noqa: E402
from recolor.inference import Colorizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--folder", type=Path, default=SHARED / "val")
    args = parser.parse_args()
    files = sorted(path for path in args.folder.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"{args.folder}: no photos (the shared data is absent)")
    torch_engine = Colorizer.load(args.model, engine="torch", precision="fp32")
    onnx_engine = Colorizer.load(args.model, engine="onnx")
    ab_differences, level_differences = [], []
    for path in files:
        image = Image.open(path).convert("RGB")
        as_tensor, as_array = photo_from_pil(image), photo_from_pil(image, as_array=True)
        ab_torch = torch_engine.predict_ab(torch_engine.input_from_lightness(as_tensor.lightness)[None]).numpy()
        ab_onnx = onnx_engine.predict_ab(onnx_engine.input_from_lightness(onnx_engine.photo_lightness(as_array))[None])
        ab_differences.append(float(np.abs(ab_torch - ab_onnx).max()))
        rgb_torch = torch_engine.colorize_photos([as_tensor])[0][0].numpy().astype(int)
        rgb_onnx = onnx_engine.colorize_photos([as_array])[0][0].astype(int)
        level_differences.append(int(np.abs(rgb_torch - rgb_onnx).max()))
    print(f"{len(files)} photos of {args.folder}, model {args.model} ({onnx_engine.path.name} against its weights):")
    print(f"max |ab| difference (normalised): largest {max(ab_differences):.2e}, median {statistics.median(ab_differences):.2e}, "
          f"{sum(d > 1e-3 for d in ab_differences)} photos above 1e-3")
    print(f"full-size 8-bit outputs: largest difference {max(level_differences)} levels; "
          f"{sum(d == 0 for d in level_differences)} photos identical")


if __name__ == "__main__":
    main()
