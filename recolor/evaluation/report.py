"""The human-readable output of ``recolor evaluate``: the HTML report (the table, notes, bar charts
and sample photos side by side) and the tables printed to the console."""
from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..imageio.atomic import atomic_write_bytes
from ..imageio.encoders import save_image
from .catalogue import METRICS
from .result import EvalResult, format_value, table_rows, write_json


# --- the HTML report ----------------------------------------------------------------------

def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-").lower() or "row"


_BAR_COLOURS = {"baseline": (150, 150, 150), "model": (52, 101, 164), "predictions": (78, 154, 6)}


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def bar_chart(title: str, labels: list[str], values: list[float | None], kinds: list[str], note: str = "",
              texts: list[str] | None = None) -> Image.Image:
    """A horizontal bar chart drawn with PIL (no plotting library needed); None values show 'n/a'."""
    font = _font(14)
    row_height, left, right, top = 26, 200, 120, 50
    width = 720
    height = top + row_height * len(labels) + 16
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black", font=font)
    if note:
        draw.text((10, 24), note, fill=(90, 90, 90), font=font)
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low = min([0.0] + finite)
    high = max([0.0] + finite) or 1.0
    span = (high - low) or 1.0
    plot = width - left - right
    zero = left + plot * (0 - low) / span
    for i, (label, value, kind) in enumerate(zip(labels, values, kinds)):
        y = top + i * row_height
        text = label if len(label) <= 30 else label[:29] + "…"
        draw.text((8, y + 5), text, fill="black", font=font)
        if value is None or not math.isfinite(value):
            draw.text((left + 4, y + 5), "n/a", fill=(120, 120, 120), font=font)
            continue
        end = left + plot * (value - low) / span
        x0, x1 = sorted((zero, end))
        draw.rectangle([x0, y + 3, max(x1, x0 + 1), y + row_height - 4], fill=_BAR_COLOURS.get(kind, (52, 101, 164)))
        draw.text((max(x1, zero) + 6, y + 5), texts[i] if texts else f"{value:.4g}", fill="black", font=font)
    draw.line([zero, top - 2, zero, height - 10], fill=(60, 60, 60))
    return image


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}th small{color:#777;font-weight:normal}
.samples td{text-align:center;vertical-align:top;font-size:12px}.samples img{image-rendering:pixelated;display:block;margin:auto}
.charts img{margin:6px;border:1px solid #ddd}code{background:#f5f5f5;padding:1px 3px}
"""
_esc = html.escape


def write_report(result: EvalResult, folder: Path) -> Path:
    """``folder/index.html`` (self-contained, relative image paths) with the table, notes, bar
    charts (``charts/*.png``) and sample photos side by side (``samples/*.png``); plus results.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(result, folder / "results.json")
    info = result.info
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>recolor evaluation</title><style>{_CSS}</style></head><body>",
             "<h1>recolor evaluation</h1>",
             f"<p>{info['photos']} photos from <code>{_esc(info['data'])}</code> at {info['size']}x{info['size']} px; "
             f"{_esc(info['date'])}; {info['seconds']} s on {_esc(info['device'])}.</p>"]
    parts += _results_table(result)
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in result.notes) + "</ul>")
    parts += _charts(result, folder)
    if result.samples:
        parts += _samples(result, folder)
    parts.append("<h2>Metric definitions</h2><ul>" + "".join(f"<li><b>{_esc(METRICS[k].label)}</b>: {_esc(METRICS[k].description)}</li>" for k in result.metrics) + "</ul>")
    parts.append("</body></html>\n")
    atomic_write_bytes(folder / "index.html", "\n".join(parts).encode("utf-8"))
    return folder / "index.html"


def _results_table(result: EvalResult) -> list[str]:
    """The figures as an HTML table (metrics down, rows across), each metric's description as its tooltip."""
    headers = "".join(f"<th>{_esc(row.name)}" + ("<br><small>baseline</small>" if row.kind == "baseline" else "") + "</th>" for row in result.rows)
    parts = [f"<h2>Results</h2><table><tr><th class='l'>metric</th><th class='l'>better</th>{headers}</tr>"]
    for key, cells in zip(result.metrics, table_rows(result, with_std=True)):
        parts.append(f"<tr><td class='l' title='{_esc(METRICS[key].description)}'>{_esc(cells[0])}</td><td class='l'>{_esc(cells[1])}</td>"
                     + "".join(f"<td>{_esc(c)}</td>" for c in cells[2:]) + "</tr>")
    parts.append("</table><p>Rows <b>real</b> and <b>grey</b> are the references: the ground truth itself and the greyscale input. "
                 "— marks a figure that does not apply (e.g. errors of the ground truth against itself).</p>")
    return parts


def _charts(result: EvalResult, folder: Path) -> list[str]:
    """One bar chart per metric that any row has a figure for, saved under ``folder/charts``."""
    names = [row.name for row in result.rows]
    kinds = [row.kind for row in result.rows]
    parts = ["<h2>Charts</h2><div class='charts'>"]
    for key in result.metrics:
        values = [row.values.get(key) for row in result.rows]
        if all(v is None or not math.isfinite(v) for v in values):
            continue
        metric = METRICS[key]
        better = f"{metric.better} is better" if metric.better in ("lower", "higher") else f"better {metric.better}"
        chart = bar_chart(f"{metric.label} ({better})", names, values, kinds, "grey bars: the baselines", [format_value(key, v) for v in values])
        save_image(folder / "charts" / f"{_slug(key)}.png", np.asarray(chart))
        parts.append(f"<img src='charts/{_slug(key)}.png' alt='{_esc(metric.label)}' title='{_esc(metric.description)}'>")
    parts.append("</div>")
    return parts


def _samples(result: EvalResult, folder: Path) -> list[str]:
    """The sample photos as every row made them, side by side (grey input first, ground truth last)."""
    names = [row.name for row in result.rows]
    shown = ["grey"] + [n for n in names if n not in ("real", "grey")] + ["real"]
    headers = {"grey": "grey input", "real": "ground truth"}
    size = result.info["size"]
    display = max(128, size) if size < 128 else min(256, size)
    parts = ["<h2>Samples</h2><table class='samples'><tr><th class='l'>photo</th>" + "".join(f"<th>{_esc(headers.get(n, n))}</th>" for n in shown) + "</tr>"]
    for index, sample in enumerate(result.samples):
        cells = []
        for name in shown:
            filename = f"samples/{index:03d}_{_slug(name)}.png"
            save_image(folder / filename, sample["images"][name])
            cells.append(f"<td><img src='{filename}' width='{display}' height='{display}' alt='{_esc(name)}'></td>")
        parts.append(f"<tr><td class='l'>{_esc(sample['photo'])}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    return parts


# --- the console --------------------------------------------------------------------------

def print_table(result: EvalResult, console) -> None:
    """The results as rich tables (metrics down, rows across), as many as the width needs, then the notes."""
    from rich.markup import escape
    from rich.table import Table

    info = result.info
    cells = table_rows(result)
    for number, group in enumerate(_column_groups(result, cells, console.width)):
        size = f"{info['size']} px" if isinstance(info["size"], int) else "full size"
        title = f"recolor evaluate: {info['photos']} {info.get('unit', 'photos')} of {escape(str(info['data']))} at {size}"
        table = Table(title=title if number == 0 else None, title_justify="left")
        table.add_column("metric", no_wrap=True)
        table.add_column("better", no_wrap=True)
        for index in group:
            row = result.rows[index]
            table.add_column(escape(row.name), justify="right", no_wrap=True, style="dim" if row.kind == "baseline" else None)
        for line in cells:
            table.add_row(line[0], line[1], *[line[2 + index] for index in group])
        console.print(table)
    for note in result.notes:
        console.print(f"- {escape(note)}", highlight=False, soft_wrap=True)


def _column_groups(result: EvalResult, cells: list[list[str]], width: int) -> list[list[int]]:
    """Row indices per printed table: greedily as many value columns as fit the console's width."""
    label_width = max(len(c[0]) for c in cells) + max(len(c[1]) for c in cells) + 7 if cells else 20
    value_widths = [max([len(row.name)] + [len(c[2 + i]) for c in cells]) + 3 for i, row in enumerate(result.rows)]
    groups, current, used = [], [], label_width
    for index, column in enumerate(value_widths):
        if current and used + column > width:
            groups.append(current)
            current, used = [], label_width
        current.append(index)
        used += column
    groups.append(current)
    return groups
