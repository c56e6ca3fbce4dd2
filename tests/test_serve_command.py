"""`recolor serve`, the command: the warning for another host, SIGTERM, usage errors."""
from __future__ import annotations

import signal
import socket

import httpx
from typer.testing import CliRunner

from recolor.cli import app as cli_app
from serving import ServerProcess


def test_another_host_is_warned_about_and_sigterm_stops_the_server_cleanly(tiny_hint_checkpoint):
    # the default (127.0.0.1) and Ctrl-C: test_serve_browser.py, which starts the server that way
    server = ServerProcess("--model", str(tiny_hint_checkpoint), "--host", "0.0.0.0")
    try:
        assert httpx.get(server.url + "api/info", timeout=30).json()["takes_hints"] is True
        code, printed = server.interrupt(sent=signal.SIGTERM)  # as a service manager stops it
    finally:
        server.close()
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in printed
    assert code == 0 and "Traceback" not in printed and "stopped" in printed


def test_serve_usage_errors_are_one_line_exit_2(tmp_path, tiny_hint_checkpoint):
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["serve", str(tmp_path / "nowhere"), "--model", str(tiny_hint_checkpoint)])
    assert missing.exit_code == 2 and "not a folder" in missing.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(cli_app, ["serve", "--port", str(port), "--model", str(tiny_hint_checkpoint)])
    assert busy.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.output and "Traceback" not in busy.output
    unknown = runner.invoke(cli_app, ["serve", "--port", "0", "--model", "no-such-model"])
    assert unknown.exit_code == 2
