"""`recolor serve` (recolor/server/): its HTTP API, the same bytes as `recolor colorize`, and every
safety point of the issue: paths, upload size, bombs, bad hints, non-images, concurrent requests,
Ctrl-C. The page itself is driven in a real browser by test_serve_browser.py."""
from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import png
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

from recolor.cli import app as cli_app
from recolor.inference import Colorizer
from recolor.server import PhotoFolder, Studio, Workers, create_app
from recolor.server.photos import PhotoCache
from serving import ab_near, given_ab, save_obedient_hint_network

pytestmark = pytest.mark.usefixtures("one_thread")
BLUE = "#1f4fd0"


@pytest.fixture(scope="module")
def obedient(tmp_path_factory) -> Colorizer:
    return Colorizer.load(save_obedient_hint_network(tmp_path_factory.mktemp("obedient") / "obedient.safetensors"))


@pytest.fixture(scope="module")
def grey_jpeg(photos) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photos["astronaut"]).convert("L").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def client_of(colorizer, folder: Path | None = None, **options) -> TestClient:
    studio_options = {key: options.pop(key) for key in ("max_pixels", "cache") if key in options}
    studio = Studio(colorizer, PhotoFolder(folder) if folder else None, **studio_options)
    return TestClient(create_app(studio, **options))


def hints(*points) -> str:
    return json.dumps({"points": [{"x": x, "y": y, "color": colour} for x, y, colour in points]})


def image_of(response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def assert_json_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message


# --- the API does what it says ----------------------------------------------------------------

def test_a_point_colours_the_full_size_result_near_it_and_nowhere_else(obedient, grey_jpeg):
    client = client_of(obedient)
    plain = image_of(client.post("/api/colorize", files={"image": ("astro.jpg", grey_jpeg)}))
    blue = image_of(client.post("/api/colorize", files={"image": ("astro.jpg", grey_jpeg)}, data={"hints": hints((160, 330, BLUE))}))
    assert blue.format == "PNG" and blue.size == (512, 512)
    target = given_ab(Image.open(io.BytesIO(grey_jpeg)), 160, 330, BLUE)
    assert np.linalg.norm(ab_near(blue, 160, 330) - target) < 0.3 * np.linalg.norm(ab_near(plain, 160, 330) - target)
    assert np.abs(ab_near(blue, 440, 60) - ab_near(plain, 440, 60)).max() < 1e-6  # far away, nothing changed


def test_previews_of_an_open_photo_show_the_downloads_colours_at_the_pages_size(obedient, grey_jpeg):
    client = client_of(obedient)
    opened = client.post("/api/open", files={"image": ("astro.jpg", grey_jpeg)}).json()
    assert (opened["width"], opened["height"], opened["name"], opened["in_folder"]) == (512, 512, "astro.jpg", False)
    form = {"photo": opened["photo"], "hints": hints((160, 330, BLUE))}
    small = image_of(client.post("/api/preview", data={**form, "max_side": 256}))
    full = image_of(client.post("/api/preview", data={**form, "max_side": 4096}))
    download = np.asarray(image_of(client.post("/api/colorize", data=form)), dtype=float)
    assert small.size == (256, 256) and full.size == (512, 512)  # never enlarged
    shown = np.asarray(full, dtype=float)
    assert np.abs(shown - download).mean() < 2.0  # the same colours, through JPEG
    around = (slice(318, 342), slice(148, 172))  # and where the point is (its colour cut to the gamut alike)
    assert np.abs(shown[around] - download[around]).mean() < 3.0
    before = image_of(client.get("/api/before", params={"photo": opened["photo"], "max_side": 128}))
    assert before.size == (128, 128) and np.ptp(np.asarray(before.convert("RGB"), dtype=int), axis=2).max() <= 2  # grey


def test_cached_encoder_features_give_the_same_colour_as_the_whole_network(obedient, photos):
    from recolor.hints import Hints
    from recolor.imageio.photo import photo_from_pil

    photo = photo_from_pil(Image.fromarray(photos["coffee"]).convert("L"))
    network_input = obedient.input_from_lightness(obedient.photo_lightness(photo))[None]
    features = obedient.encoder_features(network_input)
    extra = obedient.hint_inputs([Hints.of([(100, 100, BLUE)])], [photo.size], network_input)
    assert torch.equal(obedient.predict_ab(network_input, extra, features), obedient.predict_ab(network_input, extra))
    assert obedient.suggest_for(photo, 100, 100, features=features) == obedient.suggest_for(photo, 100, 100)


def test_suggestions_answer_likeliest_colours_for_an_upload_and_an_open_photo(obedient, grey_jpeg):
    client = client_of(obedient)
    answer = client.post("/api/suggest", files={"image": ("astro.jpg", grey_jpeg)}, data={"x": 160, "y": 330, "k": 3})
    assert answer.status_code == 200, answer.text
    suggestions = answer.json()["suggestions"]
    assert 1 <= len(suggestions) <= 3 and abs(sum(s["probability"] for s in suggestions) - 1) < 1e-3
    opened = client.post("/api/open", files={"image": ("astro.jpg", grey_jpeg)}).json()
    again = client.post("/api/suggest", data={"photo": opened["photo"], "x": 160, "y": 330, "k": 3}).json()["suggestions"]
    assert [s["color"] for s in again] == [s["color"] for s in suggestions]


def test_a_reference_changes_the_colours(tiny_hint_checkpoint, grey_jpeg, photos):
    client = client_of(Colorizer.load(tiny_hint_checkpoint))
    reference = io.BytesIO()
    Image.fromarray(photos["chelsea"]).save(reference, format="PNG")
    plain = np.asarray(image_of(client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg)})), dtype=int)
    guided = client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg), "reference": ("ref.png", reference.getvalue())})
    assert np.abs(np.asarray(image_of(guided), dtype=int) - plain).max() > 0
    opened = client.post("/api/open", files={"image": ("a.jpg", grey_jpeg)}).json()
    as_open = client.post("/api/open", files={"image": ("ref.png", reference.getvalue())}).json()
    by_id = client.post("/api/colorize", data={"photo": opened["photo"], "reference_id": as_open["photo"]})
    assert np.array_equal(np.asarray(image_of(by_id)), np.asarray(image_of(guided)))


def test_a_model_without_hints_refuses_them_in_one_line(tiny_pix2pix_checkpoint, grey_jpeg):
    client = client_of(Colorizer.load(tiny_pix2pix_checkpoint))
    assert client.get("/api/info").json()["takes_hints"] is False
    assert image_of(client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg)})).size == (512, 512)
    opened = client.post("/api/open", files={"image": ("a.jpg", grey_jpeg)}).json()  # no encoder to cache: the whole network
    assert image_of(client.post("/api/preview", data={"photo": opened["photo"], "max_side": 200})).size == (200, 200)
    assert_json_error(client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg)}, data={"hints": hints((1, 1, BLUE))}),
                      400, "takes no hints")
    assert_json_error(client.post("/api/suggest", files={"image": ("a.jpg", grey_jpeg)}, data={"x": 1, "y": 1}), 400, "no suggestions")


# --- byte for byte what `recolor colorize FOLDER` writes ---------------------------------------

def album_of(folder: Path, photos) -> dict[str, tuple]:
    """A grey JPEG with EXIF and DPI, a 16-bit grey PNG and a grey PNG with alpha; a point each."""
    folder.mkdir()
    grey = Image.fromarray(photos["astronaut"]).convert("L")
    exif = Image.Exif()
    exif[0x010E] = "Buzz Aldrin, 1969"  # ImageDescription
    grey.save(folder / "astro.jpg", quality=90, exif=exif, dpi=(300, 300))
    deep = (np.asarray(Image.fromarray(photos["coffee"]).convert("L"), dtype=np.uint16) * 257)[:300, :400]
    Image.fromarray(deep).save(folder / "coffee16.png")
    alpha = Image.fromarray(photos["chelsea"]).convert("LA")
    alpha.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, alpha.width, dtype=np.uint8), (alpha.height, 1))))
    alpha.save(folder / "cat.png")
    return {"astro.jpg": (160, 330, BLUE), "coffee16.png": (200, 150, "#c0392b"), "cat.png": (100, 100, "#27ae60")}


def test_the_pages_download_is_byte_for_byte_what_recolor_colorize_writes_with_the_saved_sidecars(tmp_path, photos,
                                                                                                  obedient):
    folder = tmp_path / "album"
    points = album_of(folder, photos)
    client = client_of(obedient, folder)
    listed = {photo["name"]: photo for photo in client.get("/api/photos").json()["photos"]}
    assert set(listed) == set(points) and not any(photo["has_hints"] for photo in listed.values())
    downloads = {}
    for name, point in points.items():
        opened = client.post("/api/open", data={"id": listed[name]["id"]}).json()
        assert opened["in_folder"] and opened["hints"] is None
        saved = client.post("/api/hints", data={"photo": opened["photo"], "hints": hints(point)})
        assert saved.status_code == 200 and saved.json()["saved"] == name.rsplit(".", 1)[0] + ".hints.json"
        answer = client.post("/api/colorize", data={"photo": opened["photo"], "hints": hints(point), "format": "original"})
        assert answer.status_code == 200 and f"filename*=UTF-8''{name}" in answer.headers["content-disposition"]
        downloads[name] = answer.content
    # one photo per batch: a CPU's batched convolutions round differently from a lone photo's (in
    # the last bit, so a few pixels one level apart), and the page colours one photo at a time
    result = CliRunner().invoke(cli_app, ["colorize", str(folder), "-o", str(tmp_path / "out"), "--model", str(obedient.source),
                                          "--batch-size", "1", "-q"])
    assert result.exit_code == 0, result.output
    for name, data in downloads.items():
        assert (tmp_path / "out" / name).read_bytes() == data, name
    with Image.open(io.BytesIO(downloads["astro.jpg"])) as image:  # what colorize keeps, kept
        assert image.getexif()[0x010E] == "Buzz Aldrin, 1969" and round(image.info["dpi"][0]) == 300
    assert png.Reader(bytes=downloads["coffee16.png"]).read()[3]["bitdepth"] == 16
    assert Image.open(io.BytesIO(downloads["cat.png"])).mode == "RGBA"
    # and the page finds the sidecars again
    reopened = client.post("/api/open", data={"id": listed["astro.jpg"]["id"]}).json()
    assert reopened["hints"] == {"points": [{"x": 160, "y": 330, "color": BLUE}], "reference_id": None}


def test_a_sidecar_names_a_reference_of_the_folder_relative_to_itself(tmp_path, photos, tiny_hint_checkpoint):
    folder = tmp_path / "album"
    (folder / "refs").mkdir(parents=True)
    Image.fromarray(photos["astronaut"]).convert("L").resize((128, 128)).save(folder / "astro.png")
    Image.fromarray(photos["chelsea"]).resize((64, 48)).save(folder / "refs" / "cat.png")
    client = client_of(Colorizer.load(tiny_hint_checkpoint), folder)
    ids = {photo["name"]: photo["id"] for photo in client.get("/api/photos").json()["photos"]}
    opened = client.post("/api/open", data={"id": ids["astro.png"]}).json()
    saved = client.post("/api/hints", data={"photo": opened["photo"], "hints": hints((5, 5, BLUE)), "reference_id": ids["refs/cat.png"]})
    assert saved.status_code == 200, saved.text
    assert json.loads((folder / "astro.hints.json").read_text()) == {"points": [{"x": 5, "y": 5, "color": BLUE}], "reference": "refs/cat.png"}
    assert client.post("/api/open", data={"id": ids["astro.png"]}).json()["hints"]["reference_id"] == ids["refs/cat.png"]


def test_a_photo_whose_sidecar_is_bad_opens_with_the_problem_in_one_line(tmp_path, photos, obedient):
    folder = tmp_path / "album"
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).convert("L").resize((128, 128)).save(folder / "astro.png")
    (folder / "astro.hints.json").write_text('{"points": [{"x": 1, "y": 1, "colour": "#ffffff"}]}')
    client = client_of(obedient, folder)
    listed = client.get("/api/photos").json()["photos"]
    assert listed[0]["has_hints"] is True
    opened = client.post("/api/open", data={"id": listed[0]["id"]}).json()
    assert opened["hints"] is None and "astro.hints.json" in opened["hints_error"] and "unknown key 'colour'" in opened["hints_error"]
    saved = client.post("/api/hints", data={"photo": opened["photo"], "hints": hints((3, 4, BLUE))})
    assert saved.status_code == 200 and json.loads((folder / "astro.hints.json").read_text())["points"][0]["x"] == 3


def test_saving_never_overwrites_a_videos_hint_sections(tmp_path, photos, obedient):
    """An animated GIF is offered as a photo; its sidecar may hold frame ranges for `recolor
    colorize`, which the page's hints (one object) would lose."""
    folder = tmp_path / "album"
    folder.mkdir()
    frames = [Image.fromarray(photos["astronaut"]).convert("L").resize((64, 64)) for _ in range(2)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    sections = '[{"points": [{"x": 1, "y": 1, "color": "#ff0000"}], "frames": [0, 1]}]'
    (folder / "anim.hints.json").write_text(sections)
    client = client_of(obedient, folder)
    opened = client.post("/api/open", data={"id": client.get("/api/photos").json()["photos"][0]["id"]}).json()
    assert opened["hints"] is None and opened["hints_error"]
    assert_json_error(client.post("/api/hints", data={"photo": opened["photo"], "hints": hints((3, 4, BLUE))}), 400, "not overwritten")
    assert (folder / "anim.hints.json").read_text() == sections


# --- safety ------------------------------------------------------------------------------------

def test_requests_never_name_a_path_and_nothing_but_sidecars_is_written(tmp_path, photos, obedient, grey_jpeg):
    folder, outside = tmp_path / "album", tmp_path / "secret"
    outside.mkdir()
    Image.fromarray(photos["coffee"]).save(outside / "private.png")
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).convert("L").resize((128, 128)).save(folder / "astro.png")
    (folder / "leak.png").symlink_to(outside / "private.png")  # a link out of the folder is not offered
    (folder / "notes.txt").write_text("not an image")
    before = {path: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    client = client_of(obedient, folder)
    photos_listed = client.get("/api/photos").json()["photos"]
    assert [photo["name"] for photo in photos_listed] == ["astro.png"]
    astro = photos_listed[0]["id"]
    # ids, never paths
    assert_json_error(client.post("/api/open", data={"id": "../secret/private.png"}), 400, "not an id")
    assert_json_error(client.post("/api/open", data={"id": "0123456789abcdef"}), 404, "no photo")
    assert client.get("/api/photos/..%2F..%2Fsecret/thumbnail").status_code == 404
    assert client.get("/static/../app.py").status_code == 404
    assert_json_error(client.post("/api/colorize", data={"photo": "/etc/passwd"}), 400, "not an id")
    # a whole session: open, preview, suggest, download, save
    opened = client.post("/api/open", data={"id": astro}).json()
    assert_json_error(client.post("/api/preview", data={"photo": astro, "hints": json.dumps({"points": [], "reference": str(outside / "private.png")})}),
                      400, "never a file name")
    assert client.post("/api/preview", data={"photo": opened["photo"], "hints": hints((5, 5, BLUE))}).status_code == 200
    assert client.post("/api/suggest", data={"photo": opened["photo"], "x": 5, "y": 5}).status_code == 200
    assert client.post("/api/colorize", data={"photo": opened["photo"], "format": "original"}).status_code == 200
    assert client.post("/api/hints", data={"photo": opened["photo"], "hints": hints((5, 5, BLUE))}).status_code == 200
    uploaded = client.post("/api/open", files={"image": ("x.jpg", grey_jpeg)}).json()
    assert_json_error(client.post("/api/hints", data={"photo": uploaded["photo"], "hints": hints((5, 5, BLUE))}), 409, "only a photo of the folder")
    after = {path: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    assert set(after) - set(before) == {folder / "astro.hints.json"}
    assert all(after[path] == data for path, data in before.items())  # no photo touched
    assert not [path for path in folder.iterdir() if path.name.startswith(".")]  # no temporary left


def test_an_upload_over_the_limit_is_a_413_whether_announced_or_streamed(obedient, grey_jpeg):
    client = client_of(obedient, max_upload_bytes=50_000)
    assert len(grey_jpeg) > 50_000
    assert_json_error(client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg)}), 413, "upload too large")

    def chunks():
        body = b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n" + grey_jpeg + b"\r\n--x--\r\n"
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]
    streamed = client.post("/api/colorize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert "content-length" not in streamed.request.headers
    assert_json_error(streamed, 413, "upload too large")
    assert client.post("/api/colorize", files={"image": ("small.png", b"x" * 100)}).status_code == 400  # under it: read


def test_a_decompression_bomb_is_refused_from_its_header(obedient):
    bomb = io.BytesIO()
    Image.new("L", (8000, 8000)).save(bomb, format="PNG")  # 64 MP of zeros: a few tens of KB
    assert len(bomb.getvalue()) < 200_000
    client = client_of(obedient, max_pixels=10_000_000)
    for endpoint in ("/api/colorize", "/api/open", "/api/suggest"):
        assert_json_error(client.post(endpoint, files={"image": ("bomb.png", bomb.getvalue())}, data={"x": 1, "y": 1}),
                          413, "bomb.png", "too large", "decompression bomb")


@pytest.mark.parametrize("fields, status, words", [
    ({"hints": "{"}, 400, ["hints: not valid JSON"]),
    ({"hints": '{"points": [{"x": 1, "y": 1, "colour": "#ffffff"}]}'}, 400, ["unknown key 'colour'"]),
    ({"hints": '{"points": [{"x": 1, "y": 1, "color": "blue"}]}'}, 400, ["#rrggbb"]),
    ({"hints": '{"points": [{"x": 1, "y": "a", "color": "#0000ff"}]}'}, 400, ["finite numbers"]),
    ({"hints": '{"points": [{"x": 600, "y": 1, "color": "#0000ff"}]}'}, 400, ["outside the 512x512 photo"]),
    ({"hints": json.dumps({"points": [{"x": 1, "y": 1, "color": "#0000ff"}] * 300})}, 400, ["at most"]),
    ({"hints": "[1, 2]"}, 400, ["expected a JSON object"]),
    ({"format": "exe"}, 400, ["unsupported output extension"]),
    ({"reference_id": "nope"}, 410, ["not open"]),
])
def test_malformed_hints_and_fields_are_one_line_4xx(obedient, grey_jpeg, fields, status, words):
    client = client_of(obedient)
    assert_json_error(client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg)}, data=fields), status, *words)


@pytest.mark.parametrize("upload, words", [
    (("notes.txt", b"just some text"), ["notes.txt", "not an image"]),
    (("empty.jpg", b""), ["empty"]),
    (("cut.jpg", None), ["cut.jpg", "truncated"]),
])
def test_a_bad_upload_is_a_400_with_one_line_naming_it(obedient, grey_jpeg, upload, words):
    name, data = upload
    client = client_of(obedient)
    assert_json_error(client.post("/api/colorize", files={"image": (name, grey_jpeg[:3000] if data is None else data)}), 400, *words)


def test_an_uploads_name_is_its_last_part_without_control_characters():
    from starlette.datastructures import UploadFile

    from recolor.server.forms import upload_name

    assert upload_name(UploadFile(io.BytesIO(), filename="../../etc/evil\nname\x1b.jpg")) == "evil?name?.jpg"
    assert upload_name(UploadFile(io.BytesIO(), filename="C:\\photos\\scan.tif")) == "scan.tif"
    assert upload_name(UploadFile(io.BytesIO(), filename=None)) == "upload"


def test_missing_or_doubled_fields_and_odd_requests_are_json_4xx(obedient, grey_jpeg):
    client = client_of(obedient)
    assert_json_error(client.post("/api/colorize", data={"hints": hints()}), 400, '"image"')
    assert_json_error(client.post("/api/colorize", data={"image": "not a file"}), 400, "file upload")
    opened = client.post("/api/open", files={"image": ("a.jpg", grey_jpeg)}).json()
    assert_json_error(client.post("/api/colorize", files={"image": ("a.jpg", grey_jpeg)}, data={"photo": opened["photo"]}), 400, "one of them")
    assert_json_error(client.post("/api/suggest", data={"photo": opened["photo"], "x": "left", "y": 1}), 400, "not a number")
    assert_json_error(client.post("/api/suggest", data={"photo": opened["photo"], "x": 1, "y": 1, "k": 99}), 400, "between 1 and 32")
    assert_json_error(client.post("/api/colorize", content=b"{}", headers={"content-type": "application/json"}), 400, "send a form")
    assert_json_error(client.post("/api/colorize", content=b"--zz\r\nbroken", headers={"content-type": "multipart/form-data; boundary=zz"}), 400)
    assert_json_error(client.get("/api/nothing"), 404)
    assert_json_error(client.get("/api/colorize"), 405)


def test_the_open_photos_are_a_bounded_cache_and_a_photo_let_go_is_a_410(obedient, grey_jpeg):
    cache = PhotoCache(max_photos=3, max_pixels=600_000)  # 512x512 photos: two fit the pixels
    client = client_of(obedient, cache=cache)
    ids = [client.post("/api/open", files={"image": (f"{i}.jpg", grey_jpeg)}).json()["photo"] for i in range(5)]
    assert len(set(ids)) == 5 and len(cache) == 2
    assert_json_error(client.post("/api/preview", data={"photo": ids[0]}), 410, "no longer open")
    assert client.post("/api/preview", data={"photo": ids[-1]}).status_code == 200


def test_twenty_concurrent_requests_are_all_answered_while_at_most_workers_work(obedient, grey_jpeg):
    studio = Studio(obedient)
    running, peak, lock = [0], [0], threading.Lock()
    result = studio.result

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.02)
            return result(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1
    studio.result = counted
    answers = asyncio.run(post_at_once(create_app(studio, workers=Workers(2, max_waiting=64)), grey_jpeg, 20))
    assert [answer.status_code for answer in answers] == [200] * 20
    assert 1 <= peak[0] <= 2
    assert len({answer.content for answer in answers}) == 20  # each its own point
    # beyond the queue's bound, a 503 at once rather than a request held in memory
    answers = asyncio.run(post_at_once(create_app(Studio(obedient), workers=Workers(1, max_waiting=4)), grey_jpeg, 12))
    codes = sorted(answer.status_code for answer in answers)
    assert codes.count(200) >= 4 and 503 in codes and set(codes) == {200, 503}
    assert all("busy" in answer.json()["error"] for answer in answers if answer.status_code == 503)


async def post_at_once(app, photo: bytes, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=300) as client:
        return await asyncio.gather(*(client.post("/api/colorize", files={"image": ("a.jpg", photo)},
                                                  data={"hints": hints((40 + i % 5 * 100, 40 + i // 5 * 120, BLUE))}) for i in range(count)))
