"""The HTTP side of ``recolor serve``: a Starlette app whose API the page itself uses.

Every answer that is not the asked-for image or JSON is a 4xx or 5xx with ``{"error": "one
line"}``, never a traceback. The request body is capped (``max_upload_bytes``) before it is read
whole; the model's work runs in a few worker threads (:class:`Workers`), and requests beyond a
bounded queue are answered 503 at once rather than held in memory. API: README.md, "recolor serve".
"""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..hints import Hints
from ..hintsfile import HintsFileError
from ..imageio.decoding import ImageReadError
from ..inference import NonFiniteOutputError
from .folder import UnknownPhoto
from .forms import (
    MAX_FIELDS, MAX_FILES, RequestError, file_field, hints_field, id_field, number_field, read_upload, text_field, upload_name,
)
from .photos import OpenPhoto, PhotoClosed
from .studio import Reference, Studio

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 64 << 20
DEFAULT_WORKERS = 2
DEFAULT_MAX_WAITING = 64
MAX_SIDE = 4096
log = logging.getLogger("recolor.serve")


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "upload too large: over the server's limit (recolor serve --max-upload-mb)")


class BodyLimit:
    """A 413 for a request whose body is over ``max_bytes``: at once when its Content-Length says
    so, else as soon as the bytes received pass it (a chunked upload), before it is read whole.
    (Starlette's own ``max_body_size`` answers in plain text; every error here is JSON.)"""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await error(BodyTooLarge().detail, 413)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


class Workers:
    """At most ``count`` jobs at once in threads; beyond ``max_waiting`` queued, a 503 at once."""

    def __init__(self, count: int = DEFAULT_WORKERS, max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self.limiter = anyio.CapacityLimiter(max(1, count))
        self.max_waiting, self.waiting = max_waiting, 0

    async def run(self, function, *args):
        if self.waiting >= self.max_waiting:
            raise RequestError(f"busy: {self.waiting} requests are waiting; try again shortly", 503)
        self.waiting += 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self.limiter)
        finally:
            self.waiting -= 1


def create_app(studio: Studio, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES, workers: Workers | None = None) -> Starlette:
    workers = workers or Workers()

    async def form_of(request: Request):
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise RequestError("send a form (multipart/form-data): see the API in README.md")
        return request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS, max_part_size=1 << 20)

    def open_photo_of(form) -> OpenPhoto:
        return studio.cache.get(id_field(form, "photo"))

    def reference_of(form) -> Reference | None:
        """The request's reference: an uploaded ``reference`` file or ``reference_id`` (an open photo, or a FOLDER photo)."""
        upload, id = file_field(form, "reference"), id_field(form, "reference_id")
        if upload is not None and id is not None:
            raise RequestError('give "reference" or "reference_id", not both')
        if upload is not None:
            return studio.upload_reference(read_upload(upload), upload_name(upload, "reference"))
        if id is None:
            return None
        photo = studio.cache.find(id)
        if photo is None and studio.folder is not None:
            photo = studio.open_folder_photo(studio.folder.photo(id))
        if photo is None:
            raise PhotoClosed(f"reference {id!r} is not open: open it again")
        return Reference(photo.reference_source(), photo)

    def photo_of(form):
        """The photo of a request (an ``image`` upload or an open ``photo``): (decoded, name, open photo or None)."""
        upload, id = file_field(form, "image"), id_field(form, "photo")
        if (upload is None) == (id is None):
            raise RequestError('give the photo as the "image" file or as "photo" (an open photo\'s id), one of them')
        if upload is not None:
            name = upload_name(upload, "image")
            return studio.decode_upload(read_upload(upload), name), name, None
        photo = studio.cache.get(id)
        return photo.decoded, photo.name, photo

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def info(request: Request) -> Response:
        colorizer = studio.colorizer
        return JSONResponse({"model": colorizer.name, "takes_hints": colorizer.takes_hints, "folder": studio.folder is not None,
                             "suggests": getattr(colorizer.generator, "head", None) == "classification",
                             "max_upload_bytes": max_upload_bytes, "max_pixels": studio.max_pixels})

    async def list_photos(request: Request) -> Response:
        if studio.folder is None:
            return JSONResponse({"photos": []})
        photos = await workers.run(studio.folder.refresh)
        return JSONResponse({"photos": [{"id": p.id, "name": p.name, "has_hints": p.sidecar.is_file()} for p in photos]})

    async def thumbnail(request: Request) -> Response:
        if studio.folder is None:
            raise UnknownPhoto("no folder is served")
        photo = studio.folder.photo(request.path_params["id"])
        return Response(await workers.run(studio.thumbnail, photo), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=60"})

    async def open_(request: Request) -> Response:
        async with await form_of(request) as form:
            upload, id = file_field(form, "image"), id_field(form, "id")
            if (upload is None) == (id is None):
                raise RequestError('give "image" (a file) or "id" (a photo of the folder), one of them')
            hints, problem = None, None
            if upload is not None:
                photo = await workers.run(studio.open_upload, read_upload(upload), upload_name(upload, "image"))
            else:
                if studio.folder is None:
                    raise UnknownPhoto("no folder is served")
                folder_photo = studio.folder.photo(id)
                photo = await workers.run(studio.open_folder_photo, folder_photo)
                try:
                    hints = studio.folder.read_hints(folder_photo)
                except HintsFileError as exc:  # the photo opens all the same; saving replaces the bad file
                    problem = str(exc)
        width, height = photo.size
        return JSONResponse({"photo": photo.id, "name": photo.name, "width": width, "height": height,
                             "in_folder": photo.folder_photo is not None, "hints": hints, "hints_error": problem})

    async def before(request: Request) -> Response:
        form = request.query_params
        photo = studio.cache.get(id_field(form, "photo"))
        max_side = int(number_field(form, "max_side", 1024, 16, MAX_SIDE, integer=True))
        return Response(await workers.run(studio.before, photo, max_side), media_type="image/jpeg")

    async def preview(request: Request) -> Response:
        async with await form_of(request) as form:
            photo, points = open_photo_of(form), hints_field(form)
            max_side = int(number_field(form, "max_side", 1024, 16, MAX_SIDE, integer=True))

            def work() -> bytes:
                return studio.preview(photo, points, reference_of(form), max_side)
            return Response(await workers.run(work), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def colorize(request: Request) -> Response:
        async with await form_of(request) as form:
            points, fmt = hints_field(form), text_field(form, "format") or "png"

            def work():
                decoded, name, _ = photo_of(form)
                return studio.result(decoded, name, points, reference_of(form), fmt)
            download = await workers.run(work)
        return Response(download.data, media_type=download.media_type, headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(download.filename)}", "Cache-Control": "no-store"})

    async def suggest(request: Request) -> Response:
        async with await form_of(request) as form:
            points = hints_field(form)
            x, y = number_field(form, "x"), number_field(form, "y")
            k = int(number_field(form, "k", 5, 1, 32, integer=True))

            def work():
                decoded, _, photo = photo_of(form)
                return studio.suggest(decoded, x, y, k, points, reference_of(form), photo.features if photo else None)
            suggestions = await workers.run(work)
        return JSONResponse({"suggestions": [{"color": colour, "probability": round(p, 4)} for colour, p in suggestions]})

    async def save_hints(request: Request) -> Response:
        async with await form_of(request) as form:
            photo, points = open_photo_of(form), hints_field(form)
            reference_id = id_field(form, "reference_id")
        if photo.folder_photo is None or studio.folder is None:
            raise RequestError("only a photo of the folder has hints saved beside it (download the result instead)", 409)
        reference = studio.folder.photo(reference_id) if reference_id else None
        hints = Hints.of(points)
        if hints is not None:
            hints.check_inside(*photo.size)
        saved = await workers.run(studio.folder.write_hints, photo.folder_photo, hints, reference)
        return JSONResponse({"saved": saved.relative_to(studio.folder.root).as_posix() if saved.is_relative_to(studio.folder.root)
                             else saved.name})

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/photos", list_photos),
        Route("/api/photos/{id}/thumbnail", thumbnail),
        Route("/api/open", open_, methods=["POST"]),
        Route("/api/before", before),
        Route("/api/preview", preview, methods=["POST"]),
        Route("/api/colorize", colorize, methods=["POST"]),
        Route("/api/suggest", suggest, methods=["POST"]),
        Route("/api/hints", save_hints, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers=ERROR_HANDLERS, middleware=[Middleware(BodyLimit, max_bytes=max_upload_bytes)])


def error(message: str, status: int) -> JSONResponse:
    line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": line}, status_code=status)


async def _request_error(request: Request, exc: RequestError) -> Response:
    return error(str(exc), exc.status)


async def _bad_value(request: Request, exc: Exception) -> Response:
    return error(str(exc), 400)


async def _unreadable_image(request: Request, exc: ImageReadError) -> Response:
    return error(str(exc), 413 if "too large" in str(exc) else 400)


async def _missing(request: Request, exc: KeyError) -> Response:
    return error(exc.args[0] if exc.args else "not found", 410 if isinstance(exc, PhotoClosed) else 404)


async def _http(request: Request, exc: HTTPException) -> Response:
    return error(exc.detail, exc.status_code)


async def _internal(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NonFiniteOutputError):
        return error(str(exc), 500)
    log.exception("unexpected error on %s", request.url.path)
    return error(f"internal error ({type(exc).__name__}); the server's console has the details", 500)


ERROR_HANDLERS = {
    RequestError: _request_error,
    NonFiniteOutputError: _internal,
    HintsFileError: _bad_value,
    ValueError: _bad_value,
    ImageReadError: _unreadable_image,
    UnknownPhoto: _missing,
    PhotoClosed: _missing,
    HTTPException: _http,
    Exception: _internal,
}
