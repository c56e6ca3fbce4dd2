"""Where shipped weights live (torch-free: the ONNX engine looks its files up without loading torch)."""
from __future__ import annotations

import contextlib
import importlib.resources
import os
from pathlib import Path


def weights_dirs() -> list[Path]:
    """Where shipped weights are looked for: $RECOLOR_WEIGHTS_DIR, the installed package, the source tree."""
    dirs = []
    if os.environ.get("RECOLOR_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["RECOLOR_WEIGHTS_DIR"]))
    with contextlib.suppress(ModuleNotFoundError, TypeError):
        dirs.append(Path(str(importlib.resources.files("recolor.weights"))))
    dirs.append(Path(__file__).resolve().parent.parent / "weights")
    return dirs
