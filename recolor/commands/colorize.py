"""`recolor colorize`: colorize photos at full resolution, in threads beside the batched model."""
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import DEFAULT_MODEL
from ._shared import MODEL_HELP, THREADS_HELP, RunReport, err, fail, loaded, made_with, progress_bar, rerun_hint, shown, skipped_text, stopped, tell_not_images


def colorize(
    inputs: Annotated[list[str], typer.Argument(metavar="INPUTS", help="Image files, folders (recursive) or glob patterns.")],
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
    workers: Annotated[Optional[int], typer.Option(min=1, help="Threads that decode (and as many that save) beside the model; default: half the compute threads (--threads) on CPU, up to 8 on GPU.")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile the model (pays off on long GPU runs; see benchmarks/README.md).")] = False,
    threads: Annotated[Optional[int], typer.Option(min=1, help=THREADS_HELP)] = None,
    hint: Annotated[Optional[list[str]], typer.Option("--hint", metavar="X,Y,#RRGGBB", help="A colour you know at pixel X,Y of the upright photo (origin top-left), e.g. 120,80,#c0392b; repeatable. Only its hue and chroma are used.")] = None,
    hints_file: Annotated[Optional[Path], typer.Option("--hints", metavar="FILE.json", help='Hints file: {"points": [{"x": 120, "y": 80, "color": "#c0392b"}], "reference": "ref.jpg"}.')] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="A colour photo whose colours to aim at.")] = None,
    engine: Annotated[str, typer.Option(help="auto (ONNX Runtime on the CPU where the model has an export, else torch), onnx, torch; see README.")] = "auto",
    crf: Annotated[int, typer.Option("--crf", min=0, max=63, help="Videos: the encoder's constant rate factor, lower is better and bigger (default 18).")] = 18,
    codec: Annotated[Optional[str], typer.Option("--codec", help="Videos: the video encoder (default libx264; libvpx-vp9 for WebM, gif for GIF).")] = None,
    steady: Annotated[bool, typer.Option("--steady/--per-frame", help="Videos: colour steadied along the motion (default), or each frame on its own.")] = True,
) -> None:
    """Colorize photos at their full resolution with the photo's own lightness, and videos (with their sound) steadily.

    Hints (--hint, --hints, --reference) go with every photo and video; in a folder, a file's own
    NAME.hints.json beside it is used instead. For a video, a hints file may give frame ranges:
    {"points": [...], "frames": [first, last]}, or a list of such objects."""
    from ..engines import load_colorizer
    from ..imageio import DEFAULT_MAX_PIXELS, allow_pixels
    from ..pipeline import colorize_files
    from ..planning import UsageError, plan_colorize
    from ..threads import use_threads
    from ..video.formats import is_video_job

    given = command_line_hints(hint, hints_file, reference)
    try:
        plan = plan_colorize(inputs, output, fmt, overwrite=overwrite, in_place=in_place, hints=given)
    except UsageError as exc:
        fail(str(exc))
    use_threads(threads)
    videos = [job for job in plan.jobs if is_video_job(job.source, job.target)]  # recolor/video: streamed, with their sound
    if videos:
        from ..video.colorize import VideoSettings, colorize_videos, count_frames, left_partial
        from ..video.container import check_codec

        loaded(lambda: codec and check_codec(codec))
    # videos go through the torch engine: their steadying works on the network's own tensors
    colorizer = loaded(lambda: load_colorizer(model, engine="torch" if videos else engine, device=device, size=size, precision=precision,
                                              compile=compile_model, chroma=chroma), model, quiet)
    hinted = [job for job in plan.jobs if job.hints]
    if hinted and not colorizer.takes_hints:
        if given is not None:
            fail(f"model '{colorizer.name}' takes no hints (--hint, --hints, --reference): the default, {DEFAULT_MODEL}, does")
        err().print(f"note: {len(hinted)} hints sidecar(s) ignored: model '{shown(colorizer.name)}' takes no hints", highlight=False)
        for job in hinted:
            job.hints = None
            job.tag.pop("hints", None)
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    allow_pixels(max_pixels)  # once, before the decoding threads start
    report = RunReport(as_json)
    for record in plan.records:
        report.emit(record)
    for job in videos:
        if left_partial(job.target):
            err().print(f"note: {shown(job.target)}: an earlier run was interrupted; starting this video over", highlight=False)
    plan.clean_output_folders()
    started = time.perf_counter()
    photos = [job for job in plan.jobs if job not in videos]
    provenance = {"model": colorizer.label, "weights_sha256": colorizer.weights_sha256}
    done = 0
    try:
        with progress_bar("colorize", len(photos), quiet) as advance:
            # decoding and saving run in threads beside the batched model (recolor/pipeline.py)
            for outcome in colorize_files(colorizer, photos, batch_size=batch_size, workers=workers, max_image_pixels=max_pixels):
                report.emit(outcome_record(outcome) | provenance)
                done += outcome.ok
                advance()
        if videos:
            with progress_bar("frames", count_frames(videos), quiet) as advance:
                for outcome in colorize_videos(colorizer, videos, VideoSettings(codec, crf, steady, batch_size), advance):
                    report.emit(outcome_record(outcome) | provenance)
                    done += outcome.ok
    except KeyboardInterrupt:
        stopped(done, len(plan.jobs), rerun_hint(overwrite, in_place))
    tell_not_images(plan.not_images)
    counts = report.counts()
    colorized_with_hints = sum(1 for record in report.records if record.get("status") == "ok" and record.get("hints"))
    with_hints = f" ({colorized_with_hints} with hints)" if colorized_with_hints else ""
    err().print(f"{counts['ok']} colorized{with_hints}, {skipped_text(report.records, counts['skipped'])}, {counts['error']} failed in "
                f"{time.perf_counter() - started:.1f} s{made_with(counts['ok'], colorizer.label)} -> {shown(plan.out_dir) if not in_place else 'inputs'}",
                highlight=False)
    raise typer.Exit(1 if counts["error"] else 0)


def outcome_record(outcome) -> dict:
    """The JSON record of one colorized file: its planned record completed with what happened."""
    record = outcome.job.tag
    if not outcome.ok:
        return record | {"status": "error", "error": outcome.error}
    return record | {"width": outcome.width, "height": outcome.height, "was_colour": outcome.was_colour} | ({"note": outcome.note} if outcome.note else {})


def command_line_hints(points: Optional[list[str]], hints_file: Optional[Path], reference: Optional[Path]):
    """The Hints that --hint, --hints and --reference give (None for none); exit 2, one line, for a bad one.
    --hint points add to the file's; --reference replaces the file's reference. A file with frame
    ranges (for videos) gives a HintSchedule, the options a section for every frame after its own."""
    from ..hintpoints import MAX_POINTS, Hints
    from ..hintsfile import HintSchedule, HintsFile, HintsFileError, parse_hint_option, read_hint_schedule

    if not points and hints_file is None and reference is None:
        return None
    try:
        schedule = read_hint_schedule(hints_file) if hints_file is not None else HintSchedule((HintsFile(Hints()),))
        extra = tuple(parse_hint_option(text) for text in points or ())
    except (HintsFileError, ValueError) as exc:
        fail(str(exc))
    if reference is not None and not reference.is_file():
        fail(f"--reference {reference}: no such file")
    if len(extra) + max(len(section.hints.points) for section in schedule.sections) > MAX_POINTS:
        fail(f"{len(extra)} --hint points with the file's: at most {MAX_POINTS} points in force at once")
    if len(schedule.sections) == 1 and schedule.sections[0].frames is None:  # one set of hints for every photo
        from_file = schedule.sections[0].hints
        return Hints(from_file.points + extra, reference if reference is not None else from_file.reference)
    try:
        return HintSchedule(schedule.sections + ((HintsFile(Hints(extra, reference)),) if extra or reference is not None else ()))
    except ValueError as exc:
        fail(f"{hints_file}: {exc}")
