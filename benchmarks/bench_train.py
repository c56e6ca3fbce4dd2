"""Training speed: images/s of the Trainer's step for each registered model, fp32 against half precision.

Every (model, precision) runs in a fresh child process, which builds the recipe and the Trainer
exactly as ``recolor train`` does (channels_last, DataLoader workers, autocast), runs
``--warmup`` steps and times ``--steps`` more (the Trainer's own loop body: batch to Lab on the
device, ``recipe.train_step``); checkpoints and validation are not timed. Peak RSS (and peak GPU
memory) of the child is reported.

For pix2pix the child also runs a plain reference loop, written the simplest way, on the same
data right after the Trainer: fp32, NCHW, DataLoader without workers (no overlap of decoding and
compute), critic not frozen during the generator's update, the losses of ``recolor.losses``. The
ratio of the two, measured side by side in one process, is the speed-up of the Trainer.

    python benchmarks/bench_train.py                         # every model (slow on a CPU)
    python benchmarks/bench_train.py --models pix2pix@128 pix2pix@256
    python benchmarks/bench_train.py --quick                 # tiny widths: checks the script
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, machine, peak_rss_mb, pix2pix_weights, run_child, table  # noqa: E402

SCRIPT = Path(__file__).resolve()
# name@size -> config overrides; pix2pix@128 is the paper's widths with one level less (128 = 2^7)
PRESETS = {
    "pix2pix@128": ("pix2pix", {"image_size": 128, "num_downs": 7}),
    "pix2pix@256": ("pix2pix", {"image_size": 256}),
}
QUICK = {"image_size": 32, "ngf": 8, "ndf": 8, "num_downs": 5, "batch_size": 4}


def model_overrides(name: str, quick: bool) -> tuple[str, dict]:
    model, overrides = PRESETS.get(name, (name, {}))
    overrides = dict(overrides)
    if model == "resnet18":
        overrides["encoder_weights"] = "none"  # no download: speed does not depend on the weights
    if model.startswith("divcolor"):
        overrides["feature_checkpoint"] = str(pix2pix_weights())
    if quick:
        overrides.update({k: v for k, v in QUICK.items() if model.startswith(("pix2pix", "wgan")) or k in ("image_size", "batch_size")})
        overrides["image_size"] = 64 if not model.startswith(("pix2pix", "wgan", "resnet")) else 32
    return model, overrides


def training_data(folder: Path | None) -> Path:
    if folder is not None:
        return folder
    if (SHARED / "train").is_dir():
        return SHARED / "train"
    from PIL import Image
    from skimage import data

    root = Path(tempfile.gettempdir()) / "recolor-bench-train"
    if not root.is_dir():
        root.mkdir(parents=True)
        pictures = [data.astronaut(), data.coffee(), data.chelsea()]
        for i in range(96):
            picture = pictures[i % 3]
            top, left = (i * 37) % (picture.shape[0] - 300), (i * 53) % (picture.shape[1] - 300)
            Image.fromarray(picture[top : top + 300, left : left + 300]).save(root / f"{i:03d}.jpg", quality=90)
    return root


def time_trainer(model: str, overrides: dict, folder: Path, precision: str, warmup: int, steps: int, workers: int) -> tuple[float, int]:
    import recolor.training  # noqa: F401
    from recolor.planning import training_dataset
    from recolor.registry import get_model_spec
    from recolor.training.loop import TrainSettings, Trainer, build_recipe, lab_batch, resolve_device

    spec = get_model_spec(model)
    config = spec.config(overrides)
    dataset = training_dataset(spec, config, folder, train=True)  # as `recolor train` chooses it
    # nothing is written: the loop below never checkpoints
    settings = TrainSettings(out_dir=Path(tempfile.gettempdir()) / "recolor-bench-train-run", batch_size=config["batch_size"], workers=workers,
                             precision=precision, progress=False)
    recipe = build_recipe(spec.name, config, resolve_device("auto"))
    trainer = Trainer(recipe, dataset, None, settings)
    recipe.prepare(dataset)
    batches = itertools.chain.from_iterable(itertools.repeat(trainer.loader))  # epochs back to back
    started = None
    for index, batch in enumerate(batches):
        if index == warmup:
            synchronize()
            started = time.perf_counter()
        if index == warmup + steps:
            break
        data = lab_batch(batch["rgb"], trainer.device, settings.channels_last)
        data["label"] = batch["label"].to(trainer.device)
        recipe.run_train_step(data)
    synchronize()
    return time.perf_counter() - started, config["batch_size"]


def time_reference_pix2pix(overrides: dict, folder: Path, warmup: int, steps: int) -> float:
    """pix2pix's step the simplest way: fp32, NCHW, no loader workers, nothing frozen."""
    import recolor.training  # noqa: F401
    from recolor.color import rgb_to_lab_normalized
    from recolor.data import ColorPhotoDataset
    from recolor.losses import gan_discriminator_loss, gan_generator_loss
    from recolor.networks.patchgan import PatchDiscriminator
    from recolor.registry import get_model_spec

    spec = get_model_spec("pix2pix")
    config = spec.config(overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = spec.build(config).to(device)
    critic = PatchDiscriminator(in_channels=3, ndf=config["ndf"], n_layers=config["d_layers"], norm="batch").to(device)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config["lr"], betas=tuple(config["betas"]))
    optimizer_d = torch.optim.Adam(critic.parameters(), lr=config["lr"], betas=tuple(config["betas"]))
    loader = torch.utils.data.DataLoader(ColorPhotoDataset(folder, size=config["image_size"]), batch_size=config["batch_size"], shuffle=True, drop_last=True)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    started = None
    for index, batch in enumerate(batches):
        if index == warmup:
            synchronize()
            started = time.perf_counter()
        if index == warmup + steps:
            break
        lightness, ab = rgb_to_lab_normalized(batch["rgb"].to(device).float() / 255)
        fake = generator(lightness)
        d_loss = gan_discriminator_loss(critic(lightness, ab), critic(lightness, fake.detach()))
        optimizer_d.zero_grad()
        d_loss.backward()
        optimizer_d.step()
        g_loss = gan_generator_loss(critic(lightness, fake)) + config["l1_lambda"] * (fake - ab).abs().mean()
        optimizer_g.zero_grad()
        g_loss.backward()
        optimizer_g.step()
    synchronize()
    return time.perf_counter() - started


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def child(args: argparse.Namespace) -> None:
    overrides = json.loads(args.overrides)
    folder = Path(args.data)
    seconds, batch = time_trainer(args.model, overrides, folder, args.precision, args.warmup, args.steps, args.workers)
    record = {"model": args.label, "precision": args.precision, "batch": batch, "images_per_s": round(args.steps * batch / seconds, 2)}
    if args.reference:
        reference = time_reference_pix2pix(overrides, folder, args.warmup, args.steps)
        record["reference_images_per_s"] = round(args.steps * batch / reference, 2)
        record["speedup"] = round(reference / seconds, 2)
    record["peak_rss_mb"] = round(peak_rss_mb())
    if torch.cuda.is_available():
        record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", help="pix2pix@128, pix2pix@256 or registered model names (default: all)")
    parser.add_argument("--data", type=Path, default=None, help="training photos (default: ../shared/data/photos/train)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=min(4, max(1, (os.cpu_count() or 2) // 2)), help="DataLoader workers (the CLI's default)")
    parser.add_argument("--quick", action="store_true", help="tiny widths and sizes, 2+3 steps")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import recolor.training  # noqa: F401
    from recolor.registry import list_models

    names = args.models or ["pix2pix@128", "pix2pix@256"] + [spec.name for spec in list_models() if spec.name != "pix2pix"]
    if args.quick:
        args.warmup, args.steps = 2, 3
    half = "fp16" if torch.cuda.is_available() else "bf16"
    folder = training_data(args.data)
    print(f"machine: {machine()}\ndata: {folder}; {args.warmup} warm-up + {args.steps} timed steps; {args.workers} loader workers")
    rows = []
    for name in names:
        model, overrides = model_overrides(name, args.quick)
        for precision in ("fp32", half):
            command = ["--model", model, "--label", name, "--overrides", json.dumps(overrides), "--precision", precision, "--data", str(folder),
                       "--warmup", str(args.warmup), "--steps", str(args.steps), "--workers", str(args.workers)]
            if model == "pix2pix" and precision == half:
                command.append("--reference")
            try:
                record = run_child(SCRIPT, command)
            except RuntimeError as exc:
                print(f"  {name} {precision}: FAILED {str(exc).splitlines()[-1]}")
                continue
            rows.append(record)
            line = f"  {name:14s} {precision}: {record['images_per_s']:8.2f} images/s (batch {record['batch']}), peak RSS {record['peak_rss_mb']} MB"
            if "speedup" in record:
                line += f"; plain reference loop {record['reference_images_per_s']:.2f} images/s -> speed-up {record['speedup']:.2f}x"
            print(line, flush=True)
    columns = ["model", "precision", "batch", "images_per_s", "reference_images_per_s", "speedup", "peak_rss_mb"]
    print("\n" + table(rows, columns + (["peak_gpu_mb"] if torch.cuda.is_available() else [])))


if __name__ == "__main__":
    main()
