"""The `recolor` command line: a thin layer over the Python API.

Each command parses its options, asks :mod:`recolor.planning` what to do (inputs, outputs, skips,
datasets, the distributed set-up), runs it through the package and prints. Exit codes: 0 every
file succeeded, 1 some file failed (a bad image in a folder, or any file named explicitly that is
not an image: files in folders that are not images by extension are left out, not failed), 2 bad
usage, found before any work (nothing to do, unknown model, unreadable checkpoint, contradictory
options, unusable device or size, unwritable output folder). Human messages go to stderr, one line
each, never a traceback; ``--json`` output goes to stdout.

Start-up: this module imports only typer; torch, the models, rich and the planning's helpers are
imported by the command that needs them (``--help`` stays fast). Help is click's plain text:
typer's rich help formatting alone took as long to import as the rest of ``recolor --help``.
"""
# No ``from __future__ import annotations`` here: typer would then evaluate every option's
# annotation from its string on each start (a tenth of ``--help``'s own time).
import contextlib
import functools
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, Optional

import typer

from . import DEFAULT_MODEL

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, help="Colorize greyscale photos with deep generative models.")

MODEL_HELP = ("Model name (shipped weights) or a .safetensors checkpoint. A model name wins over a file or folder of that name "
              "in the working directory: write ./NAME (or a path ending in .safetensors) for the file.")


@functools.cache
def err() -> "Console":
    """The stderr console, made on first use (importing rich costs start-up time that ``--help`` does not need)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # one message, one line: scripts grep these


def shown(text: object) -> str:
    """Text (paths above all) safe to print through rich: markup escaped, line breaks visible as \\n."""
    from rich.markup import escape

    return escape(str(text).replace("\n", "\\n").replace("\r", "\\r"))


def show_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"recolor {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Colorize greyscale photos with deep generative models."""


def fail(message: str, code: int = 2) -> None:
    err().print(f"[red]error:[/] {shown(message)}", highlight=False)
    raise typer.Exit(code)


def loaded(load: Callable[[], object]):
    """What ``load()`` returns (a model, a sampler), or exit 2 with its one-line complaint."""
    from .checkpoint import CheckpointError

    try:
        return load()
    except (CheckpointError, KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))


def tell_not_images(not_images: int) -> None:
    if not_images:
        files = "file that is not an image" if not_images == 1 else "files that are not images"
        err().print(f"note: left out {not_images} {files} (by extension) in the input folders", highlight=False)


class RunReport:
    """The per-file records of a run: JSON lines on stdout with ``--json``, failures on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json, self.records, self.told_colour = as_json, [], False

    def emit(self, record: dict) -> None:
        self.records.append(record)
        if self.as_json:
            print(json.dumps(record), flush=True)
        if record["status"] == "error":
            err().print(f"[red]failed:[/] {shown(record['error'])}", highlight=False)
        if record.get("note"):
            err().print(f"note: {shown(record['note'])}", highlight=False)
        if record.get("was_colour") and not self.told_colour:
            self.told_colour = True
            err().print("note: some inputs are already in colour; they are colorized from their lightness only", highlight=False)

    def counts(self) -> dict[str, int]:
        from .planning import count_statuses

        return count_statuses(self.records)


@contextlib.contextmanager
def progress_bar(label: str, total: int, quiet: bool) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr (none when quiet, when nothing is to do, or when stderr
    is not a terminal: a log file would get a stray blank line where the bar was); yields advance()."""
    if quiet or not total or not err().is_terminal:
        yield lambda steps=1: None  # and rich.progress is not even imported
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err(), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda steps=1: progress.advance(task, steps)


# --- colorize -------------------------------------------------------------------------------

@app.command()
def colorize(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output folder, default ./colorized (folder and glob inputs keep their sub-folders).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = DEFAULT_MODEL,
    size: Annotated[Optional[int], typer.Option(min=1, help="Model input size in pixels (default: the model's own); changes the colours, see README.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 8,
    precision: Annotated[str, typer.Option(help="auto (bf16 on CPUs with native bf16, else fp32; fp16/bf16 on CUDA), fp32, bf16, fp16.")] = "auto",
    chroma: Annotated[float, typer.Option(min=0.0, max=2.0, help="Scale the predicted colour: 1 the model's own, below 1 more muted (0 grey), above 1 stronger.")] = 1.0,
    fmt: Annotated[Optional[str], typer.Option("--format", help="Output extension (png, jpg, webp, tif); default: the input's.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: skip them).")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="Replace each INPUT file with its colorization (not with -o or --format).")] = False,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this (decompression bombs); default 150,000,000.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per file on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads that decode (and as many that save) beside the model; default: half the cores on CPU, up to 8 on GPU.")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (pays off on long GPU runs; see benchmarks/README.md).")] = False,
) -> None:
    """Colorize photos at their full resolution with the photo's own lightness."""
    from .imageio import DEFAULT_MAX_PIXELS, allow_pixels
    from .inference import Colorizer
    from .pipeline import colorize_files
    from .planning import UsageError, plan_colorize

    try:
        plan = plan_colorize(inputs, output, fmt, overwrite=overwrite, in_place=in_place)
    except UsageError as exc:
        fail(str(exc))
    colorizer = loaded(lambda: Colorizer.load(model, device=device, size=size, precision=precision, compile=compile_model, chroma=chroma))
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    allow_pixels(max_pixels)  # once, before the decoding threads start
    report = RunReport(as_json)
    for record in plan.records:
        report.emit(record)
    plan.clean_output_folders()
    started = time.perf_counter()
    with progress_bar("colorize", len(plan.jobs), quiet) as advance:
        # decoding and saving run in threads beside the batched model (recolor/pipeline.py)
        for outcome in colorize_files(colorizer, plan.jobs, batch_size=batch_size, workers=workers, max_image_pixels=max_pixels):
            report.emit(outcome_record(outcome))
            advance()
    tell_not_images(plan.not_images)
    counts = report.counts()
    err().print(f"{counts['ok']} colorized, {counts['skipped']} skipped, {counts['error']} failed in {time.perf_counter() - started:.1f} s "
                f"with {shown(colorizer.name)} -> {shown(plan.out_dir) if not in_place else 'inputs'}", highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)


def outcome_record(outcome) -> dict:
    """The JSON record of one colorized file: its planned record completed with what happened."""
    record = outcome.job.tag
    if not outcome.ok:
        return record | {"status": "error", "error": outcome.error}
    return record | {"width": outcome.width, "height": outcome.height, "was_colour": outcome.was_colour} | ({"note": outcome.note} if outcome.note else {})


# --- diverse colorization (paper 004) ---------------------------------------------------------

@app.command("sample-diverse")
def sample_diverse(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    k: Annotated[int, typer.Option("-k", "--samples", min=1, help="Colorizations per photo.")] = 5,
    model: Annotated[str, typer.Option("--model", "-m", help="divcolor, divcolor-skip, cvae, pix2pix-dropout, or a .safetensors checkpoint (a name wins over a same-named file: write ./NAME for it).")] = "divcolor",
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder: NAME_1..NAME_k and NAME_sheet.png per photo.")] = Path("diverse"),
    method: Annotated[str, typer.Option(help="topk: MDN means by weight / k-means centres of the draws; random: random draws.")] = "topk",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same pictures).")] = 0,
    draws: Annotated[int, typer.Option(min=1, help="Draws clustered into k by the cvae and pix2pix-dropout baselines.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 4,
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
    fmt: Annotated[Optional[str], typer.Option("--format", help="Output extension (png, jpg, webp, tif); default: the input's.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: skip the photo).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per photo on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Write K different colorizations of each photo at full resolution, plus a labelled contact sheet."""
    from .diverse import load_sampler, sample_jobs
    from .inference import iter_batches
    from .planning import UsageError, count_statuses, plan_sample_diverse

    try:
        plan = plan_sample_diverse(inputs, output, k, fmt, overwrite=overwrite)
    except UsageError as exc:
        fail(str(exc))

    def checked_sampler():
        sampler = load_sampler(model, device=device, precision=precision, draws=draws)
        sampler.check(k, method)
        return sampler

    sampler = loaded(checked_sampler)
    records = list(plan.records)
    plan.clean_output_folders()
    started = time.perf_counter()
    with progress_bar("sample", len(plan.jobs), quiet) as advance:
        for batch in iter_batches(plan.jobs, batch_size):
            records += sample_jobs(sampler, batch, k, method, seed)
            advance(len(batch))
    tell_not_images(plan.not_images)
    for record in records:
        if as_json:
            print(json.dumps(record), flush=True)
        if record["status"] == "error":
            err().print(f"[red]failed:[/] {shown(record['error'])}", highlight=False)
    counts = count_statuses(records)
    err().print(f"{counts['ok']} sampled ({k} each), {counts['skipped']} skipped, {counts['error']} failed in "
                f"{time.perf_counter() - started:.1f} s with {shown(sampler.name)} -> {shown(output)}", highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)


# --- training -------------------------------------------------------------------------------

@app.command()
def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `recolor models`).")] = DEFAULT_MODEL,
    data: Annotated[Path, typer.Option(help="Folder tree of colour photos for training.")] = Path("data/train"),
    val: Annotated[Optional[Path], typer.Option(help="Held-out folder for validation ab-L1 and samples.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, logs, samples.")] = Path("runs/train"),
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Default: the model's.")] = None,
    size: Annotated[Optional[int], typer.Option(min=1, help="Training crop size (default: the model's image_size); must fit the network (see --set).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate (default: the paper's).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Config override key=value (repeatable), e.g. --set ngf=32.")] = None,
    encoder_weights: Annotated[Optional[str], typer.Option("--encoder-weights", help="Pre-trained encoder (resnet18, effnet-unet): imagenet, none, or a local .safetensors/.pth state dict.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = min(4, max(1, (os.cpu_count() or 2) // 2)),
    save_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps (and every epoch).")] = 500,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after N steps in all.")] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget; stops cleanly (checkpoint + export).")] = None,
    decay_epochs: Annotated[int, typer.Option("--decay-epochs", min=0, help="Learning rates fall linearly to zero over the last N of --epochs (pix2pix's n_epochs_decay); 0: constant.")] = 0,
    seed: Annotated[int, typer.Option()] = 0,
    min_chroma: Annotated[Optional[float], typer.Option("--min-chroma", min=0.0, help="Skip training photos whose mean Lab chroma (64 px thumbnail) is below this: faded, sepia and near-grey photos teach grey. Default 4 (only near-greyscale); validation keeps every photo.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint (a fresh run when it has none). May change: --lr, --epochs, --decay-epochs, --max-steps, --max-minutes, --ema, --swa-from-epoch; refused: --set, --size, --batch-size, --encoder-weights, --seed.")] = False,
    swa_from_epoch: Annotated[Optional[int], typer.Option("--swa-from-epoch", min=1, help="Export the average of the generator's weights over the epochs from this one on (BatchNorm statistics recomputed).")] = None,
    ema: Annotated[float, typer.Option("--ema", min=0.0, max=0.9999, help="Validate and export the exponential moving average of the generator's weights with this decay (e.g. 0.999); 0: off.")] = 0.0,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="Fine-tune: start from this checkpoint (a run's last.safetensors or exported weights; its architecture config is used).")] = None,
    export: Annotated[Optional[Path], typer.Option(help="Also write the fp16 inference weights here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    sync_batchnorm: Annotated[bool, typer.Option("--sync-batchnorm", help="Under torchrun on GPUs: BatchNorm statistics over all ranks' batches (default: each rank's own).")] = False,
) -> None:
    """Train any registered model on a folder of colour photos (CPU or CUDA, resumable; multi-GPU/multi-machine under torchrun)."""
    import torch

    from .checkpoint import CheckpointError
    from .data import NoUsablePhotos
    from .planning import distributed_context, end_distributed, parse_overrides, skipped_files_notes, training_config, training_datasets
    from .registry import get_model_spec
    from .training.loop import TrainingDiverged, TrainSettings, Trainer, build_recipe, resolve_device

    try:
        spec = get_model_spec(model)
        options = {"lr": lr, "image_size": size, "batch_size": batch_size, "encoder_weights": encoder_weights}
        overrides = parse_overrides(set_ or []) | {key: value for key, value in options.items() if value is not None}
        config = training_config(spec, overrides, out, resume, init_from)
        spec.check_image_size(config)
        torch.manual_seed(seed)
        train_data, val_data = training_datasets(spec, config, data, val, min_chroma=min_chroma)
        for note in skipped_files_notes(train_data, val_data):
            err().print(f"note: {shown(note)}", highlight=False)
        dist = distributed_context(device)
        try:
            settings = TrainSettings(
                out_dir=out, epochs=epochs, batch_size=config["batch_size"], workers=workers,
                precision=precision, save_every=save_every, max_steps=max_steps, max_minutes=max_minutes, decay_epochs=decay_epochs, seed=seed, progress=not quiet,
                export=export, init_from=init_from, swa_from_epoch=swa_from_epoch, ema_decay=ema, rank=dist["rank"], world_size=dist["world_size"], sync_batchnorm=sync_batchnorm,
            )
            recipe = build_recipe(spec.name, config, resolve_device(str(dist["device"])))
            trainer = Trainer(recipe, train_data, val_data, settings, console=err())
            result = trainer.fit(resume=resume)
        finally:
            end_distributed(dist)
    except TrainingDiverged as exc:  # not bad usage: exit 1, the last good checkpoint stays
        fail(str(exc), 1)
    except NoUsablePhotos:  # raised in a DataLoader worker, whose re-raise wraps the message in a traceback
        fail(f"{data}: no usable colour photo: every photo is unreadable or its mean chroma is below {train_data.min_chroma:g} (--min-chroma)", 1)
    except (KeyError, ValueError, FileNotFoundError, CheckpointError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except OSError as exc:  # a full disk, a read-only run folder: the run stops, its last checkpoint stays good
        fail(f"{exc.filename or out}: {exc.strerror or exc} (the last checkpoint in {out} is intact; --resume continues from it)", 1)
    if dist["rank"] == 0:
        print(json.dumps({"model": spec.name, "out": str(out), **result}))


@app.command("models")
def list_models_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every model with its paper and a one-line description."""
    from rich.console import Console
    from rich.table import Table

    from .checkpoint import ships_weights
    from .registry import list_models

    rows = [{"name": spec.name, "paper": spec.paper, "shipped_weights": ships_weights(spec.name), "description": spec.description}
            for spec in list_models()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("model", "paper", "weights", "description")
    for row in rows:
        table.add_row(row["name"], row["paper"], "shipped" if row["shipped_weights"] else "-", row["description"])
    Console().print(table)


# --- evaluation (recolor/evaluate.py) -----------------------------------------------------------

@app.command()
def evaluate(
    data: Annotated[Optional[Path], typer.Option(help="Folder of colour photos: the ground truth (class sub-folders give labels).")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model name or checkpoint to score (repeatable; default: every model with shipped weights).")] = None,
    predictions: Annotated[Optional[list[str]], typer.Option(help="Folder of colorized images matched to --data by relative path, or NAME=DIR (repeatable).")] = None,
    metric: Annotated[Optional[list[str]], typer.Option("--metric", help="ab-l1, weighted, psnr, ssim, colourfulness, diversity, accuracy, cim, omega, is, fid or all (repeatable). Default: the pixel metrics, plus those whose network you pass.")] = None,
    classifier: Annotated[Optional[str], typer.Option(help="For accuracy/CIM/Omega: resnet56-cifar10:PATH, resnet18 (downloads), resnet18:PATH ... Default resnet18.")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="For IS/FID: inception_v3 (downloads), inception_v3:PATH, or any classifier spec (e.g. resnet56-cifar10:PATH).")] = None,
    size: Annotated[Optional[int], typer.Option(help="Evaluation resolution: photos are resized and centre-cropped to SIZE x SIZE (default: min(256, smallest photo)).")] = None,
    chroma: Annotated[float, typer.Option(min=0.0, max=2.0, help="Score the models' colorizations with their colour scaled by this (as colorize --chroma).")] = 1.0,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Score a random subset of N photos (seeded).")] = None,
    samples: Annotated[int, typer.Option(min=2, help="Colorizations per photo for the diversity metrics.")] = 5,
    sample_method: Annotated[str, typer.Option(help="Diversity sampling: topk (paper 004) or random.")] = "topk",
    omega_steps: Annotated[int, typer.Option(min=1, help="Omega: fine-tuning steps per classifier copy (tiny by default; paper 003: 2 epochs).")] = 10,
    omega_images: Annotated[int, typer.Option(min=2, help="Omega: photos the copies are fine-tuned on.")] = 256,
    is_splits: Annotated[int, typer.Option(min=1, help="Inception Score splits.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout (the table goes to stderr); `--json > scores.json` keeps them.")] = False,
    report: Annotated[Optional[Path], typer.Option(help="Write an HTML report (table, bar charts, sample photos) into this folder.")] = None,
    report_samples: Annotated[int, typer.Option(min=0, help="Photos shown side by side in the report.")] = 8,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda ...")] = "auto",
    precision: Annotated[str, typer.Option(help="Models' autocast: auto, fp32, bf16, fp16.")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score models on held-out colour photos with the papers' metrics: a table, JSON, an HTML report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .evaluate import EvalSettings, EvaluationError, print_table, write_report
    from .evaluate import evaluate as run_evaluation

    if data is None:
        fail("pass --data DIR: a folder of colour photos to use as ground truth")
    settings = EvalSettings(
        data=data, models=model or [], predictions=predictions or [], metrics=metric, size=size, limit=limit,
        classifier=classifier, backbone=backbone, samples=samples, sample_method=sample_method, omega_steps=omega_steps, omega_images=omega_images,
        is_splits=is_splits, batch_size=batch_size, device=device, precision=precision, seed=seed, report_samples=report_samples, chroma=chroma,
    )
    columns = [TextColumn("evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=err(), disable=quiet or not err().is_terminal, transient=True) as progress:
            task = progress.add_task("evaluate", total=None)
            result = run_evaluation(settings, progress=lambda done, total: progress.update(task, completed=done, total=total),
                                    log=lambda message: progress.console.print(shown(message), highlight=False))
    except EvaluationError as exc:
        fail(str(exc))
    print_table(result, err() if as_json else Console())
    if as_json:
        print(json.dumps(result.to_json(), indent=1))
    if report is not None:
        err().print(f"report: {shown(write_report(result, report))}", highlight=False)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def handle_termination() -> None:
    """SIGTERM (``kill``, a scheduler's time limit) ends the run as Ctrl-C does: temporary files are
    removed, finished outputs stay."""
    signal.signal(signal.SIGTERM, _terminate)


def main() -> None:
    handle_termination()
    app()


if __name__ == "__main__":
    main()
