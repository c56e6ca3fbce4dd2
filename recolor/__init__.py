"""recolor: colorize greyscale photographs with the deep generative models of five papers.

>>> from recolor import Colorizer
>>> Colorizer.load().colorize("old_photo.jpg").save("colour.png")
"""
from __future__ import annotations

__version__ = "0.1.0"

DEFAULT_MODEL = "effnet-unet"  # the shipped default of Colorizer.load(), `recolor colorize` and `recolor train`

__all__ = ["Colorizer", "DEFAULT_MODEL", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import recolor` (and the CLI's --help) stays fast.
    if name == "Colorizer":
        from .inference import Colorizer

        return Colorizer
    raise AttributeError(name)
