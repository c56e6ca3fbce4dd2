"""`recolor sample-diverse`: K different colorizations of each photo (paper 004) and a contact sheet."""
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import DEFAULT_MODEL
from ..seeds import MAX_SEED
from ._shared import THREADS_HELP, checked_seed, err, fail, loaded, made_with, progress_bar, rerun_hint, shown, skipped_text, stopped, tell_not_images


def sample_diverse(
    inputs: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Image files, folders (recursive) or glob patterns.")],
    k: Annotated[int, typer.Option("-k", "--samples", min=1, help="Colorizations per photo.")] = 5,
    model: Annotated[str, typer.Option("--model", "-m", help="effnet-unet (the default: samples differ object by object), divcolor, divcolor-skip, cvae, pix2pix-dropout, or a .safetensors checkpoint (a name wins over a same-named file: write ./NAME for it).")] = DEFAULT_MODEL,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder: NAME_1..NAME_k and NAME_sheet.png per photo.")] = Path("diverse"),
    method: Annotated[str, typer.Option(help="topk: the likeliest colours first (effnet-unet: each region's colours dealt out by their probability; divcolor: MDN means by weight; baselines: k-means centres of the draws); random: random draws.")] = "topk",
    seed: Annotated[int, typer.Option(help=f"Random seed, 0 to {MAX_SEED} (same seed, same pictures).")] = 0,
    draws: Annotated[int, typer.Option(min=1, help="Draws clustered into k by the cvae and pix2pix-dropout baselines.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 4,
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16, fp16.")] = "auto",
    fmt: Annotated[Optional[str], typer.Option("--format", help="Output extension (png, jpg, webp, tif); default: the input's.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (default: skip the photo).")] = False,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", min=1, help="Refuse images with more pixels than this (decompression bombs); default 150,000,000.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record per photo on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help=THREADS_HELP)] = None,
) -> None:
    """Write K different colorizations of each photo at full resolution, plus a labelled contact sheet."""
    from ..diverse import load_sampler
    from ..diverse_files import sample_jobs
    from ..imageio import DEFAULT_MAX_PIXELS, allow_pixels
    from ..inference import iter_batches
    from ..planning import UsageError, count_statuses, plan_sample_diverse
    from ..threads import use_threads

    checked_seed(seed)
    try:
        plan = plan_sample_diverse(inputs, output, k, fmt, overwrite=overwrite)
    except UsageError as exc:
        fail(str(exc))
    use_threads(threads)

    def checked_sampler():
        sampler = load_sampler(model, device=device, precision=precision, draws=draws)
        sampler.check(k, method)
        return sampler

    sampler = loaded(checked_sampler, model, quiet)
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    allow_pixels(max_pixels)
    records = list(plan.records)
    plan.clean_output_folders()
    started = time.perf_counter()
    try:
        with progress_bar("sample", len(plan.jobs), quiet) as advance:
            for batch in iter_batches(plan.jobs, batch_size):
                records += sample_jobs(sampler, batch, k, method, seed, max_pixels)
                advance(len(batch))
    except KeyboardInterrupt:
        stopped(count_statuses(records[len(plan.records):])["ok"], len(plan.jobs), rerun_hint(overwrite))
    tell_not_images(plan.not_images)
    for record in records:
        if as_json:
            print(json.dumps(record), flush=True)
        if record["status"] == "error":
            err().print(f"[red]failed:[/] {shown(record['error'])}", highlight=False)
    counts = count_statuses(records)
    err().print(f"{counts['ok']} sampled ({k} each), {skipped_text(records, counts['skipped'])}, {counts['error']} failed in "
                f"{time.perf_counter() - started:.1f} s{made_with(counts['ok'], sampler.name)} -> {shown(output)}", highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)
