"""Reading a request's form: its fields checked, each problem one line for a 4xx answer.

No field names a path on disk: photos come as uploaded files or as ids (an open photo's, or a
FOLDER photo's), and the hints JSON may not carry a ``reference`` file name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.datastructures import FormData, UploadFile

from ..hints import HintPoint
from ..hintsfile import MAX_HINTS_FILE_BYTES, parse_hints_document

MAX_FIELDS = 16
MAX_FILES = 2  # the photo and a reference
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RequestError(ValueError):
    """A request that cannot be served as asked: ``status`` and a one-line message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def text_field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(f'"{name}" must be a text field, not a file')
    return value


def file_field(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, UploadFile):
        raise RequestError(f'"{name}" must be a file upload (multipart/form-data), not a text field')
    return value


def id_field(form: FormData, name: str) -> str | None:
    value = text_field(form, name)
    if value is not None and not _ID.match(value):
        raise RequestError(f'"{name}": not an id (ids are letters, digits, _ and -)')
    return value


def number_field(form: FormData, name: str, default: float | None = None, low: float = float("-inf"),
                 high: float = float("inf"), integer: bool = False) -> float:
    value = text_field(form, name)
    if value is None:
        if default is None:
            raise RequestError(f'"{name}" is missing')
        return default
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        raise RequestError(f'"{name}": {value[:40]!r} is not {"an integer" if integer else "a number"}') from None
    if not low <= number <= high:
        raise RequestError(f'"{name}": {number:g} is not between {low:g} and {high:g}')
    return number


def hints_field(form: FormData) -> tuple[HintPoint, ...]:
    """The points of the ``hints`` field: the hints file's JSON (:mod:`recolor.hintsfile`) without
    ``reference``, which a request sends as a file (``reference``) or an id (``reference_id``)."""
    text = text_field(form, "hints")
    if text is None:
        return ()
    if len(text) > MAX_HINTS_FILE_BYTES:
        raise RequestError(f"hints: larger than {MAX_HINTS_FILE_BYTES // 1024} KiB")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"hints: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if isinstance(document, dict) and "reference" in document:
        raise RequestError('hints: a request sends its reference as the "reference" file or "reference_id", never a file name')
    try:
        return parse_hints_document(document, Path(".")).hints.points
    except ValueError as exc:
        raise RequestError(f"hints: {exc}") from None


def upload_name(upload: UploadFile, default: str = "upload") -> str:
    """An upload's file name, as messages and downloads show it: its last part, no control characters."""
    name = Path((upload.filename or "").replace("\\", "/")).name
    return _CONTROL.sub("?", name)[:200] or default


def read_upload(upload: UploadFile) -> bytes:
    """The bytes of an uploaded file (the body's size is capped before this, see the app)."""
    upload.file.seek(0)
    return upload.file.read()
