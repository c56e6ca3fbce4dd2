"""`recolor serve`, the command: the shipped default as a user starts it, the warning for another
host, SIGTERM, usage errors."""
from __future__ import annotations

import io
import json
import signal
import socket

import httpx
import numpy as np
from PIL import Image
from typer.testing import CliRunner

from recolor.cli import app as cli_app
from serving import ServerProcess, ab_near, given_ab


def test_the_shipped_default_serves_a_page_whose_point_turns_the_suit_blue(photos):
    """As a user runs it: `recolor serve` with no --model (the shipped default, which colorize runs
    through ONNX Runtime; the page needs the torch engine's features and distributions)."""
    grey = Image.fromarray(photos["astronaut"]).convert("L")
    upload = io.BytesIO()
    grey.save(upload, format="PNG")
    server = ServerProcess()
    try:
        info = httpx.get(server.url + "api/info", timeout=60)
        assert info.status_code == 200 and info.json()["takes_hints"] is True and info.json()["suggests"] is True
        points = json.dumps({"points": [{"x": 160, "y": 330, "color": "#1f4fd0"}]})  # on the suit
        answer = httpx.post(server.url + "api/colorize", files={"image": ("astronaut.png", upload.getvalue())},
                            data={"hints": points}, timeout=120)
        suggestions = httpx.post(server.url + "api/suggest", files={"image": ("astronaut.png", upload.getvalue())},
                                 data={"x": 160, "y": 330, "k": 3}, timeout=120)
    finally:
        server.interrupt()
        server.close()
    assert answer.status_code == 200, answer.text
    result = Image.open(io.BytesIO(answer.content))
    assert result.size == grey.size
    target = given_ab(grey, 160, 330, "#1f4fd0")
    assert np.linalg.norm(ab_near(result, 160, 330) - target) < 0.1, ab_near(result, 160, 330)
    assert suggestions.status_code == 200 and len(suggestions.json()["suggestions"]) >= 1


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
