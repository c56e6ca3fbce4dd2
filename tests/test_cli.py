import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.cli import app
from recolor.imageio import decode_photo

runner = CliRunner()


def colorize(*args):
    return runner.invoke(app, ["colorize", *map(str, args)])


def test_colorize_one_file_keeps_size_and_lightness(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    out = tmp_path / "out"
    result = colorize(grey_photo_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "--format", "png", "-q")
    assert result.exit_code == 0, result.output
    written = out / "astronaut_grey.png"
    with Image.open(written) as image:
        assert image.size == (512, 512) and image.mode == "RGB"
    d_lightness = (decode_photo(written).lightness - decode_photo(grey_photo_path).lightness).abs().mean()
    assert d_lightness < 1.0
    assert "1 colorized, 0 skipped, 0 failed" in result.output


def test_folder_with_bad_files_colorizes_the_good_ones_and_exits_non_zero(tmp_path, photos, tiny_pix2pix_checkpoint):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photos["coffee"]).convert("L").save(folder / "coffee.jpg")
    Image.fromarray(photos["chelsea"]).save(folder / "sub" / "chelsea.png")  # already colour
    (folder / "broken.jpg").write_bytes((folder / "coffee.jpg").read_bytes()[:500])
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = colorize(folder, "-o", out, "--model", tiny_pix2pix_checkpoint, "--json", "-q")
    assert result.exit_code == 1
    records = {Path(r["input"]).name: r for r in map(json.loads, [l for l in result.stdout.splitlines() if l.startswith("{")])}
    assert records["coffee.jpg"]["status"] == "ok" and records["chelsea.png"]["status"] == "ok"
    assert records["chelsea.png"]["was_colour"] is True
    assert records["broken.jpg"]["status"] == "error" and "broken.jpg" in records["broken.jpg"]["error"]
    assert "notes.txt" not in records and "left out 1 file that is not an image" in result.output  # a sidecar in a folder
    assert (out / "coffee.jpg").is_file() and (out / "sub" / "chelsea.png").is_file()
    assert Image.open(out / "coffee.jpg").size == Image.open(folder / "coffee.jpg").size
    assert "already in colour" in result.output
    assert "2 colorized, 0 skipped, 1 failed" in result.output


def test_an_input_format_pillow_cannot_write_comes_out_as_png(tmp_path, photos, tiny_pix2pix_checkpoint):
    Image.fromarray(photos["coffee"][:64, :96]).convert("L").save(tmp_path / "scan.pcx")
    out = tmp_path / "out"
    result = colorize(tmp_path / "scan.pcx", "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["output"] == str((out / "scan.png").resolve())
    with Image.open(out / "scan.png") as image:
        assert image.size == (96, 64) and image.mode == "RGB"
    # asked for explicitly, an unwritable format is still refused, once, as a usage error
    refused = colorize(tmp_path / "scan.pcx", "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--format", "pcx")
    assert refused.exit_code == 2 and "unsupported output extension '.pcx'" in refused.output


def test_existing_outputs_are_skipped_unless_overwrite_and_inputs_never_replaced(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    out = tmp_path / "out"
    assert colorize(grey_photo_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q").exit_code == 0
    target = out / grey_photo_path.name
    stamp = target.stat().st_mtime_ns
    again = colorize(grey_photo_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    assert again.exit_code == 0 and json.loads(again.stdout.splitlines()[0])["status"] == "skipped"
    assert target.stat().st_mtime_ns == stamp
    assert colorize(grey_photo_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--overwrite").exit_code == 0
    assert target.stat().st_mtime_ns != stamp
    # an output folder equal to the input's folder would replace the input: refused
    before = grey_photo_path.read_bytes()
    refused = colorize(grey_photo_path, "-o", grey_photo_path.parent, "--model", tiny_pix2pix_checkpoint, "-q", "--overwrite")
    assert refused.exit_code == 1 and "overwrite the input" in refused.output
    assert grey_photo_path.read_bytes() == before


def test_globs_and_usage_errors(tmp_path, photos, tiny_pix2pix_checkpoint):
    for name in ("a", "b"):
        Image.fromarray(photos["coffee"][:64, :96]).convert("L").save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    result = colorize(str(tmp_path / "*.png"), "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--batch-size", "1")
    assert result.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    missing_model = colorize(tmp_path / "a.png", "--model", tmp_path / "nope.safetensors")
    assert missing_model.exit_code == 2 and "no such checkpoint" in missing_model.output
    unknown = colorize(tmp_path / "a.png", "--model", "not-a-model")
    assert unknown.exit_code == 2 and "unknown model" in unknown.output
    nothing = colorize(str(tmp_path / "*.nothing"), "--model", tiny_pix2pix_checkpoint)
    assert nothing.exit_code == 2 and "no input files" in nothing.output
    absent = colorize(tmp_path / "absent.png", "--model", tiny_pix2pix_checkpoint)
    assert absent.exit_code == 1 and "absent.png: no such file" in absent.output


def test_output_folder_inside_the_input_folder_is_not_rescanned(tmp_path, photos, tiny_pix2pix_checkpoint):
    Image.fromarray(photos["coffee"][:64, :96]).convert("L").save(tmp_path / "a.png")
    out = tmp_path / "colorized"
    assert colorize(tmp_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q").exit_code == 0
    second = colorize(tmp_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "-q", "--json")
    assert second.exit_code == 0 and [json.loads(l)["input"] for l in second.stdout.splitlines()] == [str(tmp_path / "a.png")]
    assert not (out / "colorized").exists()


def test_python_api_colorize_keeps_alpha_and_size(photos, tiny_pix2pix_checkpoint):
    from recolor import Colorizer

    colorizer = Colorizer.load(tiny_pix2pix_checkpoint, device="cpu")
    rgba = Image.fromarray(photos["chelsea"]).convert("LA").convert("RGBA")
    rgba.putalpha(100)
    result = colorizer.colorize(rgba)
    assert result.size == rgba.size and result.mode == "RGBA"
    assert np.asarray(result)[..., 3].max() == 100


def test_models_command_lists_pix2pix():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    assert "pix2pix" in {row["name"] for row in json.loads(result.stdout)}


def test_models_command_says_which_weights_ship_as_find_weights_finds_them(tmp_path, monkeypatch, tiny_pix2pix_checkpoint):
    """A file in $RECOLOR_WEIGHTS_DIR named after a model counts as shipped (as `--model NAME` loads it)."""
    from recolor.evaluation.contenders import shipped_models

    def shipped() -> dict[str, bool]:
        result = runner.invoke(app, ["models", "--json"])
        assert result.exit_code == 0
        return {row["name"]: row["shipped_weights"] for row in json.loads(result.stdout)}

    monkeypatch.setenv("RECOLOR_WEIGHTS_DIR", str(tmp_path))
    before = shipped()
    assert before["pix2pix"] and not before["pix2pix-lsgan"]
    (tmp_path / "pix2pix-lsgan.safetensors").write_bytes(tiny_pix2pix_checkpoint.read_bytes())
    assert shipped() == {**before, "pix2pix-lsgan": True}
    assert "pix2pix-lsgan" in shipped_models()


def test_chroma_scales_the_predicted_colour_and_zero_gives_the_grey_photo(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint):
    from recolor.checkpoint import load_checkpoint, save_checkpoint
    from recolor.color import rgb_to_lab
    from recolor.inference import Colorizer

    # the random tiny generator is near grey: give its output layer a colour cast (a = b = tanh(0.4))
    tiny = load_checkpoint(tiny_pix2pix_checkpoint)
    output_bias = [key for key in tiny.tensors if key.startswith(f"up.{tiny.config['num_downs'] - 1}.") and key.endswith(".bias")]
    assert len(output_bias) == 1
    tinted_path = tmp_path / "tinted.safetensors"
    save_checkpoint(tinted_path, {**tiny.tensors, output_bias[0]: torch.full_like(tiny.tensors[output_bias[0]], 0.4)}, "pix2pix", tiny.config, kind="weights")
    tiny_pix2pix_checkpoint = tinted_path

    lightness = torch.linspace(-1, 1, 64 * 64).reshape(1, 1, 64, 64)
    own = Colorizer.load(tiny_pix2pix_checkpoint, precision="fp32").predict_ab(lightness)
    muted = Colorizer.load(tiny_pix2pix_checkpoint, precision="fp32", chroma=0.5).predict_ab(lightness)
    assert own.abs().mean() > 0.01 and torch.allclose(muted, own * 0.5, atol=1e-6)

    def chroma_of(path):
        with Image.open(path) as image:
            rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
        return rgb_to_lab(rgb)[1:].abs().mean().item()

    outputs = {}
    for chroma in ("0", "1", "2"):
        out = tmp_path / chroma
        result = colorize(grey_photo_path, "-o", out, "--model", tiny_pix2pix_checkpoint, "--chroma", chroma, "--format", "png", "-q")
        assert result.exit_code == 0, result.output
        outputs[chroma] = chroma_of(out / "astronaut_grey.png")
    assert outputs["0"] < 0.5 < outputs["1"] < outputs["2"]
    assert outputs["2"] > 1.5 * outputs["1"]
    assert colorize(grey_photo_path, "-o", tmp_path / "x", "--model", tiny_pix2pix_checkpoint, "--chroma", "-1").exit_code == 2


def test_a_model_name_wins_over_a_same_named_folder_or_file(tmp_path, grey_photo_path, tiny_pix2pix_checkpoint, monkeypatch):
    """`--model pix2pix` means the shipped pix2pix even beside a `pix2pix` folder or file; a path
    says so by a folder separator or the .safetensors suffix; other text is a path when it names a file."""
    import shutil

    shipped = tmp_path / "weights"
    shipped.mkdir()
    shutil.copy(tiny_pix2pix_checkpoint, shipped / "pix2pix.safetensors")
    monkeypatch.setenv("RECOLOR_WEIGHTS_DIR", str(shipped))
    work = tmp_path / "work"
    (work / "pix2pix").mkdir(parents=True)
    monkeypatch.chdir(work)
    by_name = colorize(grey_photo_path, "-o", tmp_path / "by_name", "--model", "pix2pix", "-q")
    assert by_name.exit_code == 0 and "with pix2pix" in by_name.output, by_name.output
    as_path = colorize(grey_photo_path, "-o", tmp_path / "as_path", "--model", "./pix2pix", "-q")
    assert as_path.exit_code == 2 and "no such checkpoint file" in as_path.output
    shutil.rmtree(work / "pix2pix")
    (work / "pix2pix").write_bytes(b"not a checkpoint")  # a file named like the model: the name still wins
    assert colorize(grey_photo_path, "-o", tmp_path / "beside_file", "--model", "pix2pix", "-q").exit_code == 0
    assert colorize(grey_photo_path, "-o", tmp_path / "the_file", "--model", "./pix2pix", "-q").exit_code == 2
    shutil.copy(tiny_pix2pix_checkpoint, work / "my-model")  # no model's name: the file
    assert colorize(grey_photo_path, "-o", tmp_path / "mine", "--model", "my-model", "-q").exit_code == 0
