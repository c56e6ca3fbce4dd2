"""How the commands present themselves: usage errors in one line, arguments named plainly in the help.

typer (0.29) carries its own copy of click, whose exceptions are imported from there.
"""
import contextlib

import typer.core
from typer._click.exceptions import NoArgsIsHelpError, NoSuchOption, UsageError


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
