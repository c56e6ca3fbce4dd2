"""Registry-wide tests, in the spirit of timm's tests/test_models.py: every registered model, with
no per-model code here, is built, trained for a step by `recolor train`, saved, loaded back from
its file alone and used to colorize a photo; every shipped weights file loads and colorizes.

A new model is covered by registering it (its network file's ``register_model`` with a ``tiny``
architecture, its recipe file's ``attach_recipe`` with ``tiny`` training overrides).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from recolor.checkpoint import load_checkpoint
from recolor.cli import app
from recolor.color import rgb_to_lab_normalized
from recolor.inference import Colorizer
from recolor.registry import list_models

ROOT = Path(__file__).resolve().parent.parent
MODELS = [spec.name for spec in list_models()]
SHIPPED = sorted((ROOT / "weights").glob("*.safetensors"))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny networks, one intra-op thread


@pytest.fixture(scope="module")
def grey_photo(tmp_path_factory, photos) -> Path:
    """A 90x70 greyscale photo (sizes no network multiple divides)."""
    path = tmp_path_factory.mktemp("grey") / "grey.png"
    Image.fromarray(next(iter(photos.values()))[:70, :90]).convert("L").save(path)
    return path


def lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab_normalized(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0)[0][0, 0].numpy()


def assert_colorized(image: Image.Image, grey_path: Path) -> np.ndarray:
    """Full size RGB with (inference joins the model's colour to the photo's own lightness) the input's L."""
    rgb, grey = np.asarray(image), np.asarray(Image.open(grey_path).convert("RGB"))
    assert image.mode == "RGB" and rgb.shape == grey.shape
    assert np.abs(lightness(rgb) - lightness(grey)).mean() < 0.02  # 8-bit rounding of the colour only
    return rgb


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_a_step_saves_loads_and_colorizes(name, tmp_path, tiny_photo_folder, grey_photo):
    spec = next(spec for spec in list_models() if spec.name == name)
    config = spec.config({**spec.tiny, **spec.training.tiny})  # every tiny key is a real key of the model
    settings = [item for key, value in {**spec.tiny, **spec.training.tiny}.items() for item in ("--set", f"{key}={json.dumps(value)}")]
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--model", name, "--data", str(tiny_photo_folder), "--out", str(out), "--max-steps", "1",
                                      "--size", str(config["image_size"]), "--batch-size", "2", "--workers", "0", "-q", *settings])
    assert result.exit_code == 0, result.output
    exported = load_checkpoint(out / "model.safetensors")
    assert exported.model == name and exported.kind == "weights"
    assert set(spec.architecture) <= set(exported.config)  # the file carries its whole architecture
    assert all(exported.config[key] == value for key, value in spec.tiny.items())

    colorizer = Colorizer.load(out / "model.safetensors", device="cpu")  # the file alone rebuilds the network
    assert colorizer.name == name
    trained = load_checkpoint(out / "last.safetensors").generator_state()
    loaded = colorizer.generator.state_dict()
    assert trained.keys() == loaded.keys()
    assert all(torch.allclose(trained[key].float(), loaded[key].float(), atol=1e-2, rtol=1e-2) for key in trained)
    # loading skips the random initialisation (a meta-device build): what the file does not store
    # (buffers a constructor computes) must still be real and equal a plain build's
    unstored = {key: value for key, value in colorizer.generator.named_buffers() if key not in loaded}
    built = dict(spec.build(spec.architecture_config(exported.config)).named_buffers())
    assert not any(tensor.is_meta for tensor in (*colorizer.generator.parameters(), *unstored.values()))
    assert all(torch.equal(value, built[key]) for key, value in unstored.items())
    assert_colorized(colorizer.colorize(grey_photo), grey_photo)


@pytest.mark.skipif(not SHIPPED, reason="no shipped weights in this checkout")
@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_shipped_weights_file_loads_by_name_and_colorizes(path, grey_photo):
    colorizer = Colorizer.load(path.stem, device="cpu")
    assert colorizer.name == path.stem and colorizer.source.resolve() == path.resolve()
    rgb = assert_colorized(colorizer.colorize(grey_photo), grey_photo)
    chroma = rgb_to_lab_normalized(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0)[1].abs().mean().item()
    assert chroma > 0.01  # trained weights put colour in (a grey output would be 0)
