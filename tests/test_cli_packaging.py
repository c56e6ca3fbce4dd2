"""Issue 29 (packaging 1): the distribution holds every package of recolor (CI also builds the wheel,
installs it into a fresh venv and runs every command from it: .ci/run)."""
from __future__ import annotations

import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_under_recolor_is_in_the_distribution(monkeypatch):
    import setuptools  # noqa: F401  (first: distutils is then setuptools' own)
    from distutils.core import run_setup

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dist = run_setup(str(ROOT / "setup.py"), stop_after="config")
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "recolor").rglob("__init__.py")}
    assert {"recolor.commands", "recolor.evaluation"} <= on_disk
    assert set(dist.packages) == on_disk | {"recolor.weights"}
    assert dist.package_dir == {"recolor.weights": "weights"}
