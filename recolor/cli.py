"""The `recolor` command line: a thin layer over the Python API.

Exit codes: 0 every file succeeded, 1 some file failed (a bad image in a folder, or any file named
explicitly that is not an image: files in folders that are not images by extension are left out,
not failed), 2 bad usage, found before any work (nothing to do, unknown model, unreadable
checkpoint, contradictory options, unusable device or size, unwritable output folder). Human
messages go to stderr, one line each, never a traceback; ``--json`` output goes to stdout.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape

from . import DEFAULT_MODEL

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Colorize greyscale photos with deep generative models.")
err = Console(stderr=True, soft_wrap=True)  # one message, one line: scripts grep these


def shown(text: object) -> str:
    """Text (paths above all) safe to print through rich: markup escaped, line breaks visible as \\n."""
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
    err.print(f"[red]error:[/] {shown(message)}", highlight=False)
    raise typer.Exit(code)


def real(path: Path) -> Path:
    """The path with links resolved; never raises (Path.resolve raises on a symlink loop)."""
    return Path(os.path.realpath(path))


# --- inputs and outputs ---------------------------------------------------------------------

@dataclass
class InputFiles:
    """What the command line's inputs name: (file, path relative to the output folder) pairs, and
    how many files met in folders were left out for not being images by their extension."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    not_images: int = 0

    def add(self, file: Path, relative: Path) -> None:
        self.files.append((file, relative))


def glob_root(pattern: str) -> Path:
    """The fixed folder of a glob pattern, before its first wildcard: ``archive`` for ``archive/**/*.tif``."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def expand_inputs(inputs: list[str], out_dir: Path, problems: list[str] | None = None) -> InputFiles:
    """The files named by files, folders (recursive) and globs, each once.

    Folders and globs keep the tree below them (below a glob's fixed folder), so two
    ``scan0001.tif`` in different sub-folders get different outputs. In a folder, files that are
    not images by their extension (sidecars, notes) are counted, not listed: only files named
    explicitly can fail for not being images. A folder scan leaves out the output folder when it
    sits inside the scanned folder, so a second run never colorizes the first run's outputs.
    Folders that cannot be read are named in ``problems``.
    """
    from .imageio import IMAGE_EXTENSIONS, list_image_files

    found = InputFiles()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            inside = out_dir != real(path) and real(path) in out_dir.parents
            for file in list_image_files(path, all_files=True, unreadable=problems):
                if inside and out_dir in real(file).parents:
                    continue
                if file.suffix.lower() in IMAGE_EXTENSIONS:
                    found.add(file, file.relative_to(path))
                else:
                    found.not_images += 1
        elif path.exists() or path.is_symlink():
            found.add(path, Path(path.name))
        elif glob.has_magic(item):
            root = glob_root(item)
            for match in sorted(Path(m) for m in glob.glob(item, recursive=True)):
                if match.is_file():
                    found.add(match, match.relative_to(root))
        else:
            found.add(path, Path(path.name))  # reported as "no such file" per file
    return _each_once(found)


def _each_once(found: InputFiles) -> InputFiles:
    """The same file named twice (or by a folder and a glob) is done once, where first named."""
    seen: set[Path] = set()
    unique = InputFiles(not_images=found.not_images)
    for file, relative in found.files:
        key = file.resolve() if file.exists() else file
        if key not in seen:
            seen.add(key)
            unique.add(file, relative)
    return unique


def clean_output_folders(targets: list[Path]) -> None:
    """Remove temporary files that killed earlier runs left in the folders about to be written."""
    from .imageio import remove_stale_temp_files

    for folder in {target.parent for target in targets}:
        remove_stale_temp_files(folder)


def plan_output(source: Path, relative: Path, out_dir: Path, suffix: str | None, in_place: bool) -> Path:
    """Where the colorization of ``source`` goes; raises ValueError (one line, naming the file) when nowhere.

    The output keeps the input's format unless ``--format`` names one. An input that Pillow
    reads but cannot write in its own format (PSD, PCX, PGM scans...) is written as PNG; an
    input that is not an image at all is reported as such (not as an unwritable extension).
    """
    from .imageio import ImageReadError, output_format, probe_image

    target = source if in_place else out_dir / relative
    if suffix and not in_place:
        target = target.with_suffix(suffix)
    try:
        output_format(target)
        return target
    except ValueError as unwritable:
        try:
            probe_image(source)
        except ImageReadError as exc:
            raise ValueError(str(exc)) from None
        if suffix or in_place:
            raise ValueError(f"{source}: {unwritable}") from None
        return target.with_suffix(".png")


def output_suffix(fmt: str | None) -> str | None:
    """'.png' for ``--format png``; a usage error for a format recolor cannot write."""
    from .imageio import extension_format

    if not fmt:
        return None
    suffix = "." + fmt.lower().lstrip(".")
    try:
        extension_format(suffix)
    except ValueError as exc:
        fail(str(exc))
    return suffix


def check_writable(folder: Path) -> None:
    """A usage error now, not after the model ran on every file, when ``folder`` cannot be written
    (or created: probed in its nearest existing parent, so that a failed run leaves no folder)."""
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        fail(f"{folder}: cannot write to the output folder ({exc.strerror or exc})")


def tell_not_images(found: InputFiles) -> None:
    if found.not_images:
        files = "file that is not an image" if found.not_images == 1 else "files that are not images"
        err.print(f"note: left out {found.not_images} {files} (by extension) in the input folders", highlight=False)


def output_problem(source: Path, target: Path, inputs_of_run: set[Path], in_place: bool) -> str | None:
    """Why ``source`` may not be written to ``target`` (one line naming it), or None.

    Unless ``--in-place``, no output may land on any input of the run (not only its own source):
    ``-o`` = the input folder with ``--format png`` would otherwise replace ``x.png`` with
    ``x.jpg``'s result.
    """
    from .imageio import file_problem

    problem = file_problem(source)
    if problem:
        return f"{source}: {problem}"
    if in_place:
        return None
    if real(target) == real(source):
        return f"{source}: output would overwrite the input (use another --output or --in-place)"
    if real(target) in inputs_of_run:
        return f"{source}: output {target} would overwrite another input (use another --output)"
    return None


@app.command()
def colorize(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output folder, default ./colorized (folder and glob inputs keep their sub-folders).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (shipped weights) or a .safetensors checkpoint.")] = DEFAULT_MODEL,
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
    from .checkpoint import CheckpointError
    from .imageio import DEFAULT_MAX_PIXELS
    from .inference import Colorizer
    from .pipeline import ColorizeJob, colorize_files

    if in_place and (output is not None or fmt):
        fail(f"--in-place replaces each input in its own format: it cannot be combined with {'-o/--output' if output is not None else '--format'}")
    suffix = output_suffix(fmt)
    out_dir = real(output or Path("colorized"))
    unreadable: list[str] = []
    found = expand_inputs(inputs, out_dir, unreadable)
    if not found.files and not unreadable:
        fail("no input files found" + (f" ({found.not_images} not images by extension)" if found.not_images else ""))
    if not in_place:
        check_writable(out_dir)
    try:
        colorizer = Colorizer.load(model, device=device, size=size, precision=precision, compile=compile_model, chroma=chroma)
    except (CheckpointError, KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))

    report = RunReport(as_json)
    for problem in unreadable:
        report.emit({"input": problem.partition(": ")[0], "output": None, "status": "error", "error": problem})
    todo = plan_jobs(found.files, out_dir, suffix, in_place, overwrite, report)
    clean_output_folders([target for _, target, _ in todo])
    started = time.perf_counter()
    with progress_bar("colorize", len(todo), quiet) as advance:
        # decoding and saving run in threads beside the batched model (recolor/pipeline.py)
        jobs = [ColorizeJob(source, target, tag=record) for source, target, record in todo]
        outcomes = colorize_files(colorizer, jobs, batch_size=batch_size, workers=workers, max_image_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        for outcome in outcomes:
            record = outcome.job.tag
            if outcome.ok:
                report.emit(record | {"width": outcome.width, "height": outcome.height, "was_colour": outcome.was_colour}
                            | ({"note": outcome.note} if outcome.note else {}))
            else:
                report.emit(record | {"status": "error", "error": outcome.error})
            advance()
    tell_not_images(found)
    counts = report.counts()
    err.print(f"{counts['ok']} colorized, {counts['skipped']} skipped, {counts['error']} failed in {time.perf_counter() - started:.1f} s "
              f"with {shown(colorizer.name)} -> {shown(out_dir) if not in_place else 'inputs'}", highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)


class RunReport:
    """The per-file records of a run: JSON lines on stdout with ``--json``, failures on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json, self.records, self.told_colour = as_json, [], False

    def emit(self, record: dict) -> None:
        self.records.append(record)
        if self.as_json:
            print(json.dumps(record), flush=True)
        if record["status"] == "error":
            err.print(f"[red]failed:[/] {shown(record['error'])}", highlight=False)
        if record.get("note"):
            err.print(f"note: {shown(record['note'])}", highlight=False)
        if record.get("was_colour") and not self.told_colour:
            self.told_colour = True
            err.print("note: some inputs are already in colour; they are colorized from their lightness only", highlight=False)

    def counts(self) -> dict[str, int]:
        return {status: sum(r["status"] == status for r in self.records) for status in ("ok", "skipped", "error")}


def plan_jobs(files: list[tuple[Path, Path]], out_dir: Path, suffix: str | None, in_place: bool, overwrite: bool, report: RunReport) -> list:
    """(source, target, record) for the files to colorize; the others are reported now."""
    todo: list = []
    claimed: dict[Path, Path] = {}
    inputs_of_run = {real(source) for source, _ in files}
    for source, relative in files:
        try:
            target = plan_output(source, relative, out_dir, suffix, in_place)
        except ValueError as exc:
            report.emit({"input": str(source), "output": None, "status": "error", "error": str(exc)})
            continue
        record = {"input": str(source), "output": str(target), "status": "ok"}
        problem = output_problem(source, target, inputs_of_run, in_place)
        if problem:
            report.emit(record | {"status": "error", "error": problem})
        elif real(target) in claimed:
            report.emit(record | {"status": "error", "error": f"{source}: output {target} is also the output of {claimed[real(target)]}"})
        elif target.exists() and not overwrite and not in_place:
            claimed[real(target)] = source
            report.emit(record | {"status": "skipped", "reason": "output exists (use --overwrite)"})
        else:
            claimed[real(target)] = source
            todo.append((source, target, record))
    return todo


@contextlib.contextmanager
def progress_bar(label: str, total: int, quiet: bool) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr (none when quiet, when nothing is to do, or when stderr
    is not a terminal: a log file would get a stray blank line where the bar was); yields advance()."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=err, disable=quiet or not total or not err.is_terminal, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda steps=1: progress.advance(task, steps)


# --- diverse colorization (paper 004) ---------------------------------------------------------

@app.command("sample-diverse")
def sample_diverse(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or glob patterns.")],
    k: Annotated[int, typer.Option("-k", "--samples", min=1, help="Colorizations per photo.")] = 5,
    model: Annotated[str, typer.Option("--model", "-m", help="divcolor, divcolor-skip, cvae, pix2pix-dropout, or a .safetensors checkpoint.")] = "divcolor",
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
    from .checkpoint import CheckpointError
    from .diverse import load_sampler
    from .inference import iter_batches

    suffix = output_suffix(fmt)
    unreadable: list[str] = []
    found = expand_inputs(inputs, real(output), unreadable)
    if not found.files and not unreadable:
        fail("no input files found" + (f" ({found.not_images} not images by extension)" if found.not_images else ""))
    check_writable(output)
    try:
        sampler = load_sampler(model, device=device, precision=precision, draws=draws)
        sampler.check(k, method)
    except (CheckpointError, KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    records: list[dict] = [{"input": problem.partition(": ")[0], "outputs": [], "sheet": None, "status": "error", "error": problem}
                           for problem in unreadable]
    claimed: set[Path] = set()
    inputs_of_run = {real(source) for source, _ in found.files}
    todo = []
    for source, relative in found.files:
        try:
            paths, sheet = diverse_outputs(plan_output(source, relative, output, suffix, False), source, k, claimed)
        except ValueError as exc:
            records.append({"input": str(source), "outputs": [], "sheet": None, "status": "error", "error": str(exc)})
            continue
        record = {"input": str(source), "outputs": [str(p) for p in paths], "sheet": str(sheet), "status": "ok"}
        problem = next(filter(None, (output_problem(source, p, inputs_of_run, False) for p in (*paths, sheet))), None)
        if problem:
            records.append(record | {"status": "error", "error": problem})
        elif not overwrite and all(p.exists() for p in (*paths, sheet)):
            # done only when every sample and the sheet exist: a killed run left a partial set to redo
            records.append(record | {"status": "skipped", "reason": "outputs exist (use --overwrite)"})
        else:
            todo.append((source, paths, sheet, record))
        claimed |= {real(p) for p in (*paths, sheet)}
    clean_output_folders([sheet for _, _, sheet, _ in todo])
    started = time.perf_counter()
    with progress_bar("sample", len(todo), quiet) as advance:
        for batch in iter_batches(todo, batch_size):
            records += sample_batch(sampler, batch, k, method, seed)
            advance(len(batch))
    tell_not_images(found)
    for record in records:
        if as_json:
            print(json.dumps(record), flush=True)
        if record["status"] == "error":
            err.print(f"[red]failed:[/] {shown(record['error'])}", highlight=False)
    counts = {status: sum(r["status"] == status for r in records) for status in ("ok", "skipped", "error")}
    err.print(f"{counts['ok']} sampled ({k} each), {counts['skipped']} skipped, {counts['error']} failed in "
              f"{time.perf_counter() - started:.1f} s with {shown(sampler.name)} -> {shown(output)}", highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)


def diverse_outputs(target: Path, source: Path, k: int, claimed: set[Path]) -> tuple[list[Path], Path]:
    """The k sample paths and the sheet of one photo; a photo whose names another input of the run
    already has (``p.jpg`` beside ``p.png`` share ``p_sheet.png``) gets its extension in them."""
    from .diverse import output_paths

    paths, sheet = output_paths(target, k)
    if claimed & {real(p) for p in (*paths, sheet)}:
        paths, sheet = output_paths(target.with_name(f"{target.stem}_{source.suffix.lstrip('.').lower()}{target.suffix}"), k)
    if claimed & {real(p) for p in (*paths, sheet)}:
        raise ValueError(f"{source}: another input has the same outputs")
    return paths, sheet


def sample_batch(sampler, batch: list, k: int, method: str, seed: int) -> list[dict]:
    """Sample and save one batch of (source, paths, sheet, record); a record per photo, errors named."""
    from .diverse import save_diverse
    from .imageio import ImageReadError, load_image

    records, loaded, pending = [], [], []
    for source, paths, sheet, record in batch:
        try:
            loaded.append(load_image(source))
            pending.append((paths, sheet, record))
        except ImageReadError as exc:
            records.append(record | {"status": "error", "error": str(exc)})
    try:
        results = sampler.sample_loaded(loaded, k, method, seed)
    except (RuntimeError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return records + [record | {"status": "error", "error": f"{record['input']}: sampling failed ({message})"} for _, _, record in pending]
    for image, result, (paths, sheet, record) in zip(loaded, results, pending):
        try:
            save_diverse(result, image, paths, sheet, title=f"{Path(record['input']).name}: {sampler.name}, {method}, seed {seed}")
            records.append(record | {"width": image.size[0], "height": image.size[1], "labels": result.labels})
        except (OSError, ValueError) as exc:
            records.append(record | {"status": "error", "error": f"{sheet.parent}: could not write ({exc})"})
    return records


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

    from .checkpoint import CheckpointError, load_checkpoint
    from .data import ColorPhotoDataset
    from .inference import checked_model
    from .registry import get_model_spec
    from .training.loop import CHECKPOINT_NAME, TrainingDiverged, TrainSettings, Trainer, build_recipe, resolve_device

    try:
        spec = get_model_spec(model)
        overrides = parse_overrides(set_ or [])
        if lr is not None:
            overrides["lr"] = lr
        if size is not None:
            overrides["image_size"] = size
        if batch_size is not None:
            overrides["batch_size"] = batch_size
        if encoder_weights is not None:
            overrides["encoder_weights"] = encoder_weights
        if resume and (out / CHECKPOINT_NAME).exists():
            # the run's own config wins: a resumed run must rebuild the same networks
            stored = load_checkpoint(out / CHECKPOINT_NAME)
            if stored.model != spec.name:
                fail(f"{out}: that run trains '{stored.model}', not '{spec.name}'")
            check_resume_options(out, stored.config, overrides)
            checked_model(stored)  # its config and shapes, with the file named in any complaint
            overrides = stored.config | {k: v for k, v in overrides.items() if k in ("lr",)}
        elif init_from is not None:
            # fine-tuning rebuilds the stored architecture; explicit options still apply on top
            stored = load_checkpoint(init_from)
            if stored.model != spec.name:
                fail(f"{init_from}: checkpoint is for model '{stored.model}', not '{spec.name}'")
            checked_model(stored)
            overrides = stored.config | overrides
        config = spec.config(overrides)
        spec.check_image_size(config)
        torch.manual_seed(seed)
        train_data = spec.recipe.dataset(data, config, train=True) if hasattr(spec.recipe, "dataset") else ColorPhotoDataset(data, size=config["image_size"], train=True)
        val_data = None
        if val is not None:
            val_data = spec.recipe.dataset(val, config, train=False) if hasattr(spec.recipe, "dataset") else ColorPhotoDataset(val, size=config["image_size"], train=False)
        for dataset in (train_data, val_data):
            if getattr(dataset, "unreadable", None):
                err.print(f"note: {dataset.root}: skipped {len(dataset.unreadable)} unreadable files (e.g. {dataset.unreadable[0]})", highlight=False)
        dist = distributed_context(device)
        try:
            settings = TrainSettings(
                out_dir=out, epochs=epochs, batch_size=config["batch_size"], workers=workers,
                precision=precision, save_every=save_every, max_steps=max_steps, max_minutes=max_minutes, decay_epochs=decay_epochs, seed=seed, progress=not quiet,
                export=export, init_from=init_from, swa_from_epoch=swa_from_epoch, ema_decay=ema, rank=dist["rank"], world_size=dist["world_size"], sync_batchnorm=sync_batchnorm,
            )
            recipe = build_recipe(spec.name, config, resolve_device(str(dist["device"])))
            trainer = Trainer(recipe, train_data, val_data, settings, console=err)
            result = trainer.fit(resume=resume)
        finally:
            end_distributed(dist)
    except TrainingDiverged as exc:  # not bad usage: exit 1, the last good checkpoint stays
        fail(str(exc), 1)
    except (KeyError, ValueError, FileNotFoundError, CheckpointError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
    except OSError as exc:  # a full disk, a read-only run folder: the run stops, its last checkpoint stays good
        fail(f"{exc.filename or out}: {exc.strerror or exc} (the last checkpoint in {out} is intact; --resume continues from it)", 1)
    if dist["rank"] == 0:
        print(json.dumps({"model": spec.name, "out": str(out), **result}))


def check_resume_options(out: Path, stored: dict, overrides: dict) -> None:
    """A resumed run rebuilds its own networks with its own config: options that would change
    it are refused rather than silently ignored (only the learning rate may change)."""
    changed = {key: value for key, value in overrides.items() if key != "lr" and stored.get(key) != value}
    if changed:
        given = ", ".join(f"{key}={value}" for key, value in changed.items())
        has = ", ".join(f"{key}={stored.get(key)}" for key in changed)
        fail(f"--resume continues {out} with its own config ({has}): drop {given}, or train into a new --out")


def distributed_context(device: str) -> dict:
    """This process's rank, world size and device: a single process, or one of torchrun's.

    torchrun (``torchrun --nproc_per_node N recolor train ...``; across machines add ``--nnodes M
    --rdzv-backend c10d --rdzv-endpoint HOST:PORT``) sets RANK, WORLD_SIZE and LOCAL_RANK; the
    process group is initialised here, NCCL on CUDA and gloo on the CPU, and on CUDA each
    process drives the GPU numbered by its LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return {"rank": 0, "world_size": 1, "device": device, "distributed": False}
    import torch
    import torch.distributed as torch_dist

    from .devices import resolve_device

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        if target.index is None:
            if local_rank >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs: start at most that many processes per machine")
            target = torch.device("cuda", local_rank)
        elif int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
            raise ValueError("under torchrun pass --device cuda (or auto): each process takes the GPU of its LOCAL_RANK")
        torch.cuda.set_device(target)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return {"rank": rank, "world_size": world_size, "device": str(target), "distributed": True}


def end_distributed(context: dict) -> None:
    """Tear down the process group that :func:`distributed_context` set up (a no-op otherwise)."""
    if context.get("distributed"):
        import torch.distributed as torch_dist

        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


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
        with Progress(*columns, console=err, disable=quiet or not err.is_terminal, transient=True) as progress:
            task = progress.add_task("evaluate", total=None)
            result = run_evaluation(settings, progress=lambda done, total: progress.update(task, completed=done, total=total),
                                    log=lambda message: progress.console.print(shown(message), highlight=False))
    except EvaluationError as exc:
        fail(str(exc))
    print_table(result, err if as_json else Console())
    if as_json:
        print(json.dumps(result.to_json(), indent=1))
    if report is not None:
        err.print(f"report: {shown(write_report(result, report))}", highlight=False)


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
