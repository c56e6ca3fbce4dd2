"""The `recolor` entry point (pyproject ``[project.scripts]``) and ``python -m recolor.cli``.

The commands live in :mod:`recolor.commands`, one module each.
"""
from .commands import app, handle_termination, main

__all__ = ["app", "handle_termination", "main"]

if __name__ == "__main__":
    main()
