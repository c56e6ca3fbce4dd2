"""`recolor serve`, the command: where it listens, what it says, how it stops, its usage errors."""
from __future__ import annotations

import signal
import socket

import httpx
from typer.testing import CliRunner

from recolor.cli import app as cli_app
from serving import ServerProcess


def test_serve_listens_on_loopback_by_default_warns_for_another_host_and_stops_cleanly_on_ctrl_c_or_sigterm(tiny_hint_checkpoint):
    server = ServerProcess("--model", str(tiny_hint_checkpoint))
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url + "api/info", timeout=30).json()["takes_hints"] is True
        assert "warning" not in "".join(server.lines)
        code, printed = server.interrupt()
    finally:
        server.close()
    assert code == 0 and "Traceback" not in printed and "stopped" in printed
    server = ServerProcess("--model", str(tiny_hint_checkpoint), "--host", "0.0.0.0")
    try:
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
