"""The `recolor` command line: a thin layer over the Python API.

Each command parses its options, asks :mod:`recolor.planning` what to do (inputs, outputs, skips,
datasets, the distributed set-up), runs it through the package and prints. Exit codes: 0 every
file succeeded, 1 some file failed (a bad image in a folder, or any file named explicitly that is
not an image: files in folders that are not images by extension are left out, not failed), 2 bad
usage, found before any work (nothing to do, unknown model, unreadable checkpoint, contradictory
options, unusable device or size, unwritable output folder). Human messages go to stderr, one line
each, never a traceback; ``--json`` output goes to stdout.

One command, one module: ``recolor/commands/NAME.py`` defines the function ``NAME`` and is
registered here as the command ``NAME`` (underscores become dashes); modules whose name starts
with ``_`` hold shared helpers. A new command needs no edit here.

Start-up: these modules import only typer; torch, the models, rich and the planning's helpers are
imported by the command that needs them (``--help`` stays fast). Help is click's plain text:
typer's rich help formatting alone took as long to import as the rest of ``recolor --help``.
"""
# No ``from __future__ import annotations`` in the command modules: typer would then evaluate every
# option's annotation from its string on each start (a tenth of ``--help``'s own time).
import importlib
import os
import signal
from typing import Annotated

import typer

from ._typer import OneLineUsageErrors, PlainHelpCommand

app = typer.Typer(cls=OneLineUsageErrors, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Colorize greyscale photos with deep generative models.")

# The order of `recolor --help`; commands not named here follow in alphabetical order.
HELP_ORDER = ("colorize", "sample_diverse", "train", "models", "evaluate")


def show_version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"recolor {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Colorize greyscale photos with deep generative models."""


def command_modules() -> list[str]:
    """The names of this package's command modules, in help order (the folder is listed: pkgutil
    alone would add a tenth to ``--help``'s time)."""
    names = [file[:-3] for file in os.listdir(__path__[0]) if file.endswith(".py") and not file.startswith("_")]
    return sorted(names, key=lambda name: (HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER), name))


def register_commands() -> None:
    for name in command_modules():
        module = importlib.import_module(f"{__name__}.{name}")
        app.command(name.replace("_", "-"), cls=PlainHelpCommand)(getattr(module, name))


register_commands()


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def handle_termination() -> None:
    """SIGTERM (``kill``, a scheduler's time limit) ends the run as Ctrl-C does: temporary files are
    removed, finished outputs stay."""
    signal.signal(signal.SIGTERM, _terminate)


def main() -> None:
    handle_termination()
    app()
