"""Makes docs/serve.png, the README's picture of `recolor serve`: the grey astronaut of
scikit-image in a folder with two other grey photos, one point on the suit set to blue, the
before/after line at a third. Needs Debian's Chromium and Playwright (the test extra).

    python docs/serve_screenshot.py --model effnet-unet          # or a hint-taking checkpoint
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serving import ServerProcess, chromium_path, click_photo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="effnet-unet")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serve.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        for name, photo in (("astronaut.jpg", data.astronaut()), ("coffee.jpg", data.coffee()), ("chelsea.jpg", data.chelsea())):
            Image.fromarray(photo).convert("L").save(Path(folder) / name, quality=92)
        server = ServerProcess(folder, "--model", args.model)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                page.goto(server.url)
                page.wait_for_function("document.getElementById('status').textContent === 'ready'")
                page.click("#photos li:has-text('astronaut.jpg')")
                page.wait_for_selector("#after[data-version]")
                click_photo(page, 160, 330, 512, 512)
                page.wait_for_selector("#suggestions .swatch")
                page.locator("#picker").fill("#1f4fd0")
                page.wait_for_function("""() => state.points[0].color === '#1f4fd0'
                    && document.getElementById('after').dataset.version === String(state.version)""")
                page.locator("#split").fill("22")
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.interrupt()
            server.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
