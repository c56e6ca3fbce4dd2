"""`recolor serve`: a local page to colour photos by hand (recolor/server/)."""
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import DEFAULT_MODEL
from ._shared import MODEL_HELP, err, fail, loaded, shown


def serve(
    folder: Annotated[Optional[Path], typer.Argument(help="A folder whose photos the page lists (it writes only NAME.hints.json beside them).")] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 7860,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but 127.0.0.1 lets other machines use the server.")] = "127.0.0.1",
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)] = DEFAULT_MODEL,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the browser.")] = False,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Refuse requests larger than this (MB).")] = 64.0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Refuse images with more pixels (decompression bombs).")] = 50_000_000,
    workers: Annotated[int, typer.Option(min=1, max=16, help="Requests worked on at once (each holds one photo in memory).")] = 2,
) -> None:
    """Serve a page to colour photos by hand: points, suggestions, a reference, full-size downloads."""
    try:
        from ..server import PhotoFolder, ServeError, Studio, Workers, bind, create_app, is_loopback, run, url_of
    except ImportError as exc:
        fail(f"recolor serve needs the server's packages ({exc.name} is missing): pip install 'recolor[serve]'")
    from ..imageio import allow_pixels
    from ..inference import Colorizer

    if folder is not None and not folder.is_dir():
        fail(f"{folder}: not a folder")
    try:
        sock = bind(host, port)
    except ServeError as exc:
        fail(str(exc))
    # the torch engine: the page keeps each photo's encoder features and reads the distribution over
    # ab bins for suggestions, which the ONNX export (colorize's fast path) does not give
    colorizer = loaded(lambda: Colorizer.load(model, engine="torch", device=device))
    allow_pixels(max_pixels)
    studio = Studio(colorizer, PhotoFolder(folder) if folder is not None else None, max_pixels=max_pixels)
    app = create_app(studio, max_upload_bytes=int(max_upload_mb * 1_000_000), workers=Workers(workers))
    try:  # from here on Ctrl-C (or SIGTERM) stops the server, whenever it comes
        if not is_loopback(host):
            err().print(f"[yellow]warning:[/] listening on {shown(host)}: anyone who can reach this machine on port "
                        f"{sock.getsockname()[1]} can use it (upload photos, see the folder's photos, write hints beside them)", highlight=False)
        hint = "" if colorizer.takes_hints else f" (model {shown(colorizer.name)} takes no hints: points and references are refused)"
        err().print(f"recolor serve: {url_of(sock)} with {shown(colorizer.name)}{hint}; Ctrl-C stops it", highlight=False)
        run(app, sock, open_browser)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    err().print("recolor serve: stopped", highlight=False)
