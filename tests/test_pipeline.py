"""The batch pipeline of `recolor colorize`: device-side pixel maths, batches of mixed sizes,
per-file errors from the worker threads, the bound on pixels in flight, peak memory."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import recolor.pipeline as pipeline
from recolor.checkpoint import save_checkpoint
from recolor.color import denormalize_ab, lab_to_rgb
from recolor.imageio import image_to_array, lightness_of
from recolor.inference import Colorizer, join_lightness, lightness_from_pixels
from recolor.pipeline import ColorizeJob, colorize_files
from recolor.registry import get_model_spec


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    spec = get_model_spec("pix2pix")
    config = spec.config({"image_size": 32, "ngf": 8, "num_downs": 5})
    generator = spec.build(config)
    for parameter in generator.parameters():  # a random but clearly non-grey output
        parameter.data.normal_(0, 0.3)
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.safetensors", generator.state_dict(), "pix2pix", config)


def test_lightness_tables_match_the_float_conversion(photos):
    rgb = photos["coffee"][:48, :64]
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    for pixels in (rgb, grey):
        expected = lightness_of(image_to_array(Image.fromarray(pixels)))
        tensor = torch.from_numpy(pixels.copy())
        got = lightness_from_pixels(tensor if tensor.ndim == 3 else tensor[..., None])
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("height,width", [(50, 70), (20, 12)])  # larger and smaller than the 32x32 field
def test_join_matches_full_size_upsampling_and_lab_to_rgb(height, width):
    generator = torch.Generator().manual_seed(1)
    lightness = torch.rand(1, height, width, generator=generator) * 100
    ab_small = torch.rand(2, 32, 32, generator=generator) * 1.6 - 0.8
    ab = F.interpolate(denormalize_ab(ab_small)[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    expected = (lab_to_rgb(torch.cat((lightness, ab))) * 255).round().byte().permute(1, 2, 0).numpy().astype(int)
    difference = np.abs(join_lightness(lightness, ab_small).astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def write_inputs(folder, photos):
    """Photos of mixed sizes and kinds, plus a corrupt file; returns (paths, index of the bad one)."""
    folder.mkdir()
    paths = []
    for index, (name, size, mode) in enumerate([("astronaut", (60, 44), "RGB"), ("coffee", (33, 70), "L"), ("chelsea", (90, 64), "RGBA"), (None, None, None), ("astronaut", (40, 40), "I;16")]):
        path = folder / f"{index}_{name}.png"
        if name is None:
            path.write_bytes(b"not a picture")
        else:
            image = Image.fromarray(photos[name]).resize(size)
            if mode == "I;16":
                image = Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257))
            elif mode != "RGB":
                image = image.convert(mode)
            image.save(path)
        paths.append(path)
    return paths, 3


def test_batch_of_mixed_sizes_matches_one_at_a_time_and_names_bad_files(tmp_path, photos, tiny_weights):
    paths, bad = write_inputs(tmp_path / "in", photos)
    colorizer = Colorizer.load(tiny_weights, device="cpu", precision="fp32")
    jobs = [ColorizeJob(path, tmp_path / "out" / path.name, tag=index) for index, path in enumerate(paths)]
    outcomes = list(colorize_files(colorizer, jobs, batch_size=3, workers=2))
    assert [outcome.job.tag for outcome in outcomes] == list(range(len(paths)))  # in order
    assert not outcomes[bad].ok and outcomes[bad].error.startswith(str(paths[bad])) and "\n" not in outcomes[bad].error
    for index, (path, outcome) in enumerate(zip(paths, outcomes)):
        if index == bad:
            assert not (tmp_path / "out" / path.name).exists()
            continue
        assert outcome.ok, outcome.error
        written = Image.open(tmp_path / "out" / path.name)
        source = Image.open(path)
        assert written.size == source.size == (outcome.width, outcome.height)
        assert written.mode == ("RGBA" if source.mode == "RGBA" else "RGB")
        single = np.asarray(colorizer.colorize(path)).astype(int)  # one photo, no threads
        assert np.abs(np.asarray(written).astype(int) - single).max() <= 1
        assert np.asarray(written.convert("RGB")).std(axis=2).mean() > 1  # colour, not grey


def test_failures_in_worker_threads_become_records(tmp_path, photos, tiny_weights, monkeypatch):
    paths, _ = write_inputs(tmp_path / "in", photos)
    real_decode = pipeline.decode_photo

    def flaky_decode(path, **kwargs):
        if path == paths[1]:
            raise MemoryError("simulated")
        return real_decode(path, **kwargs)

    monkeypatch.setattr(pipeline, "decode_photo", flaky_decode)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / paths[2].name).mkdir()  # the target of photo 2 is a folder: its write fails
    colorizer = Colorizer.load(tiny_weights, device="cpu")
    outcomes = list(colorize_files(colorizer, [ColorizeJob(p, tmp_path / "out" / p.name) for p in paths], batch_size=2, workers=2))
    assert outcomes[1].error == f"{paths[1]}: could not read (MemoryError: simulated)"
    assert outcomes[2].error.startswith(f"{tmp_path / 'out' / paths[2].name}: could not write")
    assert [outcome.ok for outcome in outcomes] == [True, False, False, False, True]


def test_pixels_in_flight_stay_within_the_budget(tmp_path, photos, tiny_weights, monkeypatch):
    budgets = []

    class RecordedBudget(pipeline.PixelBudget):
        def __init__(self, limit):
            super().__init__(limit)
            budgets.append(self)

    monkeypatch.setattr(pipeline, "PixelBudget", RecordedBudget)
    folder = tmp_path / "in"
    folder.mkdir()
    sizes = [(32, 32)] * 6 + [(80, 60)] + [(32, 32)] * 3  # 1,024 pixels each, and one of 4,800
    for index, size in enumerate(sizes):
        Image.fromarray(photos["chelsea"]).resize(size).save(folder / f"{index:02d}.jpg")
    jobs = [ColorizeJob(path, tmp_path / "out" / path.name) for path in sorted(folder.iterdir())]
    colorizer = Colorizer.load(tiny_weights, device="cpu")
    outcomes = list(colorize_files(colorizer, jobs, batch_size=8, workers=3, pixels_in_flight=2_500))
    assert all(outcome.ok for outcome in outcomes)
    (budget,) = budgets
    assert budget.used == 0
    assert budget.peak == 4_800  # the big photo went through, alone; two small ones at most otherwise


def test_a_big_photo_costs_a_few_bytes_per_pixel(tmp_path, photos, tiny_weights):
    """Peak memory of colorizing a 6-megapixel photo, beyond a warmed-up process: the old path
    (float RGB copies) took about 50 bytes per pixel; the pipeline keeps it near 10-15."""
    big = tmp_path / "big.jpg"
    Image.fromarray(photos["astronaut"]).resize((3000, 2000)).save(big, quality=90)
    small = tmp_path / "small.jpg"
    Image.fromarray(photos["astronaut"]).resize((64, 64)).save(small)
    script = textwrap.dedent(f"""
        import json, resource, torch
        torch.set_num_threads(1)
        from recolor.inference import Colorizer
        from recolor.pipeline import ColorizeJob, colorize_files
        colorizer = Colorizer.load({str(tiny_weights)!r}, device="cpu")
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        list(colorize_files(colorizer, [ColorizeJob(__import__("pathlib").Path({str(small)!r}), __import__("pathlib").Path({str(tmp_path / "s.jpg")!r}))]))
        before = peak()
        outcomes = list(colorize_files(colorizer, [ColorizeJob(__import__("pathlib").Path({str(big)!r}), __import__("pathlib").Path({str(tmp_path / "b.jpg")!r}))]))
        print(json.dumps({{"ok": outcomes[0].ok, "extra": peak() - before}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["ok"] and Image.open(tmp_path / "b.jpg").size == (3000, 2000)
    assert record["extra"] / (3000 * 2000) < 25, f"{record['extra'] / 6e6:.1f} bytes per pixel"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pipeline_matches_the_cpu(tmp_path, photos, tiny_weights):
    paths, bad = write_inputs(tmp_path / "in", photos)
    results = {}
    for device in ("cpu", "cuda"):
        colorizer = Colorizer.load(tiny_weights, device=device, precision="fp32")
        jobs = [ColorizeJob(path, tmp_path / device / path.name) for path in paths]
        assert [o.ok for o in colorize_files(colorizer, jobs, batch_size=2)] == [i != bad for i in range(len(paths))]
        results[device] = [np.asarray(Image.open(tmp_path / device / p.name)).astype(int) for i, p in enumerate(paths) if i != bad]
    for cpu, cuda in zip(results["cpu"], results["cuda"]):
        assert np.abs(cpu - cuda).max() <= 2


def test_decoding_threads_judge_colour_as_imageio_does(photos):
    from recolor.imageio import mean_chroma
    from recolor.inference import thumbnail_chroma

    for picture in (*photos.values(), np.repeat(photos["coffee"].mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)):
        thumbnail = Image.fromarray(picture)
        thumbnail.thumbnail((128, 128))
        assert thumbnail_chroma(np.asarray(thumbnail)) == pytest.approx(mean_chroma(Image.fromarray(picture)), abs=1e-3)
