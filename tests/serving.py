"""Helpers of the `recolor serve` tests: a tiny network that follows hints, the server in a
subprocess, colour near a point, the system Chromium."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from recolor.checkpoint import save_checkpoint
from recolor.color import rgb_to_lab_normalized
from recolor.registry import get_model_spec

REPO = Path(__file__).resolve().parents[1]
TINY_HINTED = {"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64, "hints": True}


def given_ab(grey: Image.Image, x: int, y: int, colour: str) -> np.ndarray:
    """The ab a point's colour is given to the network as: at the photo's lightness there."""
    from skimage.color import rgb2lab

    from recolor.hints import HintPoint, parse_colour, points_at_lightness

    lightness = rgb2lab(np.asarray(grey.convert("RGB")))[..., 0]
    return np.array(points_at_lightness([HintPoint(x, y, parse_colour(colour))], grey.size, lightness)[0].ab)


def save_obedient_hint_network(path: Path, gain: float = 0.2) -> Path:
    """A tiny hint-taking effnet-unet (random encoder and decoder) that obeys its hints: the
    product-of-experts path (``gain x log q_hint`` added to the logits where a hint is) turned up
    so far that the hinted colour wins there, while nothing changes elsewhere. A real check that a
    server hands the right point, at the right place, to the network."""
    spec = get_model_spec("effnet-unet")
    config = spec.architecture_config(TINY_HINTED)
    torch.manual_seed(0)
    network = spec.build(config).eval()
    with torch.no_grad():
        network.hint_gain.fill_(gain)  # x HINT_GAIN_SCALE (100): 20 x log q_hint
    return save_checkpoint(path, network.state_dict(), "effnet-unet", config, kind="weights")


def ab_near(image: Image.Image, x: int, y: int, radius: int = 6) -> np.ndarray:
    """Mean normalised a*b* of the square of side 2 * radius around (x, y)."""
    rgb = torch.from_numpy(np.asarray(image.convert("RGB"))[y - radius:y + radius, x - radius:x + radius].copy())
    return rgb_to_lab_normalized(rgb.permute(2, 0, 1)[None].float() / 255.0)[1][0].mean(dim=(1, 2)).numpy()


class ServerProcess:
    """``recolor serve`` in a subprocess; ``url`` once it listens (read from its stderr)."""

    def __init__(self, *args: str, timeout: float = 120.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "recolor.cli", "serve", "--port", "0", *args], cwd=REPO, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        self.url = None
        while self.url is None:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError("recolor serve ended before listening:\n" + "".join(self.lines))
            self.lines.append(line)
            match = re.search(r"(http://\S+/)", line)
            if match:
                self.url = match.group(1)
            if time.monotonic() > deadline:
                raise TimeoutError("recolor serve did not start:\n" + "".join(self.lines))

    def interrupt(self, timeout: float = 30.0, sent: int = signal.SIGINT) -> tuple[int, str]:
        """Ctrl-C (or another signal); its exit code and everything it printed on stderr."""
        self.process.send_signal(sent)
        _, rest = self.process.communicate(timeout=timeout)
        return self.process.returncode, "".join(self.lines) + rest

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def chromium_path() -> str | None:
    """The system Chromium's binary (Debian's /usr/bin/chromium is a shell wrapper around it)."""
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def click_photo(page, x: int, y: int, width: int, height: int) -> None:
    """Click pixel (x, y) of the width x height photo that the page shows."""
    box = page.locator("#stage").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) / width * box["width"], box["y"] + (y + 0.5) / height * box["height"])
