"""`recolor serve` under load: N concurrent ``POST /api/colorize`` of 768x512 photos, each with a
point, and the page's own loop (one open photo, a preview per change of its hints).

The server runs as its own process (``python -m recolor.cli serve --port 0``) with this
checkout's package, so its peak memory (VmHWM of /proc) is the server's alone. Reported: how many
requests were answered (and with which status), the p50/p95/max latency as the clients saw it,
the wall time of the whole burst, and the server's peak RSS before and after it; then the median
time of a preview after a change of hints (``/api/preview`` of an open photo at 1024 px), of a
suggestion and of a full-size download, one request at a time.

    taskset -c 1 python benchmarks/serve_concurrent.py                       # the shipped default model
    taskset -c 1 python benchmarks/serve_concurrent.py --model ../runs/hints1/last.safetensors
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def photo_bytes(index: int) -> bytes:
    """A 768x512 grey JPEG, a different crop of a sample photo per request."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    source = Image.fromarray(sources[index % len(sources)]).convert("L")
    photo = source.resize((768 + index % 7, 512 + index % 5)).crop((index % 7, index % 5, 768 + index % 7, 512 + index % 5))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def start_server(model: str, workers: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "recolor.cli", "serve", "--port", "0", "--model", model, "--workers", str(workers)],
                               cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        match = re.search(r"(http://\S+/)", line)
        if match:
            return process, match.group(1)
    raise RuntimeError("the server did not start")


async def burst(url: str, count: int, hinted: bool) -> tuple[list[float], list[int]]:
    photos = [photo_bytes(i) for i in range(count)]

    async def one(index: int) -> tuple[float, int]:
        fields = {"hints": json.dumps({"points": [{"x": 200 + index * 10, "y": 300, "color": "#1f4fd0"}]})} if hinted else {}
        started = time.perf_counter()
        response = await client.post(url + "api/colorize", files={"image": (f"p{index}.jpg", photos[index])}, data=fields)
        return time.perf_counter() - started, response.status_code

    async with httpx.AsyncClient(timeout=600) as client:
        results = await asyncio.gather(*(one(i) for i in range(count)))
    return [seconds for seconds, _ in results], [status for _, status in results]


def page_loop(url: str, repeats: int, takes_hints: bool) -> dict[str, float]:
    """One person at the page: open a photo, then previews as a point's colour changes, a suggestion, a download."""
    timings: dict[str, list[float]] = {"preview after a change (1024 px)": [], "suggestion": [], "full-size download (PNG)": []}
    with httpx.Client(timeout=600) as client:
        opened = client.post(url + "api/open", files={"image": ("p.jpg", photo_bytes(0))}).json()
        for repeat in range(repeats):
            hints = json.dumps({"points": [{"x": 300, "y": 250, "color": f"#{40 + repeat * 20:02x}4fd0"}]} if takes_hints else {"points": []})
            for name, call in (
                ("preview after a change (1024 px)", lambda: client.post(url + "api/preview", data={"photo": opened["photo"], "hints": hints, "max_side": 1024})),
                ("suggestion", lambda: client.post(url + "api/suggest", data={"photo": opened["photo"], "x": 300, "y": 250, "hints": hints})),
                ("full-size download (PNG)", lambda: client.post(url + "api/colorize", data={"photo": opened["photo"], "hints": hints})),
            ):
                started = time.perf_counter()
                assert call().status_code == 200
                timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    print(f"model {args.model}, {args.requests} concurrent POST /api/colorize of 768x512 JPEGs, server --workers {args.workers}")
    process, url = start_server(args.model, args.workers)
    try:
        takes_hints = httpx.get(url + "api/info", timeout=60).json()["takes_hints"]
        idle = peak_rss_mb(process.pid)
        for hinted in (False, True) if takes_hints else (False,):
            started = time.perf_counter()
            latencies, statuses = asyncio.run(burst(url, args.requests, hinted))
            wall = time.perf_counter() - started
            answered = {status: statuses.count(status) for status in sorted(set(statuses))}
            p50, p95 = np.percentile(latencies, [50, 95])
            print(f"{'with a point' if hinted else 'no hints    '}: answered {answered}; latency p50 {p50:.2f} s, p95 {p95:.2f} s, "
                  f"max {max(latencies):.2f} s; burst {wall:.2f} s ({args.requests / wall:.2f} photos/s)")
        print(f"server peak RSS: {idle:.0f} MB loaded and idle, {peak_rss_mb(process.pid):.0f} MB after the bursts")
        for name, seconds in page_loop(url, args.repeats, takes_hints).items():
            print(f"page, one request at a time: {name}: median {seconds * 1000:.0f} ms")
        print(f"server peak RSS at the end: {peak_rss_mb(process.pid):.0f} MB")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
