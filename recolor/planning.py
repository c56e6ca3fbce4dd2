"""What `recolor colorize`, `sample-diverse` and `train` will do, decided before any work.

The command line parses its options, asks this module for a plan, runs it and prints; benchmarks
and tests call the same functions instead of copying the command line's rules:

* :func:`plan_colorize` and :func:`plan_sample_diverse`: which inputs (files, folders, globs, each
  once), which outputs and where (formats, sub-folders, ``--in-place``), and which files are
  already decided: skipped because their outputs exist, or failed because they cannot be done
  (an output that would land on an input, two inputs with one output). Each returns a plan of
  jobs plus the records of the files decided now.
* :func:`training_datasets` and :func:`distributed_context`: the datasets a model trains on and
  this process's place under torchrun.

Bad usage found here (contradictory options, an unwritable output folder, nothing to do) raises
:class:`UsageError`, one line; the command line exits 2 with it. Nothing here loads a model, and
importing this module imports neither torch, ``recolor.training`` nor ``rich``.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


class UsageError(ValueError):
    """Bad usage found before any work (one line): the command line exits 2 with this message."""


def real(path: Path) -> Path:
    """The path with links resolved; never raises (Path.resolve raises on a symlink loop)."""
    return Path(os.path.realpath(path))


# --- inputs ---------------------------------------------------------------------------------

@dataclass
class InputFiles:
    """What the command line's inputs name: (file, path relative to the output folder) pairs; how
    many files met in folders were left out for not being images by their extension; and the
    folders that could not be read (one line each)."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    not_images: int = 0
    unreadable: list[str] = field(default_factory=list)

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


def expand_inputs(inputs: Sequence[str], out_dir: Path) -> InputFiles:
    """The files named by files, folders (recursive) and globs, each once.

    Folders and globs keep the tree below them (below a glob's fixed folder), so two
    ``scan0001.tif`` in different sub-folders get different outputs. In a folder, files that are
    not images by their extension (sidecars, notes) are counted, not listed: only files named
    explicitly can fail for not being images. A folder scan leaves out the output folder when it
    sits inside the scanned folder, so a second run never colorizes the first run's outputs.
    """
    from .hintsfile import SIDECAR_SUFFIX as HINTS_SIDECAR_SUFFIX
    from .imageio.listing import IMAGE_EXTENSIONS, list_image_files
    from .video.formats import VIDEO_EXTENSIONS

    found = InputFiles()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            inside = out_dir != real(path) and real(path) in out_dir.parents
            for file in list_image_files(path, all_files=True, unreadable=found.unreadable):
                if inside and out_dir in real(file).parents:
                    continue
                if file.suffix.lower() in IMAGE_EXTENSIONS or file.suffix.lower() in VIDEO_EXTENSIONS:
                    found.add(file, file.relative_to(path))
                elif not file.name.endswith(HINTS_SIDECAR_SUFFIX):  # a photo's hints are not a stray file
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
    unique = InputFiles(not_images=found.not_images, unreadable=found.unreadable)
    for file, relative in found.files:
        key = file.resolve() if file.exists() else file
        if key not in seen:
            seen.add(key)
            unique.add(file, relative)
    return unique


def check_input_names(inputs: Sequence[str]) -> None:
    """A UsageError for an empty (or blank) input name: ``Path("")`` is the working folder, so an
    unset variable (``recolor colorize "$DIR" --in-place``) would colorize everything below it."""
    if any(not item.strip() for item in inputs):
        raise UsageError("an input is an empty name (an unset variable?): write '.' for the working folder")


def check_output_is_not_an_input_folder(inputs: Sequence[str], out_dir: Path) -> None:
    """A UsageError when the output folder is one of the input folders: its outputs would sit
    among the inputs and a rerun would take them as photos (sub-folders of an input folder are fine:
    the scan leaves them out)."""
    for item in inputs:
        if Path(item).is_dir() and real(Path(item)) == out_dir:
            raise UsageError(f"the output folder is the input folder {item}: a rerun would take the outputs as inputs; pass another -o")


def found_inputs(inputs: Sequence[str], out_dir: Path) -> InputFiles:
    """:func:`expand_inputs`, or a UsageError when the inputs name nothing at all."""
    check_input_names(inputs)
    found = expand_inputs(inputs, out_dir)
    if not found.files and not found.unreadable:
        raise UsageError("no input files found" + (f" ({found.not_images} not images by extension)" if found.not_images else ""))
    return found


def unreadable_records(found: InputFiles, **empty: Any) -> list[dict]:
    """An error record for each folder that could not be read (``empty``: the record's other fields)."""
    return [{"input": problem.partition(": ")[0], **empty, "status": "error", "error": problem} for problem in found.unreadable]


# --- outputs --------------------------------------------------------------------------------

def output_suffix(fmt: str | None) -> str | None:
    """'.png' for ``--format png``; a UsageError for a format recolor cannot write."""
    from .imageio.encoders import extension_format

    if not fmt:
        return None
    suffix = "." + fmt.lower().lstrip(".")
    try:
        extension_format(suffix)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return suffix


def check_writable(folder: Path) -> None:
    """A UsageError now, not after the model ran on every file, when ``folder`` cannot be written
    (or created: probed in its nearest existing parent, so that a failed run leaves no folder)."""
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"{folder}: cannot write to the output folder ({exc.strerror or exc})") from None


def plan_output(source: Path, relative: Path, out_dir: Path, suffix: str | None, in_place: bool) -> Path:
    """Where the colorization of ``source`` goes; raises ValueError (one line, naming the file) when nowhere.

    The output keeps the input's format unless ``--format`` names one. An input that Pillow
    reads but cannot write in its own format (PSD, PCX, PGM scans...) is written as PNG; an
    input that is not an image at all is reported as such (not as an unwritable extension).
    A video keeps its container (:func:`recolor.video.formats.video_target`) and is refused in place.
    """
    from .imageio.decoding import ImageReadError, probe_image
    from .imageio.encoders import output_format
    from .video.formats import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, video_target

    if source.suffix.lower() in AUDIO_EXTENSIONS:
        raise ValueError(f"{source}: nothing to colorize (an audio file)")
    if source.suffix.lower() in VIDEO_EXTENSIONS:  # a film keeps its container (--format is for photos)
        if in_place:
            raise ValueError(f"{source}: a video is never replaced in place (colorize it with -o into another folder)")
        return video_target(out_dir / relative)
    # in place, a link is written through: its target gets the colours, the link stays a link
    target = (real(source) if source.is_symlink() else source) if in_place else out_dir / relative
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


def output_problem(source: Path, target: Path, inputs_of_run: set[Path], in_place: bool) -> str | None:
    """Why ``source`` may not be written to ``target`` (one line naming it), or None.

    Unless ``--in-place``, no output may land on any input of the run (not only its own source):
    ``-o`` = the input folder with ``--format png`` would otherwise replace ``x.png`` with
    ``x.jpg``'s result.
    """
    from .imageio.decoding import file_problem

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


def clean_output_folders(targets: Sequence[Path]) -> None:
    """Remove temporary files that killed earlier runs left in the folders about to be written."""
    from .imageio.atomic import remove_stale_temp_files

    for folder in {target.parent for target in targets}:
        remove_stale_temp_files(folder)


# --- colorize -------------------------------------------------------------------------------

@dataclass
class ColorizeJob:
    """One file to colorize: what :func:`recolor.pipeline.colorize_files` takes."""

    source: Path
    target: Path
    tag: Any = None  # the caller's own (the command line's JSON record), handed back in the outcome
    hints: Any = None  # recolor.hints.Hints for this photo (its sidecar's, or the command line's), or None


@dataclass
class ColorizePlan:
    """The files to colorize (``jobs``, each tagged with its record) and the records of the files
    decided already (unreadable folders, failures found now, skips), in the inputs' order."""

    jobs: list[ColorizeJob]
    records: list[dict]
    out_dir: Path  # resolved; unused with in_place
    in_place: bool
    not_images: int  # files left out of folders for not being images by their extension

    def clean_output_folders(self) -> None:
        clean_output_folders([job.target for job in self.jobs])


def plan_colorize(inputs: Sequence[str], output: Path | None = None, fmt: str | None = None,
                  overwrite: bool = False, in_place: bool = False, hints: Any = None) -> ColorizePlan:
    """What `recolor colorize INPUTS -o OUTPUT [--format F] [--overwrite] [--in-place]` will do.

    An output that exists is skipped unless ``overwrite`` (``in_place`` always replaces). Raises
    UsageError for contradictory options, a format recolor cannot write, inputs that name
    nothing, or an output folder that cannot be written.

    ``hints`` (:class:`recolor.hints.Hints` or a schedule, from ``--hint``/``--hints``/``--reference``) go with
    every photo that has no sidecar of its own: a photo's ``NAME.hints.json`` replaces them. A bad
    sidecar, or a point outside its photo, is a UsageError too: nothing has been done yet. A
    video's job carries a :class:`recolor.hintsfile.HintSchedule` (frame ranges, issue 26).
    """
    from .video.formats import is_video_job

    if in_place and (output is not None or fmt):
        raise UsageError(f"--in-place replaces each input in its own format: it cannot be combined with {'-o/--output' if output is not None else '--format'}")
    suffix = output_suffix(fmt)
    out_dir = real(output or Path("colorized"))
    found = found_inputs(inputs, out_dir)
    if not in_place:
        check_output_is_not_an_input_folder(inputs, out_dir)
        check_writable(out_dir)
    plan = ColorizePlan([], unreadable_records(found, output=None), out_dir, in_place, found.not_images)
    claimed: dict[Path, Path] = {}
    inputs_of_run = {real(source) for source, _ in found.files}
    for source, relative in found.files:
        try:
            target = plan_output(source, relative, out_dir, suffix, in_place)
        except ValueError as exc:
            plan.records.append({"input": str(source), "output": None, "status": "error", "error": str(exc)})
            continue
        record = {"input": str(source), "output": str(target), "status": "ok"}
        problem = output_problem(source, target, inputs_of_run, in_place)
        if problem:
            plan.records.append(record | {"status": "error", "error": problem})
        elif real(target) in claimed:
            plan.records.append(record | {"status": "error", "error": f"{source}: output {target} is also the output of {claimed[real(target)]}"})
        elif target.exists() and not overwrite and not in_place:
            claimed[real(target)] = source
            plan.records.append(record | {"status": "skipped", "reason": "output exists (use --overwrite)"})
        else:
            claimed[real(target)] = source
            photo_hints = hints_for(source, hints, video=is_video_job(source, target))
            if photo_hints is not None:
                record["hints"] = hints_record(photo_hints)
            plan.jobs.append(ColorizeJob(source, target, tag=record, hints=photo_hints))
    return plan


def hints_for(photo: Path, given: Any, video: bool = False) -> Any:
    """The hints for one photo: its sidecar's when it has one, else ``given`` (a
    :class:`recolor.hintsfile.HintSchedule` gives a photo its sections without frames); checked
    against the photo's upright size (UsageError naming the problem). A video gets a
    :class:`~recolor.hintsfile.HintSchedule`, checked against its frames when it is opened."""
    from .hintsfile import HintSchedule, HintsFileError, read_hint_schedule, sidecar_path

    sidecar = sidecar_path(photo)
    # os.path.isfile: a 250-byte photo name makes a sidecar name too long to exist, not an error
    has_sidecar = os.path.isfile(sidecar)
    try:
        # a photo takes a file's objects without "frames" (a sidecar's or --hints'), a video all of them
        chosen = read_hint_schedule(sidecar) if has_sidecar else HintSchedule.of(given)
        if video:
            return chosen
    except HintsFileError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # more points in force than a network takes
        raise UsageError(f"{photo}: {exc}") from None
    if isinstance(chosen, HintSchedule):
        chosen = chosen.for_photo()
    if chosen is not None and chosen.points:
        size = upright_size(photo)
        try:
            if size is not None:
                chosen.check_inside(*size)
        except ValueError as exc:
            raise UsageError(f"{photo}: {exc}") from None
    return chosen


def hints_record(hints: Any) -> dict:
    """What a JSON record says of a photo's hints."""
    record = {"points": len(hints.points), "reference": None if hints.reference is None else str(hints.reference)}
    sections = getattr(hints, "sections", None)  # a video's schedule
    return record | ({"sections": len(sections)} if sections is not None else {})


def upright_size(photo: Path) -> tuple[int, int] | None:
    """(width, height) of the photo as shown (EXIF orientation applied), from its header; None
    when it cannot be read (the colorize run reports that file itself)."""
    from PIL import Image

    try:
        with Image.open(photo) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - any unreadable file is reported by the run, one line
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# --- sample-diverse -------------------------------------------------------------------------

@dataclass
class DiverseJob:
    """One photo to sample: its k output paths, its contact sheet and its record."""

    source: Path
    outputs: list[Path]
    sheet: Path
    record: dict


@dataclass
class DiversePlan:
    """The photos to sample and the records of the photos decided already, in the inputs' order."""

    jobs: list[DiverseJob]
    records: list[dict]
    not_images: int

    def clean_output_folders(self) -> None:
        clean_output_folders([job.sheet for job in self.jobs])


def diverse_outputs(target: Path, source: Path, k: int, claimed: set[Path]) -> tuple[list[Path], Path]:
    """The k sample paths and the sheet of one photo; a photo whose names another input of the run
    already has (``p.jpg`` beside ``p.png`` share ``p_sheet.png``) gets its extension in them."""
    paths, sheet = output_paths(target, k)
    if claimed & {real(p) for p in (*paths, sheet)}:
        paths, sheet = output_paths(target.with_name(f"{target.stem}_{source.suffix.lstrip('.').lower()}{target.suffix}"), k)
    if claimed & {real(p) for p in (*paths, sheet)}:
        raise ValueError(f"{source}: another input has the same outputs")
    return paths, sheet


def output_paths(target: Path, k: int) -> tuple[list[Path], Path]:
    """``name_1.ext .. name_k.ext`` and ``name_sheet.png`` beside ``target`` (= folder/name.ext)."""
    results = [target.with_name(f"{target.stem}_{i}{target.suffix}") for i in range(1, k + 1)]
    return results, target.with_name(f"{target.stem}_sheet.png")


def plan_sample_diverse(inputs: Sequence[str], output: Path, k: int, fmt: str | None = None, overwrite: bool = False) -> DiversePlan:
    """What `recolor sample-diverse INPUTS -o OUTPUT -k K [--format F] [--overwrite]` will do.

    A photo is skipped only when every sample and its sheet exist (a killed run left a partial
    set to redo). Raises UsageError as :func:`plan_colorize` does.
    """
    suffix = output_suffix(fmt)
    found = found_inputs(inputs, real(output))
    check_output_is_not_an_input_folder(inputs, real(output))
    check_writable(output)
    plan = DiversePlan([], unreadable_records(found, outputs=[], sheet=None), found.not_images)
    claimed: set[Path] = set()
    inputs_of_run = {real(source) for source, _ in found.files}
    for source, relative in found.files:
        try:
            paths, sheet = diverse_outputs(plan_output(source, relative, output, suffix, False), source, k, claimed)
        except ValueError as exc:
            plan.records.append({"input": str(source), "outputs": [], "sheet": None, "status": "error", "error": str(exc)})
            continue
        record = {"input": str(source), "outputs": [str(p) for p in paths], "sheet": str(sheet), "status": "ok"}
        problem = next(filter(None, (output_problem(source, p, inputs_of_run, False) for p in (*paths, sheet))), None)
        if problem:
            plan.records.append(record | {"status": "error", "error": problem})
        elif not overwrite and all(p.exists() for p in (*paths, sheet)):
            plan.records.append(record | {"status": "skipped", "reason": "outputs exist (use --overwrite)"})
        else:
            plan.jobs.append(DiverseJob(source, paths, sheet, record))
        claimed |= {real(p) for p in (*paths, sheet)}
    return plan


def count_statuses(records: Sequence[dict]) -> dict[str, int]:
    """How many records are ok, skipped and error."""
    return {status: sum(r["status"] == status for r in records) for status in ("ok", "skipped", "error")}


# --- train ----------------------------------------------------------------------------------

def parse_overrides(pairs: Sequence[str]) -> dict:
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


def training_config(spec, overrides: dict, out: Path, resume: bool, init_from: Path | None) -> dict:
    """The config a `recolor train` run uses: the model's defaults with the options on top; a resumed
    run's own config (only the learning rate may change: see :func:`check_resume_options`); for
    --init-from, the file's config with the options on top. A problem with a stored config names
    its file (CheckpointError); an option a resume would ignore is a UsageError."""
    from .checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint_header
    from .pretrained import checked_model

    from .run_folder import config_source

    last = out / CHECKPOINT_NAME
    source = config_source(out, resume, init_from)
    if source is None:
        return spec.config(overrides)
    stored = read_checkpoint_header(source)  # its model and config: the tensors are read (and verified) when the run loads them
    if stored.model != spec.name:
        what = f"{out}: that run trains" if source == last else f"{source}: checkpoint is for model"
        raise UsageError(f"{what} '{stored.model}', not '{spec.name}'")
    # its architecture and tensor shapes, with the file named in any complaint (a file to fine-tune
    # from may lack the zero-started modules of the network it starts: --set hints=true)
    checked_model(stored, zero_started_may_lack=source != last)
    if source == last:
        # the run's own config wins: a resumed run must rebuild the same networks
        check_resume_options(out, stored.config, overrides)
        merged = stored.config | {key: value for key, value in overrides.items() if key == "lr"}
    else:
        merged = stored.config | overrides  # fine-tuning rebuilds the stored architecture; options apply on top
    try:
        return spec.config(merged)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{source}: {exc.args[0] if exc.args else exc}") from None


def check_resume_options(out: Path, stored: dict, overrides: dict) -> None:
    """A resumed run rebuilds its own networks with its own config: options that would change
    it are refused rather than silently ignored (only the learning rate may change)."""
    changed = {key: value for key, value in overrides.items() if key != "lr" and stored.get(key) != value}
    if changed:
        given = ", ".join(f"{key}={value}" for key, value in changed.items())
        has = ", ".join(f"{key}={stored.get(key)}" for key in changed)
        raise UsageError(f"--resume continues {out} with its own config ({has}): drop {given}, or train into a new --out")


def training_dataset(spec, config: dict, folder: Path, train: bool = True, min_chroma: float | None = None):
    """The dataset a model trains (``train``) or validates on: colour photos at the config's
    ``image_size``; photos whose mean chroma is below ``min_chroma`` are skipped (None: the data
    module's near-greyscale threshold)."""
    from .data import ColorPhotoDataset

    return ColorPhotoDataset(folder, size=config["image_size"], train=train, min_chroma=min_chroma)


def training_datasets(spec, config: dict, data: Path, val: Path | None = None, min_chroma: float | None = None) -> tuple[Any, Any]:
    """(training set, validation set or None) for `recolor train --data DATA [--val VAL]`.
    ``min_chroma`` applies to the training photos only: validation measures every photo."""
    train_data = training_dataset(spec, config, data, train=True, min_chroma=min_chroma)
    return train_data, None if val is None else training_dataset(spec, config, val, train=False)


def skipped_files_notes(*datasets) -> list[str]:
    """One line per dataset that left out files it could not read."""
    return [f"{dataset.root}: skipped {len(dataset.unreadable)} unreadable files (e.g. {dataset.unreadable[0]})"
            for dataset in datasets if getattr(dataset, "unreadable", None)]


def distributed_context(device: str) -> dict:
    """This process's rank, world size and device: a single process, or one of torchrun's.

    torchrun (``torchrun --nproc_per_node N recolor train ...``; across machines add ``--nnodes M
    --rdzv-backend c10d --rdzv-endpoint HOST:PORT``) sets RANK, WORLD_SIZE and LOCAL_RANK; the
    process group is initialised here, NCCL on CUDA and gloo on the CPU, and on CUDA each
    process drives the GPU numbered by its LOCAL_RANK.
    """
    world_size = _environ_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return {"rank": 0, "world_size": 1, "device": device, "distributed": False}
    import torch
    import torch.distributed as torch_dist

    from .devices import resolve_device

    if "RANK" not in os.environ:  # WORLD_SIZE left over in the environment, or set by hand
        raise UsageError(f"WORLD_SIZE={world_size} is set but RANK is not: start distributed training with torchrun, or unset WORLD_SIZE")
    rank, local_rank = _environ_int("RANK", 0), _environ_int("LOCAL_RANK", 0)
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


def _environ_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise UsageError(f"{name}={os.environ[name]!r} in the environment is not a whole number (torchrun sets it)") from None


def end_distributed(context: dict) -> None:
    """Tear down the process group that :func:`distributed_context` set up (a no-op otherwise)."""
    if context.get("distributed"):
        import torch.distributed as torch_dist

        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
