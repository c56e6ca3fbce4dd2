"""What the commands share: the stderr console, one-line failures, per-file reports, a progress bar.

Imports only the standard library and typer: rich is imported on first use (``--help`` needs none of it).
"""
import contextlib
import functools
import json
import sys
from typing import TYPE_CHECKING, Callable, Iterator

import typer

if TYPE_CHECKING:
    from rich.console import Console

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


def fail(message: str, code: int = 2) -> None:
    err().print(f"[red]error:[/] {shown(message)}", highlight=False)
    raise typer.Exit(code)


def loaded(load: Callable[[], object]):
    """What ``load()`` returns (a model, a sampler), or exit 2 with its one-line complaint."""
    try:
        return load()
    except Exception as exc:
        # CheckpointError's module imports torch, which the ONNX engine never loads: a loader that
        # raised one has imported it already
        checkpoint = sys.modules.get("recolor.checkpoint")
        if isinstance(exc, (KeyError, ValueError)) or (checkpoint is not None and isinstance(exc, checkpoint.CheckpointError)):
            fail(str(exc.args[0]) if exc.args else str(exc))
        raise


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
        from ..planning import count_statuses

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
