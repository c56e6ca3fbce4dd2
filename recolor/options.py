"""A bad parameter value, said in the words of whoever passed it.

The Python API and the command line share their checks (a device, a sampler's draws), but a
Python caller passed ``device="cuda"`` and a shell user ``--device cuda``: a message naming the
other one's spelling sends each to look for something they never wrote. :class:`OptionError`
keeps the parameter, its value and the reason apart; ``str()`` says it as Python does, and the
command line renders the same error with its flags (:meth:`OptionError.as_flag`). Bottom layer:
imports nothing of the package.
"""
from __future__ import annotations

import re

# another parameter named inside a reason, as {name=value} with the value a Python literal: "use {method='random'} for more"
_MENTION = re.compile(r"\{(\w+)=([^}]*)\}")


class OptionError(ValueError):
    """``parameter`` cannot take ``value``; ``reason`` (one line) may name other parameters as ``{name=value}``
    (the value a Python literal: ``{method='random'}``, ``{draws=64}``).

    >>> str(OptionError("device", "cuda", "no CUDA device is available"))
    "device='cuda': no CUDA device is available"
    >>> OptionError("k", 9, "use {method='random'} for more").as_flag()
    '-k 9: use --method random for more'
    """

    def __init__(self, parameter: str, value: object, reason: str) -> None:
        self.parameter, self.value, self.reason = parameter, value, reason
        super().__init__(f"{parameter}={value!r}: {_MENTION.sub(lambda m: f'{m[1]}={m[2]}', reason)}")

    def as_flag(self) -> str:
        """The same message in the command line's words: ``--device cuda: ...``."""
        return f"{flag(self.parameter)} {self.value}: {_MENTION.sub(lambda m: f'{flag(m[1])} {m[2].strip(chr(39))}', self.reason)}"


def flag(parameter: str) -> str:
    """The command-line flag of a Python parameter: ``batch_size`` -> ``--batch-size``, ``k`` -> ``-k``."""
    return f"-{parameter}" if len(parameter) == 1 else "--" + parameter.replace("_", "-")


def said_on_the_command_line(exc: BaseException) -> str:
    """An exception's one-line message as the command line prints it (an :class:`OptionError` with its flags)."""
    if isinstance(exc, OptionError):
        return exc.as_flag()
    return str(exc.args[0]) if exc.args else str(exc)
