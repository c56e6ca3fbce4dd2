"""recolor: colorize greyscale photographs with the deep generative models of five papers.

>>> from recolor import Colorizer
>>> Colorizer.load().colorize("old_photo.jpg").save("colour.png")
>>> from recolor import load_sampler
>>> load_sampler("divcolor").sample("old_photo.jpg", k=5)  # five different colorizations
"""
from __future__ import annotations

__version__ = "0.1.0"

DEFAULT_MODEL = "effnet-unet"  # the shipped default of Colorizer.load(), `recolor colorize` and `recolor train`

__all__ = ["Colorizer", "DEFAULT_MODEL", "DiverseSampler", "load_sampler", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import recolor` (and the CLI's --help) stays fast.
    if name == "Colorizer":
        from .inference import Colorizer

        return Colorizer
    if name in ("DiverseSampler", "load_sampler"):
        from . import diverse

        return getattr(diverse, name)
    raise AttributeError(name)
