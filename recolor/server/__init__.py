"""``recolor serve``: one local page to colour photos by hand, over the Python API.

* :mod:`.folder` -- FOLDER's photos offered by id, hints sidecars written beside them;
* :mod:`.photos` -- the photos open in the page, in a bounded cache;
* :mod:`.studio` -- the work: previews, full-resolution results, suggestions, thumbnails;
* :mod:`.forms` -- a request's fields, checked;
* :mod:`.app` -- the HTTP API (Starlette) and its errors;
* :mod:`.run` -- binding the socket and serving (uvicorn);
* ``static/`` -- the page itself (HTML, JS, CSS: no CDN, no build step).
"""
from .app import Workers, create_app
from .folder import PhotoFolder
from .run import ServeError, bind, is_loopback, run, url_of
from .studio import Studio

__all__ = ["PhotoFolder", "ServeError", "Studio", "Workers", "bind", "create_app", "is_loopback", "run", "url_of"]
