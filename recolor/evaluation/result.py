"""The result of ``recolor evaluate``: one row of figures per contender, its JSON and its table cells."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..imageio.atomic import atomic_write_bytes
from .catalogue import METRICS


@dataclass
class Row:
    """One contender's figures: ``values`` maps metric keys (and ``<key>_se``, ``is_std``) to numbers or None."""

    name: str
    kind: str  # "baseline" | "model" | "predictions"
    source: str
    values: dict[str, float | None] = field(default_factory=dict)


@dataclass
class EvalResult:
    """Every row's figures, the metric keys in table order, what was run (``info``) and what the figures mean (``notes``)."""

    rows: list[Row]
    metrics: list[str]  # metric keys, in table order
    info: dict
    notes: list[str]
    samples: list[dict] = field(default_factory=list)  # {"photo": rel path, "images": {row name: uint8 HxWx3}}

    def to_json(self) -> dict:
        return {
            "recolor_evaluate": 1,
            "info": self.info,
            "metrics": {key: {"label": METRICS[key].label, "better": METRICS[key].better, "description": METRICS[key].description} for key in self.metrics},
            "rows": [{**asdict(row), "values": {k: _finite(v) for k, v in row.values.items()}} for row in self.rows],
            "notes": self.notes,
        }

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def format_value(key: str, value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "inf"
    if key == "variance" or (key == "omega" and 0 < abs(value) < 1e-3):
        return f"{value:.3g}"
    text = f"{value:.{METRICS[key].digits}f}"
    if std:
        text += f" ± {std:.{METRICS[key].digits}f}"
    return text


def spread(key: str, values: dict[str, float | None], with_std: bool) -> float | None:
    """The ± figure shown with a value: a paired difference's standard error always, IS's split std if asked."""
    if key == "is":
        return values.get("is_std") if with_std else None
    return values.get(f"{key}_se")


def table_rows(result: EvalResult, with_std: bool = False) -> list[list[str]]:
    """[metric label, better, value per row...] for each metric (IS with its std across splits if asked)."""
    out = []
    for key in result.metrics:
        info = METRICS[key]
        out.append([info.label, info.better] + [format_value(key, row.values.get(key), spread(key, row.values, with_std)) for row in result.rows])
    return out


def write_json(result: EvalResult, path: Path) -> Path:
    """``result.to_json()`` written atomically (a reader never sees half a file)."""
    atomic_write_bytes(path, (json.dumps(result.to_json(), indent=1) + "\n").encode("utf-8"))
    return path
