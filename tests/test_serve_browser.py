"""The page of `recolor serve`, driven in a real browser: Debian's Chromium (`apt-get install
chromium`, see .ci/run) under Playwright, launched by its executable path (never a downloaded
browser). Skipped where no Chromium is installed."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from serving import ServerProcess, ab_near, chromium_path, click_photo, given_ab, save_obedient_hint_network

BLUE = "#1f4fd0"
POINT = (160, 330)  # the astronaut's suit


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if executable is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_a_point_set_to_blue_in_the_page_colours_the_downloaded_photo_there(tmp_path, photos, browser):
    grey = tmp_path / "astronaut.png"
    Image.fromarray(photos["astronaut"]).convert("L").save(grey)
    model = save_obedient_hint_network(tmp_path / "obedient.safetensors")
    server = ServerProcess("--model", str(model))
    assert server.url.startswith("http://127.0.0.1:") and "warning" not in "".join(server.lines)  # loopback by default
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url)
        page.wait_for_function("document.getElementById('status').textContent === 'ready'")
        page.set_input_files("#open-file", str(grey))
        page.wait_for_selector("#after[data-version]")  # the first preview, without hints
        click_photo(page, *POINT, 512, 512)
        page.wait_for_selector("#suggestions .swatch")  # the model's suggestions for that spot
        page.locator("#picker").fill(BLUE)
        page.wait_for_function(f"""() => state.points.length === 1 && state.points[0].color === '{BLUE}'
            && document.getElementById('after').dataset.version === String(state.version)""")
        assert page.evaluate("[state.points[0].x, state.points[0].y]") == list(POINT)
        page.screenshot(path=str(tmp_path / "page.png"))
        with page.expect_download() as download_info:
            page.click("#download")
        downloaded = tmp_path / "download.png"
        download_info.value.save_as(downloaded)
        assert download_info.value.suggested_filename == "astronaut.png"
        assert not errors, errors
    finally:
        code, printed = server.interrupt()
        server.close()
    assert code == 0 and "Traceback" not in printed and "stopped" in printed  # Ctrl-C stops it cleanly
    with Image.open(downloaded) as result:
        assert result.size == (512, 512)
        target = given_ab(Image.open(grey), *POINT, BLUE)  # the point's blue at the suit's lightness
        assert np.linalg.norm(ab_near(result, *POINT) - target) < 0.15  # the suit took the hint's blue
        far = ab_near(result, 440, 60)
        assert np.linalg.norm(far - target) > 0.4  # and the flag, far away, did not
