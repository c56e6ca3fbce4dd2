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

THREADS_HELP = "Threads to compute with; default: the CPUs this process may use, less those other work keeps busy (see README, Speed)."
MODEL_HELP = ("Model name (shipped weights) or a .safetensors checkpoint. A model name wins over a file or folder of that name "
              "in the working directory: write ./NAME (or a path ending in .safetensors) for the file.")


# Control characters (C0, DEL, C1: ESC starts terminal sequences, CR rewrites the line) and the
# bidirectional overrides that reorder a line: a file name holding them could erase or disguise its
# own failure line, so they are printed as escapes, never raw.
_CONTROLS = ({code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
             | {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
             | {code: f"\\u{code:04x}" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_CONTROLS_IN_MESSAGES = {code: escaped for code, escaped in _CONTROLS.items() if code not in (0x09, 0x0A)}  # a message may span lines


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``, ``\\u202e``)."""
    return text.translate(_CONTROLS)


@functools.cache
def _console_class() -> type:
    from rich.console import Console

    class SafeConsole(Console):
        """A rich console that prints the control characters of any text it renders (messages,
        table cells, the training loop's lines) as escapes: tabs and line breaks pass."""

        def render_str(self, text: str, **kwargs):
            return super().render_str(text.translate(_CONTROLS_IN_MESSAGES), **kwargs)

    return SafeConsole


def console(stderr: bool = False) -> "Console":
    """A console for stdout (tables) or stderr that never prints a control character raw."""
    return _console_class()(stderr=stderr, soft_wrap=stderr)  # stderr: one message, one line: scripts grep these


@functools.cache
def err() -> "Console":
    """The stderr console, made on first use (importing rich costs start-up time that ``--help`` does not need)."""
    return console(stderr=True)


def shown(text: object) -> str:
    """Text (paths above all) safe to print through rich: markup escaped, control characters and
    line breaks as escapes (\\n)."""
    from rich.markup import escape

    return escape(escape_controls(str(text)))


def fail(message: str, code: int = 2) -> None:
    err().print(f"[red]error:[/] {shown(message)}", highlight=False)
    raise typer.Exit(code)


def checked_seed(seed: int) -> int:
    """``--seed``, or exit 2 in one line when it is out of the range every generator takes."""
    from ..seeds import check_seed

    try:
        return check_seed(seed)
    except ValueError as exc:
        fail(f"--{exc}")


def loaded(load: Callable[[], object], what: str | None = None, quiet: bool = False):
    """What ``load()`` returns (a model, a sampler), or exit 2 with its one-line complaint. On a
    terminal, "loading WHAT..." shows meanwhile (seconds of start-up would otherwise look like a hang)."""
    from ..options import said_on_the_command_line

    showing = what is not None and not quiet and err().is_terminal
    try:
        with err().status(f"loading {shown(what)}...") if showing else contextlib.nullcontext():
            return load()
    except Exception as exc:
        # CheckpointError's module imports torch, which the ONNX engine never loads: a loader that
        # raised one has imported it already
        checkpoint = sys.modules.get("recolor.checkpoint")
        if isinstance(exc, (KeyError, ValueError)) or (checkpoint is not None and isinstance(exc, checkpoint.CheckpointError)):
            fail(said_on_the_command_line(exc))  # a bad option named by its flag
        raise


def stopped(done: int, total: int, how_to_continue: str) -> None:
    """Ctrl-C (or SIGTERM): one line saying how far the run got and how to go on; exit 130."""
    err().print(f"stopped: {done} of {total} done; {how_to_continue}", highlight=False)
    raise typer.Exit(130)


def rerun_hint(overwrite: bool, in_place: bool = False) -> str:
    """How to finish an interrupted colorize or sample-diverse run."""
    if in_place:
        return "the files not done are untouched"
    return "run it again without --overwrite to continue" if overwrite else "run the same command again to continue"


def skipped_text(records: list[dict], skipped: int) -> str:
    """"N skipped", saying why when outputs that exist were skipped (else a rerun with another
    setting looks as if it had run)."""
    exist = sum(r["status"] == "skipped" and "exist" in r.get("reason", "") for r in records)
    return f"{skipped} skipped" + (" (outputs exist; --overwrite replaces them)" if exist else "")


def made_with(ok: int, name: str) -> str:
    """" with MODEL" when the model made something (not when every file was skipped or failed)."""
    return f" with {shown(name)}" if ok else ""


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
