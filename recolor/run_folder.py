"""The run folder of `recolor train`, before and after a run: the paths checked before any work,
an earlier run cleared for ``--overwrite``, the file whose config a run takes, the step last saved.

Nothing here imports torch at module import (the command line's start-up stays light)."""
from __future__ import annotations

import os
from pathlib import Path

from .planning import UsageError, check_writable


def config_source(out: Path, resume: bool, init_from: Path | None) -> Path | None:
    """The file whose config a `recolor train` run takes (the run's last checkpoint when resuming,
    else ``--init-from``), or None: the model's defaults."""
    from .checkpoint import CHECKPOINT_NAME

    last = out / CHECKPOINT_NAME
    return last if resume and last.exists() else init_from


def check_run_paths(out: Path, export: Path | None = None, resume: bool = False, overwrite: bool = False) -> None:
    """A UsageError now, not after training, when the run folder or the export file cannot be
    written, or when the run folder holds an earlier run (or anything) and neither ``resume`` nor
    ``overwrite`` says what to do with it."""
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it: pass one")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; the run folder holds checkpoints, logs and samples: pass a folder")
    first_process = os.environ.get("RANK", "0") == "0"  # under torchrun the others may look after rank 0 began writing
    if first_process and out.is_dir() and not resume and not overwrite and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty (an earlier run?): continue it with --resume, replace it with --overwrite, or pass another --out")
    check_writable(out)
    if export is not None:
        if export.is_dir():
            raise UsageError(f"--export {export}: is a folder; pass the weights file to write (e.g. {export / 'model.safetensors'})")
        try:
            check_writable(export.parent)
        except UsageError:
            raise UsageError(f"--export {export}: cannot write to its folder {export.parent}") from None


def clear_run_folder(out: Path) -> int:
    """Delete what an earlier run wrote in ``out`` (checkpoints, optimiser state, trainer state,
    log, exported weights, sample sheets) before a fresh run there (``--overwrite``); other files
    stay. How many files were deleted."""
    from .checkpoint import CHECKPOINT_NAME
    from .training.checkpointing import BEST_NAME, EXPORT_NAME, OPTIMIZER_NAME

    names = (CHECKPOINT_NAME, OPTIMIZER_NAME, BEST_NAME, EXPORT_NAME, "trainer_state.json", "log.jsonl")
    files = [out / name for name in names if (out / name).is_file()] + sorted((out / "samples").glob("epoch_*.png"))
    for file in files:
        file.unlink()
    return len(files)


def saved_step(out: Path) -> int | None:
    """The step of the run's last checkpoint in ``out``, or None when there is none (or it cannot be read)."""
    from .checkpoint import CHECKPOINT_NAME, read_checkpoint_header

    try:
        return int(read_checkpoint_header(out / CHECKPOINT_NAME).extra["trainer"]["step"])
    except Exception:  # noqa: BLE001 - no checkpoint, or one of another layout: the caller then says less
        return None
