"""The `recolor` command line: a thin layer over the Python API.

Exit codes: 0 every file succeeded, 1 some file failed, 2 bad usage (nothing to do, unknown model,
unreadable checkpoint). Human messages go to stderr; ``--json`` records go to stdout.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Colorize greyscale photos with deep generative models.")
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


# --- inputs and outputs ---------------------------------------------------------------------

def expand_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for files, folders (recursive) and globs."""
    from .imageio import list_image_files

    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += [(f, f.relative_to(path)) for f in list_image_files(path, all_files=True)]
        elif path.exists():
            found.append((path, Path(path.name)))
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            found += [(m, Path(m.name)) for m in matches if m.is_file()]
        else:
            found.append((path, Path(path.name)))  # reported as "no such file" per file
    return found


def plan_output(source: Path, relative: Path, out_dir: Path, suffix: str | None, in_place: bool) -> Path:
    if in_place:
        return source
    target = out_dir / relative
    return target.with_suffix(suffix) if suffix else target


@app.command()
def colorize(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder (folder inputs keep their sub-folders).")] = Path("colorized"),
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (shipped weights) or a .safetensors checkpoint.")] = "pix2pix",
    size: Annotated[Optional[int], typer.Option(help="Model input size in pixels (default: the model's own).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 8,
    precision: Annotated[str, typer.Option(help="auto (bf16 on CPU, fp16/bf16 on CUDA), fp32, bf16, fp16.")] = "auto",
    fmt: Annotated[Optional[str], typer.Option("--format", help="Output extension (png, jpg, webp, tif); default: the input's.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: skip them).")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="Replace each INPUT file with its colorization.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per file on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Colorize photos at their full resolution with the photo's own lightness."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .checkpoint import CheckpointError
    from .imageio import ImageReadError, load_image, output_format, save_image
    from .inference import Colorizer, iter_batches

    suffix = None
    if fmt:
        suffix = "." + fmt.lower().lstrip(".")
        try:
            output_format("x" + suffix)
        except ValueError as exc:
            fail(str(exc).removeprefix("x: "))
    files = expand_inputs(inputs)
    out_dir = output.resolve()
    # never read our own outputs back in when the output folder sits inside an input folder
    files = [(f, r) for f, r in files if out_dir not in f.resolve().parents]
    if not files:
        fail("no input files found")
    try:
        colorizer = Colorizer.load(model, device=device, size=size, precision=precision)
    except (CheckpointError, KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))

    records: list[dict] = []
    told_colour = False
    claimed: dict[Path, Path] = {}

    def emit(record: dict) -> None:
        nonlocal told_colour
        records.append(record)
        if as_json:
            print(json.dumps(record), flush=True)
        if record["status"] == "error":
            err.print(f"[red]failed:[/] {record['error']}", highlight=False)
        if record.get("was_colour") and not told_colour:
            told_colour = True
            err.print("note: some inputs are already in colour; they are colorized from their lightness only", highlight=False)

    todo = []
    for source, relative in files:
        target = plan_output(source, relative, out_dir, suffix, in_place)
        record = {"input": str(source), "output": str(target), "status": "ok"}
        try:
            output_format(target)
        except ValueError as exc:
            emit(record | {"status": "error", "error": f"{source}: {exc}"})
            continue
        if target.resolve() == source.resolve() and not in_place:
            emit(record | {"status": "error", "error": f"{source}: output would overwrite the input (use another --output or --in-place)"})
        elif target.resolve() in claimed:
            emit(record | {"status": "error", "error": f"{source}: output {target} is also the output of {claimed[target.resolve()]}"})
        elif target.exists() and not overwrite and not in_place:
            claimed[target.resolve()] = source
            emit(record | {"status": "skipped", "reason": "output exists (use --overwrite)"})
        else:
            claimed[target.resolve()] = source
            todo.append((source, target, record))

    columns = [TextColumn("colorize"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    started = time.perf_counter()
    with Progress(*columns, console=err, disable=quiet or not todo, transient=True) as progress:
        task = progress.add_task("colorize", total=len(todo))
        for batch in iter_batches(todo, batch_size):
            loaded, pending = [], []
            for source, target, record in batch:
                try:
                    loaded.append(load_image(source))
                    pending.append((source, target, record))
                except ImageReadError as exc:
                    emit(record | {"status": "error", "error": str(exc)})
                    progress.advance(task)
            for image, result, (source, target, record) in zip(loaded, colorizer.colorize_loaded(loaded), pending):
                try:
                    save_image(target, result.rgb, result.alpha, image.icc_profile)
                    width, height = image.size
                    emit(record | {"width": width, "height": height, "was_colour": result.was_colour})
                except (OSError, ValueError) as exc:
                    emit(record | {"status": "error", "error": f"{target}: could not write ({exc})"})
                progress.advance(task)
    counts = {status: sum(r["status"] == status for r in records) for status in ("ok", "skipped", "error")}
    seconds = time.perf_counter() - started
    summary = f"{counts['ok']} colorized, {counts['skipped']} skipped, {counts['error']} failed in {seconds:.1f} s with {colorizer.name} -> {out_dir if not in_place else 'inputs'}"
    err.print(summary, highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)


# --- training -------------------------------------------------------------------------------

def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs; values are parsed as JSON when they parse (numbers, lists, booleans)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got '{pair}'")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


@app.command()
def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `recolor models`).")] = "pix2pix",
    data: Annotated[Path, typer.Option(help="Folder tree of colour photos for training.")] = Path("data/train"),
    val: Annotated[Optional[Path], typer.Option(help="Held-out folder for validation ab-L1 and samples.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, logs, samples.")] = Path("runs/train"),
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Default: the model's.")] = None,
    size: Annotated[Optional[int], typer.Option(help="Training crop size (default: the model's image_size).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the paper's).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Config override key=value (repeatable), e.g. --set ngf=32.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = min(4, max(1, (os.cpu_count() or 2) // 2)),
    save_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps (and every epoch).")] = 500,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after N steps in all.")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget; stops cleanly (checkpoint + export).")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    export: Annotated[Optional[Path], typer.Option(help="Also write the fp16 inference weights here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train any registered model on a folder of colour photos (CPU or CUDA, resumable)."""
    import torch

    from .checkpoint import CheckpointError, load_checkpoint
    from .data import ColorPhotoDataset
    from .registry import get_model_spec
    from .training.loop import CHECKPOINT_NAME, TrainSettings, Trainer, build_recipe, resolve_device

    try:
        spec = get_model_spec(model)
        overrides = parse_overrides(set_ or [])
        if lr is not None:
            overrides["lr"] = lr
        if size is not None:
            overrides["image_size"] = size
        if batch_size is not None:
            overrides["batch_size"] = batch_size
        if resume and (out / CHECKPOINT_NAME).exists():
            # the run's own config wins: a resumed run must rebuild the same networks
            stored = load_checkpoint(out / CHECKPOINT_NAME)
            if stored.model != spec.name:
                fail(f"{out}: that run trains '{stored.model}', not '{spec.name}'")
            overrides = stored.config | {k: v for k, v in overrides.items() if k in ("lr",)}
        config = spec.config(overrides)
        torch.manual_seed(seed)
        train_data = spec.recipe.dataset(data, config, train=True) if hasattr(spec.recipe, "dataset") else ColorPhotoDataset(data, size=config["image_size"], train=True)
        val_data = None
        if val is not None:
            val_data = spec.recipe.dataset(val, config, train=False) if hasattr(spec.recipe, "dataset") else ColorPhotoDataset(val, size=config["image_size"], train=False)
        dist = distributed_context(device)
        settings = TrainSettings(
            out_dir=out, epochs=epochs, batch_size=config["batch_size"], workers=workers, device=str(dist["device"]),
            precision=precision, save_every=save_every, max_steps=max_steps, max_minutes=max_minutes, seed=seed, progress=not quiet,
            export=export, rank=dist["rank"], world_size=dist["world_size"],
        )
        recipe = build_recipe(spec.name, config, resolve_device(settings.device))
        trainer = Trainer(recipe, train_data, val_data, settings, console=err)
        result = trainer.fit(resume=resume)
    except (KeyError, ValueError, FileNotFoundError, CheckpointError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    if dist["rank"] == 0:
        print(json.dumps({"model": spec.name, "out": str(out), **result}))


def distributed_context(device: str) -> dict:
    """Single-process defaults; torchrun support (issue 6) replaces this."""
    return {"rank": 0, "world_size": 1, "device": device}


@app.command("models")
def list_models_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every model with its paper and a one-line description."""
    from rich.table import Table

    from .inference import weights_dirs
    from .registry import list_models

    rows = []
    for spec in list_models():
        shipped = any((d / f"{spec.name}.safetensors").is_file() for d in weights_dirs())
        rows.append({"name": spec.name, "paper": spec.paper, "shipped_weights": shipped, "description": spec.description})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("model", "paper", "weights", "description")
    for row in rows:
        table.add_row(row["name"], row["paper"], "shipped" if row["shipped_weights"] else "-", row["description"])
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
