"""The CIFAR-10 study of papers 000 and 003: train colorizers on CIFAR-10, judge them with a classifier.

Paper 000 trains its colorizers (CNN, CVAE, CWGAN-GP, AGE, IntroVAE) on the 50,000 CIFAR-10
training images and reports the Inception Score of the colorized test images; paper 003 judges
colorizers by what a classifier makes of their output (accuracy, CIM, Omega; its Table 1). This
script does both on the same footing:

1. extracts a class-balanced subset of ``../shared/data/cifar10.zip`` (``train/CLASS/*.jpg``,
   ``test/CLASS/*.jpg``) into a cache folder outside the repository (reused on later runs);
2. trains each model (any name ``recolor models`` lists, each with its own step budget) on the
   training subset at 32 px, resumably, in ``--out/<model>/``;
3. scores every model and the baselines on the test subset with the shared ResNet-56 CIFAR-10
   classifier: accuracy, CIM, Omega, and Inception Score / FID computed with the same ResNet-56
   (classifier-based: NOT comparable with published Inception-v3 figures), plus ab L1;
4. writes ``--out/table.md`` (like paper 003, Table 1), ``--out/results.json`` and an HTML report.

Without ``../shared`` (a user's machine) it prints why and exits 0.

    # the real figures (see the README / the issue for the measured cost per step)
    python benchmarks/cifar10_study.py --steps 5000 --omega-steps 400 --omega-images 5000
    # a quick end-to-end check: 500 train / 500 test images, a few dozen steps
    python benchmarks/cifar10_study.py --train-images 500 --test-images 500 --steps 30 --omega-steps 5 --omega-images 64

Deviations, deliberate: all models train at CIFAR's native 32 px (paper 000's networks take any
multiple of 8; the U-Net of pix2pix gets ``num_downs=5``); training uses each recipe's own
augmentation (ColorPhotoDataset: random rescale up to 1.25x, crop, flip) and skips near-grey
images; Omega fine-tunes copies of the pretrained ResNet-56 rather than training VGG16s for two
epochs on a disjoint set.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CLASSIFIER_FILE = Path("models") / "cifar10-resnet" / "resnet56-4bfd9763.th"
DEFAULT_CACHE = Path(os.environ.get("RECOLOR_CACHE", Path.home() / ".cache" / "recolor")) / "cifar10"


def default_models() -> list[str]:
    """Every registered model of paper 000, and pix2pix (papers 001-003's reference cGAN)."""
    from recolor.registry import list_models

    return [spec.name for spec in list_models() if spec.paper.startswith("000")] + ["pix2pix"]


def parse_models(text: str | None, default_steps: int) -> list[tuple[str, int]]:
    """``"cnn-l1:2000,pix2pix"`` -> [("cnn-l1", 2000), ("pix2pix", default_steps)]."""
    names = [part.strip() for part in text.split(",") if part.strip()] if text else default_models()
    out = []
    for item in names:
        name, _, steps = item.partition(":")
        out.append((name, int(steps) if steps else default_steps))
    return out


def extract_subset(archive: Path, cache: Path, split: str, count: int) -> Path:
    """``count`` images of ``split`` (the same number from each class, first by name) below the cache.

    Written to a temporary folder and renamed, so an interrupted extraction is never reused.
    """
    target = cache / f"{split}-{count}"
    if (target / ".complete").is_file():
        return target
    with zipfile.ZipFile(archive) as zipped:
        by_class: dict[str, list[str]] = {}
        for name in sorted(zipped.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == split and parts[2].lower().endswith((".jpg", ".jpeg", ".png")):
                by_class.setdefault(parts[1], []).append(name)
        if not by_class:
            raise SystemExit(f"{archive}: no {split}/CLASS/*.jpg entries")
        per_class = math.ceil(count / len(by_class))
        staging = cache / f".{split}-{count}.partial"
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
        written = 0
        for names in by_class.values():
            for name in names[:per_class]:
                if written >= count:
                    break
                destination = staging / Path(*name.split("/")[1:])
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(zipped.read(name))
                written += 1
        (staging / ".complete").write_text(f"{written}\n")  # the marker, written last
    if target.exists():
        import shutil

        shutil.rmtree(target)
    staging.rename(target)
    return target


def study_config(name: str, overrides: dict) -> dict:
    """The model's paper config at 32 px (a U-Net gets one level per halving: 2^5 = 32)."""
    from recolor.registry import get_model_spec

    spec = get_model_spec(name)
    wanted = {"image_size": 32}
    if "num_downs" in spec.default_config:
        wanted["num_downs"] = 5
    wanted.update(overrides)
    return spec.config(wanted)


def train_model(name: str, steps: int, data: Path, out: Path, overrides: dict, args) -> dict:
    """Train (or resume, or skip when already done) one model; returns steps, seconds, weights path."""
    from recolor.planning import training_dataset
    from recolor.registry import get_model_spec
    from recolor.training.loop import CHECKPOINT_NAME, EXPORT_NAME, TrainSettings, Trainer, build_recipe, resolve_device

    spec = get_model_spec(name)
    config = study_config(name, overrides)
    if args.batch_size:
        config["batch_size"] = args.batch_size
    run = out / name
    weights = run / EXPORT_NAME
    state_file = run / "trainer_state.json"
    if weights.is_file() and state_file.is_file() and json.loads(state_file.read_text()).get("step", 0) >= steps:
        print(f"{name}: already trained for {steps} steps ({weights})", flush=True)
        return {"steps": steps, "seconds": None, "weights": str(weights), "config": config}
    torch.manual_seed(args.seed)
    dataset = training_dataset(spec, config, data, train=True)  # as `recolor train` chooses it (config's image_size: 32)
    batch = config["batch_size"]
    epochs = max(1, math.ceil(steps * batch / max(1, len(dataset))) + 1)
    settings = TrainSettings(out_dir=run, epochs=epochs, batch_size=batch, workers=args.workers,
                             save_every=max(100, steps // 10), max_steps=steps, seed=args.seed, progress=not args.quiet, samples=8)
    recipe = build_recipe(name, config, resolve_device(args.device))
    started, cpu_started = time.perf_counter(), time.process_time()
    result = Trainer(recipe, dataset, None, settings).fit(resume=(run / CHECKPOINT_NAME).is_file())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"{name}: {result['steps']} steps in {seconds:.0f} s ({cpu:.0f} s CPU; {seconds / max(1, steps):.3f} s/step)", flush=True)
    return {"steps": result["steps"], "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "weights": str(weights), "config": config}


def markdown_table(result, trained: dict, real_vs_grey: str) -> str:
    keys = [k for k in ("accuracy", "cim", "omega", "is", "fid", "ab_l1") if k in result.metrics]
    from recolor.evaluate import METRICS, format_value

    header = "| model | steps | " + " | ".join(METRICS[k].label for k in keys) + " |"
    lines = [header, "|" + "---|" * (len(keys) + 2)]
    for row in result.rows:
        steps = ""
        for name, info in trained.items():
            if row.source == info["weights"]:
                steps = str(info["steps"])
        values = [format_value(k, row.values.get(k), row.values.get("is_std") if k == "is" else None) for k in keys]
        lines.append(f"| {row.name} | {steps} | " + " | ".join(values) + " |")
    info = result.info
    lines += ["", f"{info['photos']} CIFAR-10 test images at 32 px; classifier and IS/FID backbone: ResNet-56 "
              f"({info['classifier_source']}). IS and FID are classifier-based (10 CIFAR classes, IS at most 10): NOT "
              "comparable with published Inception-v3 figures. " + real_vs_grey, ""]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="Comma-separated model names, each optionally NAME:STEPS (default: paper 000's models and pix2pix).")
    parser.add_argument("--steps", type=int, default=5000, help="Training steps per model unless NAME:STEPS says otherwise.")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="MODEL.KEY=VALUE config override (repeatable).")
    parser.add_argument("--batch-size", type=int, help="Training batch size for every model (default: each model's own).")
    parser.add_argument("--train-images", type=int, default=50_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--omega-steps", type=int, default=200)
    parser.add_argument("--omega-images", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT.parent / "runs" / "cifar10_study")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="Where the extracted CIFAR-10 subset goes (outside the repository).")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-only", action="store_true", help="Score the models already trained in --out (no training).")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    archive, classifier = args.shared / "data" / "cifar10.zip", args.shared / CLASSIFIER_FILE
    for needed in (archive, classifier):
        if not needed.is_file():
            print(f"skipped: {needed} is not present (the study needs ../shared/data/cifar10.zip and the shared ResNet-56)")
            return 0
    try:
        args.cache.resolve().relative_to(ROOT)
        raise SystemExit(f"--cache {args.cache}: must lie outside the repository")
    except ValueError:
        pass

    import recolor.training  # noqa: F401  (registers the models)
    from recolor.evaluate import EvalSettings, evaluate, print_table, write_json, write_report
    from recolor.imageio import atomic_write_bytes
    from recolor.registry import get_model_spec
    from recolor.training.loop import TrainingDiverged
    from rich.console import Console

    models = parse_models(args.models, args.steps)
    overrides: dict[str, dict] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        model, dot, field = key.partition(".")
        if not (sep and dot):
            raise SystemExit(f"--set {item}: expected MODEL.KEY=VALUE")
        try:
            overrides.setdefault(model, {})[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides.setdefault(model, {})[field] = value
    for name, _ in models:  # fail early on a typo, before any extraction or training
        try:
            get_model_spec(name)
            study_config(name, overrides.get(name, {}))
        except KeyError as exc:
            raise SystemExit(f"error: {exc.args[0]}") from None

    started = time.perf_counter()
    train_dir = extract_subset(archive, args.cache, "train", args.train_images)
    test_dir = extract_subset(archive, args.cache, "test", args.test_images)
    print(f"data: {train_dir} ({args.train_images}), {test_dir} ({args.test_images}); models: {', '.join(f'{n}:{s}' for n, s in models)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    trained, failed = {}, {}
    for name, steps in models:
        if args.eval_only:
            weights = args.out / name / "model.safetensors"
            if weights.is_file():
                trained[name] = {"steps": json.loads((args.out / name / "trainer_state.json").read_text()).get("step"), "weights": str(weights)}
            continue
        try:
            trained[name] = train_model(name, steps, train_dir, args.out, overrides.get(name, {}), args)
        except (TrainingDiverged, ValueError) as exc:  # a diverged model (NaN loss) loses its row, not the whole study
            print(f"{name}: {exc}", flush=True)
            failed[name] = str(exc)

    spec = f"resnet56-cifar10:{classifier}"
    evaluation_started = time.perf_counter()
    result = evaluate(EvalSettings(
        data=test_dir, models=[info["weights"] for info in trained.values()], metrics=["ab-l1", "accuracy", "cim", "omega", "is", "fid"],
        classifier=spec, backbone=spec, size=32, batch_size=100, omega_steps=args.omega_steps, omega_images=args.omega_images,
        omega_batch=64, device=args.device, seed=args.seed, report_samples=12,
    ), log=print)
    evaluation_seconds = time.perf_counter() - evaluation_started
    real, grey = result.row("real").values, result.row("grey").values
    real_vs_grey = f"ResNet-56 accuracy: {real['accuracy']:.4f} on the real test images, {grey['accuracy']:.4f} on their greyscale copies."
    print_table(result, Console())
    print(real_vs_grey)
    table = markdown_table(result, trained, real_vs_grey) + "".join(f"- {name}: not scored: {why}\n" for name, why in failed.items())
    atomic_write_bytes(args.out / "table.md", table.encode())
    write_json(result, args.out / "results.json")
    write_report(result, args.out / "report")
    timing = {"training": {n: {k: v for k, v in info.items() if k != "config"} for n, info in trained.items()}, "diverged": failed,
              "evaluation_seconds": round(evaluation_seconds, 1), "total_seconds": round(time.perf_counter() - started, 1)}
    atomic_write_bytes(args.out / "timing.json", (json.dumps(timing, indent=1) + "\n").encode())
    print(f"wrote {args.out / 'table.md'}, results.json, timing.json and report/index.html in {timing['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
