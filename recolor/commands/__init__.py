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
import contextlib
import importlib
import os
import signal
from typing import Annotated

import typer
import typer.core
from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption, UsageError  # typer's own click


def usage_line(exc: UsageError) -> str:
    """One line for a usage error (click prints four: usage, a hint, a blank, the error), with the
    closest option for a typo rather than every option that shares a few letters."""
    message = exc.format_message()
    if isinstance(exc, NoSuchOption) and exc.possibilities:
        from difflib import get_close_matches

        closest = get_close_matches(exc.option_name, sorted(exc.possibilities), n=1, cutoff=0) or sorted(exc.possibilities)
        message = f"No such option: {exc.option_name}; did you mean {closest[0]}?"
    where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    return f"{message}{where}"


class OneLineUsageErrors(typer.core.TyperGroup):
    """The command group, printing usage errors (a typo in an option, a missing argument, a value
    out of range) as one ``error:`` line like every other error, exit 2."""

    def make_context(self, *args, **kwargs):
        with self._one_line_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with self._one_line_errors():
            return super().invoke(ctx)

    @staticmethod
    @contextlib.contextmanager
    def _one_line_errors():
        try:
            yield
        except NoArgsIsHelpError:
            raise  # the help text, as asked
        except UsageError as exc:
            from ._shared import fail

            fail(usage_line(exc), exc.exit_code)


class PlainHelpCommand(typer.core.TyperCommand):
    """A command whose help shows arguments as ``INPUTS...`` (typer writes ``{INPUTS}...`` in the
    usage line and the Python type, ``<list[str]>``, beside the argument)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = lambda ctx: None  # the metavar says it

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece[1:].replace("}", "", 1) if piece.startswith("{") else piece for piece in super().collect_usage_pieces(ctx)]


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
