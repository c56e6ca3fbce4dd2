"""ONNX export and the ONNX engine (issue 24): every model exports and matches torch or says why
not; both engines give the same colours, hints included; the CLI's errors are one line each; the
shipped export matches the shipped weights; the default colorize path never imports torch."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.checkpoint import save_checkpoint
from recolor.cli import app
from recolor.engines import load_colorizer
from recolor.hints import Hints
from recolor.imageio.photo import photo_from_pil
from recolor.inference import Colorizer
from recolor.onnx_engine import OnnxColorizer, OnnxEngineError, OnnxModelInfo, file_sha256
from recolor.onnx_export import ExportError, export_onnx
from recolor.registry import get_model_spec, list_models

ROOT = Path(__file__).resolve().parent.parent
MUST_EXPORT = {"effnet-unet", "pix2pix", "resnet18"}
TOLERANCE = 1e-3

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one intra-op thread


def tiny_checkpoint(name: str, folder: Path, live_hints: bool = False) -> Path:
    """A randomly initialised tiny network of the model saved as weights (fp32: the check is the exporter's)."""
    spec = get_model_spec(name)
    config = spec.config({**spec.tiny, **spec.training.tiny})
    torch.manual_seed(0)
    network = spec.build(config).eval()
    if live_hints:  # the hint heads start at zero: give them weights so that hints change the colours
        torch.nn.init.normal_(network.hint_head.weight, std=2.0)
        torch.nn.init.normal_(network.global_head.weight, std=2.0)
    return save_checkpoint(folder / f"{name}.safetensors", network.state_dict(), name, config, kind="weights", dtype=torch.float32)


def metadata(path: Path) -> OnnxModelInfo:
    return OnnxModelInfo.from_metadata({item.key: item.value for item in onnx.load(str(path), load_external_data=False).metadata_props}, path)


def engine_ab_difference(torch_colorizer, onnx_colorizer, photo: Image.Image, hints: Hints | None = None) -> float:
    """Largest |ab| (normalised) between the engines' predictions for one photo, each from its own decoding and resizing."""
    as_tensor, as_array = photo_from_pil(photo), photo_from_pil(photo, as_array=True)
    size = [(photo.width, photo.height)]
    torch_input = torch_colorizer.input_from_lightness(as_tensor.lightness)[None]
    ab_torch = torch_colorizer.predict_ab(torch_input, torch_colorizer.hint_inputs([hints], size, torch_input))
    onnx_input = onnx_colorizer.input_from_lightness(onnx_colorizer.photo_lightness(as_array))[None]
    ab_onnx = onnx_colorizer.predict_ab(onnx_input, onnx_colorizer.hint_inputs([hints], size, onnx_input))
    return float(np.abs(ab_torch.numpy() - ab_onnx).max())


@pytest.fixture(scope="module")
def grey(photos) -> Image.Image:
    return Image.fromarray(photos["astronaut"][:300, :420]).convert("L")


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_every_model_exports_and_matches_torch_or_says_why_not(name, tmp_path, grey):
    weights = tiny_checkpoint(name, tmp_path)
    target = weights.with_suffix(".onnx")
    try:
        report = export_onnx(weights, target)
    except ExportError as exc:
        assert name not in MUST_EXPORT, str(exc)
        assert "\n" not in str(exc) and name in str(exc) and not target.exists()
        return
    assert report.max_difference <= TOLERANCE
    info = metadata(target)
    assert info.model == name and info.weights_sha256 == file_sha256(weights) and info.outputs == ["ab"]
    assert info.inputs == (["lightness", "local_hints", "global_hints"] if info.global_hint_length else ["lightness"])
    spec = get_model_spec(name)
    assert info.config["image_size"] == spec.config({**spec.tiny, **spec.training.tiny})["image_size"] == info.image_size
    assert set(info.normalisation) == {*info.inputs, "ab"} and info.version
    # the engine picks the export up from beside the weights and colours as torch does
    onnx_colorizer = load_colorizer(weights, engine="onnx")
    assert isinstance(onnx_colorizer, OnnxColorizer) and onnx_colorizer.name == name
    assert engine_ab_difference(Colorizer.load(weights, engine="torch", precision="fp32"), onnx_colorizer, grey) <= TOLERANCE


@pytest.fixture(scope="module")
def hinted_weights(tmp_path_factory) -> Path:
    weights = tiny_checkpoint("effnet-unet", tmp_path_factory.mktemp("hinted"), live_hints=True)
    export_onnx(weights, weights.with_suffix(".onnx"))
    return weights


def test_hints_work_on_both_engines(hinted_weights, grey, photos):
    torch_colorizer = Colorizer.load(hinted_weights, engine="torch", precision="fp32")
    onnx_colorizer = Colorizer.load(hinted_weights, engine="onnx")
    assert isinstance(onnx_colorizer, OnnxColorizer) and onnx_colorizer.takes_hints
    points = [(100, 100, "#2e86c1"), (300, 40, (192, 57, 43))]
    reference = Image.fromarray(photos["coffee"])
    for hints in (None, Hints.of(points), Hints.of(None, reference), Hints.of(points, reference)):
        assert engine_ab_difference(torch_colorizer, onnx_colorizer, grey, hints) <= TOLERANCE
    plain = np.asarray(onnx_colorizer.colorize(grey), dtype=int)
    pointed = np.asarray(onnx_colorizer.colorize(grey, hints=points), dtype=int)
    assert np.abs(pointed - plain).max() > 10  # the points reach the ONNX network
    assert np.abs(pointed - np.asarray(torch_colorizer.colorize(grey, hints=points), dtype=int)).max() <= 2
    with pytest.raises(ValueError, match="outside the 420x300 photo"):
        onnx_colorizer.colorize(grey, hints=[(420, 10, "#ffffff")])
    # suggestions need the network's distribution, which the export does not output: the torch engine answers
    assert onnx_colorizer.suggest(grey, 200, 150, k=3, hints=points) == torch_colorizer.suggest(grey, 200, 150, k=3, hints=points)


def test_both_engines_colorize_a_folder_alike_through_the_cli(hinted_weights, tmp_path, photos):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photos["astronaut"]).convert("L").save(folder / "a.png")
    Image.fromarray(photos["coffee"]).save(folder / "b.jpg", quality=95)
    outputs = {}
    for engine in ("torch", "onnx"):
        result = CliRunner().invoke(app, ["colorize", str(folder), "-o", str(tmp_path / engine), "--model", str(hinted_weights),
                                          "--engine", engine, "--precision", "fp32", "-q"])
        assert result.exit_code == 0, result.output
        outputs[engine] = [np.asarray(Image.open(tmp_path / engine / name), dtype=int) for name in ("a.png", "b.jpg")]
    assert np.abs(outputs["torch"][0] - outputs["onnx"][0]).max() <= 2  # PNG: levels, rounding only
    assert np.abs(outputs["torch"][1] - outputs["onnx"][1]).mean() < 0.5  # JPEG re-encodes


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_export_errors_are_one_line_and_exit_2(tmp_path, tiny_pix2pix_checkpoint):
    runner = CliRunner()
    assert "unknown model" in one_line_error(runner.invoke(app, ["export", "no-such-model", "-o", str(tmp_path / "x.onnx")])).lower()
    assert "only onnx" in one_line_error(runner.invoke(app, ["export", str(tiny_pix2pix_checkpoint), "--format", "tflite", "-o", str(tmp_path / "x.onnx")]))
    assert "does not exist" in one_line_error(runner.invoke(app, ["export", str(tiny_pix2pix_checkpoint), "-o", str(tmp_path / "missing" / "x.onnx")]))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root writes anywhere
            assert "cannot write" in one_line_error(runner.invoke(app, ["export", str(tiny_pix2pix_checkpoint), "-o", str(locked / "x.onnx")]))
    finally:
        locked.chmod(0o700)
    existing = tmp_path / "existing.onnx"
    existing.write_bytes(b"keep me")
    assert "--overwrite" in one_line_error(runner.invoke(app, ["export", str(tiny_pix2pix_checkpoint), "-o", str(existing)]))
    assert existing.read_bytes() == b"keep me"
    result = runner.invoke(app, ["export", str(tiny_pix2pix_checkpoint), "-o", str(existing), "--overwrite"])
    assert result.exit_code == 0 and "max |ab| difference" in result.output
    assert metadata(existing).model == "pix2pix"


def test_a_model_that_cannot_export_says_why_in_one_line(tmp_path, monkeypatch, tiny_pix2pix_checkpoint):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 is not supported.\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    line = one_line_error(CliRunner().invoke(app, ["export", str(tiny_pix2pix_checkpoint), "-o", str(tmp_path / "x.onnx")]))
    assert "'pix2pix' cannot be exported to ONNX" in line and "aten::fancy" in line
    assert not (tmp_path / "x.onnx").exists()


def test_engine_onnx_without_an_export_says_how_to_get_one(tiny_pix2pix_checkpoint, grey_photo_path, tmp_path):
    line = one_line_error(CliRunner().invoke(app, ["colorize", str(grey_photo_path), "-o", str(tmp_path), "--model",
                                                    str(tiny_pix2pix_checkpoint), "--engine", "onnx"]))
    assert "recolor export" in line and "--engine torch" in line
    with pytest.raises(OnnxEngineError, match="recolor export pix2pix"):
        load_colorizer("pix2pix", engine="onnx")
    with pytest.raises(ValueError, match="runs on the CPU"):
        load_colorizer("effnet-unet", engine="onnx", device="cuda")
    # auto without an export: torch, as before
    assert isinstance(load_colorizer(tiny_pix2pix_checkpoint, engine="auto", device="cpu"), Colorizer)


def test_a_stale_export_is_refused_by_onnx_and_skipped_by_auto(hinted_weights, tmp_path):
    weights = tmp_path / "model.safetensors"
    (tmp_path / "other").mkdir()
    shutil.copy(hinted_weights, weights)
    shutil.copy(hinted_weights.with_suffix(".onnx"), tmp_path / "model.onnx")
    assert isinstance(load_colorizer(weights, device="cpu"), OnnxColorizer)
    shutil.move(tiny_checkpoint("effnet-unet", tmp_path / "other", live_hints=False), weights)  # other weights beside the export
    with pytest.raises(OnnxEngineError, match="stale.*recolor export"):
        load_colorizer(weights, engine="onnx")
    assert isinstance(load_colorizer(weights, device="cpu"), Colorizer)


SHIPPED_ONNX = ROOT / "weights" / "effnet-unet.onnx"


def test_the_shipped_export_matches_the_shipped_weights(grey):
    """Fails, saying how to regenerate it, when weights/effnet-unet.safetensors was replaced after the export."""
    info = metadata(SHIPPED_ONNX)
    weights = SHIPPED_ONNX.with_suffix(".safetensors")
    assert info.weights_sha256 == file_sha256(weights), (
        f"{SHIPPED_ONNX.name} is stale: exported from other weights than {weights.name}; regenerate it with "
        f"`python -m recolor.cli export weights/effnet-unet.safetensors --format onnx -o weights/effnet-unet.onnx --overwrite`")
    assert SHIPPED_ONNX.stat().st_size < 32e6 and sum(path.stat().st_size for path in weights.parent.iterdir()) < 100e6
    onnx_colorizer = OnnxColorizer.load(weights)
    torch_colorizer = Colorizer.load(weights, engine="torch", precision="fp32")
    assert onnx_colorizer.takes_hints == torch_colorizer.takes_hints
    assert engine_ab_difference(torch_colorizer, onnx_colorizer, grey) <= TOLERANCE


def test_the_default_colorize_path_imports_neither_torch_nor_timm(grey_photo_path, tmp_path):
    script = (
        "import sys\n"
        "from recolor.cli import app\n"
        f"try:\n    app(['colorize', {str(grey_photo_path)!r}, '-o', {str(tmp_path)!r}, '--device', 'cpu', '-q'])\n"
        "except SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        "print(sorted(name for name in ('torch', 'timm', 'torchvision', 'torch._dynamo') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / grey_photo_path.name).is_file()


def test_the_engines_agree_on_photos_val(shared_data):
    """Max |ab| (normalised) between the engines on every photo of photos/val: at most 1e-3."""
    folder = shared_data / "photos" / "val"
    if not folder.is_dir():
        pytest.skip("shared photos/val absent")
    torch_colorizer = Colorizer.load(engine="torch", precision="fp32")
    onnx_colorizer = Colorizer.load(engine="onnx")
    worst = max(engine_ab_difference(torch_colorizer, onnx_colorizer, Image.open(path).convert("RGB"))
                for path in sorted(folder.glob("*.jpg"))[:12])
    assert worst <= TOLERANCE
