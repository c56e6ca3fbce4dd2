"""`recolor models`: every registered model with its paper and a one-line description."""
import json
from typing import Annotated

import typer

from ._shared import console


def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List every model with its paper and a one-line description."""
    from rich.table import Table

    from ..checkpoint import ships_weights
    from ..diverse import diverse_samples
    from ..registry import list_models

    rows = [{"name": spec.name, "paper": spec.paper, "shipped_weights": ships_weights(spec.name),
             "diverse_samples": diverse_samples(spec), "description": spec.description}
            for spec in list_models()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("model", "paper", "weights", "sample-diverse", "description")
    for row in rows:
        table.add_row(row["name"], row["paper"], "shipped" if row["shipped_weights"] else "-", row["diverse_samples"] or "-",
                      row["description"])
    console().print(table)
