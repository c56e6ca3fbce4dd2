"""`recolor export`: a model's network as an ONNX file (recolor/onnx_export.py)."""
from pathlib import Path
from typing import Annotated

import typer

from ._shared import MODEL_HELP, err, fail, loaded, shown


def export(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write, e.g. effnet-unet.onnx.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx (the only format).")] = "onnx",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export a model's network to ONNX, checked against torch, for ONNX Runtime alone (README: engines)."""
    if fmt != "onnx":
        fail(f"--format {fmt}: only onnx is supported")
    from ..onnx_export import TOLERANCE, ExportError, check_target, export_onnx

    try:
        check_target(output, overwrite)  # before the model loads
    except ExportError as exc:
        fail(str(exc))
    report = loaded(lambda: export_onnx(model, output, overwrite=overwrite))
    info = report.info
    sizes = "dynamic batch and size" if info.dynamic_size else f"dynamic batch, size {info.image_size} only"
    err().print(f"exported {shown(info.model)} to {shown(report.path)} ({report.bytes / 1e6:.1f} MB; inputs {', '.join(info.inputs)}; "
                f"{sizes}); ONNX Runtime matches torch: max |ab| difference {report.max_difference:.1e} (limit {TOLERANCE:g})", highlight=False)
