"""`recolor evaluate`: score models on held-out colour photos with the papers' metrics (recolor/evaluate.py)."""
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..seeds import MAX_SEED
from ._shared import THREADS_HELP, console, err, fail, shown


def evaluate(
    data: Annotated[Optional[Path], typer.Option(help="Folder of colour photos: the ground truth (class sub-folders give labels).")] = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model name or checkpoint to score (repeatable; default: every model with shipped weights).")] = None,
    predictions: Annotated[Optional[list[str]], typer.Option(help="Folder of colorized images matched to --data by relative path, or NAME=DIR (repeatable).")] = None,
    metric: Annotated[Optional[list[str]], typer.Option("--metric", help="ab-l1, weighted, psnr, ssim, colourfulness, diversity, accuracy, cim, omega, is, fid or all (repeatable); for a folder of clips: ab-l1, psnr, flicker, cdc. Default: the pixel metrics, plus those whose network you pass.")] = None,
    classifier: Annotated[Optional[str], typer.Option(help="For accuracy/CIM/Omega: efficientnet-lite0/1/2 (installed, offline), resnet56-cifar10:PATH, resnet18 (downloads), resnet18:PATH ... Default efficientnet-lite2.")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="For IS/FID: any classifier spec (default efficientnet-lite2, offline: not comparable with published IS/FID), inception_v3 (downloads) or inception_v3:PATH.")] = None,
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
    seed: Annotated[int, typer.Option(help=f"Random seed, 0 to {MAX_SEED}: the --limit subset, the diversity draws, Omega's fine-tuning.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help=THREADS_HELP)] = None,
    hints: Annotated[Optional[list[int]], typer.Option("--hints", min=0, max=256, help="Also score each hint-taking model with N points revealed from the truth (seeded 6x6 patch means), a row per N; repeatable: --hints 0 --hints 1 --hints 10.")] = None,
) -> None:
    """Score models on held-out colour photos with the papers' metrics: a table, JSON, an HTML report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..evaluate import EvalSettings, EvaluationError, print_table, write_report
    from ..evaluate import evaluate as run_evaluation
    from ..planning import UsageError, check_writable

    if data is None:
        fail("pass --data DIR: a folder of colour photos to use as ground truth")
    if report is not None:
        try:
            check_writable(report)  # now, not after the models ran
        except UsageError as exc:
            fail(str(exc))
    from ..threads import use_threads

    use_threads(threads)
    settings = EvalSettings(
        data=data, models=model or [], predictions=predictions or [], metrics=metric, size=size, limit=limit,
        classifier=classifier, backbone=backbone, samples=samples, sample_method=sample_method, omega_steps=omega_steps, omega_images=omega_images,
        is_splits=is_splits, batch_size=batch_size, device=device, precision=precision, seed=seed, report_samples=report_samples, chroma=chroma,
        hints=sorted(set(hints or [])),
    )
    columns = [TextColumn("evaluate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:  # stdout is the results' alone (`--json > scores.json`): what a library prints there goes to stderr
        with contextlib.redirect_stdout(sys.stderr), Progress(*columns, console=err(), disable=quiet or not err().is_terminal, transient=True) as progress:
            task = progress.add_task("evaluate", total=None)
            result = run_evaluation(settings, progress=lambda done, total: progress.update(task, completed=done, total=total),
                                    log=lambda message: progress.console.print(shown(message), highlight=False))
    except EvaluationError as exc:
        fail(str(exc))
    print_table(result, err() if as_json else console())
    if as_json:
        print(json.dumps(result.to_json(), indent=1))
    if report is not None:
        try:
            err().print(f"report: {shown(write_report(result, report))}", highlight=False)
        except OSError as exc:  # the folder went away or filled up meanwhile: the table above stands
            fail(f"{exc.filename or report}: could not write the report ({exc.strerror or exc})", 1)
