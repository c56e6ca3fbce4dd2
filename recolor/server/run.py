"""Serving the page: bind the socket, start uvicorn, stop cleanly on Ctrl-C (or SIGTERM).

The socket is bound here, before uvicorn starts, so that a port in use is one line (not a log
record), ``--port 0`` takes a free port, and the URL printed is the one really listened on.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import webbrowser

LOOPBACK = "127.0.0.1"


class ServeError(OSError):
    """The server cannot start (a port in use, an unknown host); one line."""


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # every interface: this machine reaches it on its loopback
        host = LOOPBACK
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(app, sock: socket.socket, open_browser: bool = False) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; returns when every connection is closed."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5, access_log=False)
    server = uvicorn.Server(config)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, (url_of(sock),)).start()
    server.run(sockets=[sock])
