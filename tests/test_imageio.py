import io
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import color as skcolor

import corpus
from recolor.imageio import (
    ImageReadError, list_image_files, decode_photo, open_image, output_format, remove_stale_temp_files, save_image,
)


def test_grey_jpeg_lightness_matches_skimage(grey_photo_path):
    loaded = decode_photo(grey_photo_path)
    grey = np.asarray(Image.open(grey_photo_path)).astype(np.float64) / 255
    expected = skcolor.rgb2lab(np.stack([grey] * 3, axis=-1))[..., 0]
    assert loaded.size == (512, 512)
    assert not loaded.was_colour and loaded.alpha is None
    assert np.abs(loaded.lightness[0].numpy() - expected).max() < 1e-3


def test_colour_input_is_flagged_and_uses_its_lightness(tmp_path, photos):
    path = tmp_path / "colour.png"
    Image.fromarray(photos["coffee"]).save(path)
    loaded = decode_photo(path)
    assert loaded.was_colour
    expected = skcolor.rgb2lab(photos["coffee"] / 255.0)[..., 0]
    assert np.abs(loaded.lightness[0].numpy() - expected).max() < 1e-3


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((20, 40), dtype=np.uint8)
    array[:, :20] = 255  # left half white
    image = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=100)
    loaded = decode_photo(path)
    assert loaded.size == (20, 40)  # width and height swapped
    top, bottom = loaded.lightness[0, :20].mean(), loaded.lightness[0, 20:].mean()
    assert top > 90 and bottom < 10  # after a clockwise turn the white half is on top


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_kept(tmp_path, mode):
    alpha = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    grey = Image.fromarray(np.full((16, 16), 128, np.uint8))
    if mode == "RGBA":
        image = Image.merge("RGBA", (grey, grey, grey, Image.fromarray(alpha)))
    elif mode == "LA":
        image = Image.merge("LA", (grey, Image.fromarray(alpha)))
    path = tmp_path / f"alpha_{mode}.png"
    image.save(path)
    loaded = decode_photo(path)
    assert loaded.alpha is not None
    assert np.array_equal(loaded.alpha, alpha)


def test_palette_transparency_becomes_alpha(tmp_path):
    indices = np.tile(np.arange(16, dtype=np.uint8), (4, 1))
    image = Image.fromarray(indices, mode="P")
    image.putpalette([v for i in range(256) for v in (i * 16 % 256,) * 3])
    path = tmp_path / "palette_transparent.png"
    image.save(path, transparency=0)
    loaded = decode_photo(path)
    assert loaded.alpha is not None
    assert np.array_equal(loaded.alpha, np.where(indices == 0, 0, 255))


def test_palette_cmyk_16bit_and_bilevel_inputs(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (8, 1))
    Image.fromarray(ramp).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(np.stack([ramp] * 3, -1)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray((ramp.astype(np.uint16) * 257)).save(tmp_path / "sixteen.png")
    Image.fromarray(ramp > 127).save(tmp_path / "bilevel.png")
    for name in ("palette.png", "cmyk.jpg", "sixteen.png", "bilevel.png"):
        loaded = decode_photo(tmp_path / name)
        assert loaded.size == (32, 8), name
        row = loaded.lightness[0, 4]
        assert row[-1] > row[0] + 80, name  # dark on the left, light on the right
    sixteen = decode_photo(tmp_path / "sixteen.png")
    assert sixteen.lightness.max() > 99  # 65535 is white, not clipped garbage
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I")


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, photos):
    good = tmp_path / "good.jpg"
    Image.fromarray(photos["chelsea"]).save(good)
    cases = {
        "empty.jpg": b"",
        "notes.txt": b"this is not an image\n",
        "truncated.jpg": good.read_bytes()[:2000],
        "garbage.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
    }
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ImageReadError) as info:
            decode_photo(tmp_path / name)
        message = str(info.value)
        assert name in message and "\n" not in message
    with pytest.raises(ImageReadError, match="no such file"):
        decode_photo(tmp_path / "missing.png")


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (3000, 3000)).save(path)  # 9 MP of zeros compresses to a few KB
    with pytest.raises(ImageReadError, match="too large"):
        open_image(path, max_pixels=1_000_000)
    assert open_image(path, max_pixels=10_000_000).size == (3000, 3000)


def test_two_threads_decode_with_their_own_pixel_limits(tmp_path, monkeypatch):
    """Each call's --max-pixels is its own: a thread with a high limit is not refused because
    another thread with a low one is opening a file at the same moment, and Pillow's
    process-wide limit is left as it was (it used to be set per call and restored, racily)."""
    import threading

    small, large = tmp_path / "small_limit.png", tmp_path / "large_limit.png"
    Image.new("L", (20, 20)).save(small)  # 400 pixels, over its thread's limit of 100
    Image.new("L", (30, 30)).save(large)  # 900 pixels: over twice 100, within its thread's 10,000
    pillow_limit = Image.MAX_IMAGE_PIXELS
    large_inside, small_inside, large_done = threading.Event(), threading.Event(), threading.Event()
    pillow_open = Image.open

    def interleaved_open(handle, *args, **kwargs):
        # the large-limit thread opens its file while the small-limit thread is inside its own call
        if getattr(handle, "name", "") == str(large):
            large_inside.set()
            small_inside.wait(10)
        else:
            small_inside.set()
            large_done.wait(10)
        return pillow_open(handle, *args, **kwargs)

    monkeypatch.setattr(Image, "open", interleaved_open)
    outcomes = {}

    def decode(path, limit):
        try:
            outcomes[path.name] = open_image(path, max_pixels=limit).size
        except ImageReadError as exc:
            outcomes[path.name] = str(exc)
        finally:
            if path == large:
                large_done.set()

    large_thread = threading.Thread(target=decode, args=(large, 10_000))
    large_thread.start()
    assert large_inside.wait(10)
    small_thread = threading.Thread(target=decode, args=(small, 100))
    small_thread.start()
    large_thread.join(20)
    small_thread.join(20)
    assert outcomes["large_limit.png"] == (30, 30)
    assert "too large (over 100 pixels" in outcomes["small_limit.png"]
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_save_is_atomic_and_format_follows_extension(tmp_path, monkeypatch):
    rgb = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    alpha = np.full((10, 12), 77, np.uint8)
    for ext, fmt in ((".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), (".tif", "TIFF")):
        path = save_image(tmp_path / f"out{ext}", rgb, alpha)
        with Image.open(path) as written:
            assert written.format == fmt and written.size == (12, 10)
            assert ("A" in written.getbands()) == (fmt != "JPEG")
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    assert output_format("x.JPEG") == "JPEG"
    with pytest.raises(ValueError, match="unsupported output extension"):
        output_format("x.xyz")
    # a failure while writing leaves the previous file intact and no temporary behind
    target = tmp_path / "keep.png"
    save_image(target, rgb)
    before = target.read_bytes()

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_image(target, rgb[::-1].copy())
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_list_image_files_recurses_and_skips_hidden(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("x.jpg", "a/y.PNG", "a/b/z.tif", "a/readme.txt", ".hidden/h.jpg", "a/.dot.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)] == ["x.jpg", "a/y.PNG", "a/b/z.tif"]
    assert len(list_image_files(tmp_path, all_files=True)) == 4


# --- issue 29: files -----------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_writing_from_threads_never_touches_the_process_umask(tmp_path, monkeypatch):
    """Item 3: os.umask can only be read by setting it, for the whole process, so reading it per
    file from the write threads raced (files and the process left at another thread's 022).
    It is read once, at import; a write never calls os.umask."""
    calls = []
    umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or umask(mask))
    rgb = np.zeros((4, 4, 3), np.uint8)
    threads = [threading.Thread(target=save_image, args=(tmp_path / f"{i}.png", rgb)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [] and len(list(tmp_path.glob("*.png"))) == 4


def _python(script: str, folder: Path, preexec_fn=None) -> str:
    """Run ``script`` in a fresh interpreter with ``folder`` as its argument; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=env,
                          preexec_fn=preexec_fn, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout


def test_files_written_under_umask_077_stay_private(tmp_path):
    script = (
        "import os, sys, threading\n"
        "from recolor.imageio import atomic_write_bytes\n"
        "def write(n):\n"
        "    for i in range(50):\n"
        "        atomic_write_bytes(os.path.join(sys.argv[1], f'{n}-{i}'), b'x')\n"
        "threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(oct(os.umask(0o077)))\n"
    )
    assert _python(script, tmp_path, preexec_fn=lambda: os.umask(0o077)).strip() == "0o77"  # the process's umask as it was
    modes = {oct(path.stat().st_mode & 0o777) for path in tmp_path.iterdir()}
    assert modes == {"0o600"}


def test_the_temp_cleaner_removes_only_files_with_recolors_mark(tmp_path):
    """Item 4: a hidden '.NAME.XXXXXXXX.tmp' an hour old is someone else's file, however it looks."""
    notes = corpus.foreign_temp_file(tmp_path, ".notes.abcdefgh.tmp")
    lookalike = corpus.foreign_temp_file(tmp_path, ".a.jpg.k3j_x9q2.tmp")  # what recolor's names were before they had a PID
    ours = corpus.stale_temp_file(tmp_path, "x.jpg", corpus.dead_pid())
    assert remove_stale_temp_files(tmp_path) == 1
    assert notes.exists() and lookalike.exists() and not ours.exists()


def _limit_file_size(limit: int):
    """For a child process: files beyond ``limit`` bytes cannot be written (EFBIG), as on a full disk.
    Python ignores SIGXFSZ, so the write fails instead of killing the process."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_write_that_does_not_fit_fails_and_leaves_nothing(tmp_path):
    """Item 5: Pillow's encoders write with C write() calls whose short writes go unnoticed; on a
    full disk a truncated JPEG was renamed into place as if whole."""
    script = (
        "import sys, numpy as np\n"
        "from recolor.imageio import save_image\n"
        "noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)  # well over 40 KB as a JPEG\n"
        "try:\n"
        "    save_image(sys.argv[1] + '/big.jpg', noise)\n"
        "    print('saved')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
        "save_image(sys.argv[1] + '/small.png', np.zeros((8, 8, 3), np.uint8))\n"
    )
    assert _python(script, tmp_path, preexec_fn=_limit_file_size(40_000)).split()[0] == "refused"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png"]  # no truncated big.jpg, no temporary


def test_images_encode_onto_a_stream(tmp_path):
    """Item 5: the encoders write to any binary stream; save_image is that, in memory, then an atomic write."""
    from recolor.imageio import write_image

    rgb = np.random.default_rng(1).integers(0, 65535, (6, 5, 3), dtype=np.uint16)
    for fmt in ("PNG", ".tif", "jpg"):
        stream = io.BytesIO()
        write_image(stream, rgb, fmt)
        path = save_image(tmp_path / f"x.{fmt.strip('.').lower()}", rgb)
        assert stream.getvalue() == path.read_bytes()
    stream = io.BytesIO()
    write_image(stream, rgb, "png")
    assert png_pixels(stream.getvalue()).dtype == np.uint16  # 16-bit stays 16-bit on a stream too


def png_pixels(data: bytes) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(bytes=data).asDirect()
    return np.vstack([np.asarray(row, dtype=np.uint16 if info["bitdepth"] == 16 else np.uint8) for row in rows])


def test_decoding_threads_never_swap_the_warning_filters(tmp_path, monkeypatch):
    """Item 16: warnings.catch_warnings swaps the process-wide filter list; entered from decode and
    feeder threads at once, it can leave the process with another thread's filters."""
    import warnings

    from recolor.imageio import probe_image
    from recolor.pipeline import header_pixels

    entered = []
    catch_warnings = warnings.catch_warnings
    monkeypatch.setattr(warnings, "catch_warnings", lambda *a, **k: entered.append(1) or catch_warnings(*a, **k))
    path = corpus.jpeg_with_bad_exif(tmp_path / "exif.jpg")
    probe_image(path)
    header_pixels(path)
    decode_photo(path)
    assert entered == []


def test_pillow_warnings_stay_silent_without_catch_warnings(tmp_path):
    """Pillow's multi-line warnings (a corrupt EXIF block) do not reach stderr: silenced once, at import."""
    path = corpus.jpeg_with_bad_exif(tmp_path / "exif.jpg")
    assert _python("import sys; from recolor.imageio import image_metadata, open_image; image_metadata(open_image(sys.argv[1]))", path) == ""
