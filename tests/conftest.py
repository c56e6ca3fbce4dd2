"""Shared fixtures: small real photos from scikit-image, a tiny training folder, ../shared lookup."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

torch.set_num_threads(2)


def sample_photos() -> dict[str, np.ndarray]:
    """scikit-image's bundled colour photos (uint8 HxWx3)."""
    return {"astronaut": skdata.astronaut(), "coffee": skdata.coffee(), "chelsea": skdata.chelsea()}


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    return sample_photos()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip the test (a user's machine has none)."""
    path = SHARED / "data"
    if not (path / "photos").is_dir():
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture(scope="session")
def tiny_photo_folder(tmp_path_factory, photos) -> Path:
    """24 colour crops (80x80) of the sample photos in two class sub-folders: a tiny training set."""
    root = tmp_path_factory.mktemp("tiny_photos")
    rng = np.random.default_rng(0)
    names = list(photos)
    for i in range(24):
        image = photos[names[i % len(names)]]
        top = rng.integers(0, image.shape[0] - 160)
        left = rng.integers(0, image.shape[1] - 160)
        crop = Image.fromarray(image[top : top + 160, left : left + 160]).resize((80, 80), Image.BICUBIC)
        folder = root / ("class_a" if i % 2 else "class_b")
        folder.mkdir(exist_ok=True)
        crop.save(folder / f"img_{i:02d}.png")
    return root


@pytest.fixture(scope="session")
def grey_photo_path(tmp_path_factory, photos) -> Path:
    """A greyscale JPEG made from the astronaut photo (512x512, mode L)."""
    path = tmp_path_factory.mktemp("grey") / "astronaut_grey.jpg"
    Image.fromarray(photos["astronaut"]).convert("L").save(path, quality=95)
    return path


@pytest.fixture(scope="session")
def tiny_pix2pix_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised, tiny pix2pix generator exported like `recolor train` does (fp16)."""
    from recolor.checkpoint import save_checkpoint
    from recolor.registry import get_model_spec

    torch.manual_seed(0)
    spec = get_model_spec("pix2pix")
    config = spec.config({"ngf": 8, "num_downs": 5, "image_size": 32})
    generator = spec.build(config)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, generator.state_dict(), "pix2pix", config, kind="weights", dtype=torch.float16)
    return path


@pytest.fixture(scope="session")
def tiny_hint_checkpoint(tmp_path_factory) -> Path:
    """A tiny hint-taking effnet-unet (random encoder) whose zero-started hint heads are made live
    (random), so that points and references visibly change its colours; saved as weights."""
    from recolor.checkpoint import save_checkpoint
    from recolor.registry import get_model_spec

    torch.manual_seed(0)
    spec = get_model_spec("effnet-unet")
    config = spec.config({"decoder_widths": [16, 16, 16], "encoder_weights": "none", "image_size": 64, "hints": True})
    network = spec.build(config)
    torch.nn.init.normal_(network.hint_head.weight, std=2.0)
    torch.nn.init.normal_(network.global_head.weight, std=2.0)
    path = tmp_path_factory.mktemp("hinted") / "hinted.safetensors"
    save_checkpoint(path, network.state_dict(), "effnet-unet", config, kind="weights")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny networks: they gain nothing from a second thread, and
    on a busy machine two threads spin-waiting on each other make them many times slower; restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Attach every training recipe to the registry once: inference alone never loads recolor.training
# (a subprocess test checks that), but many tests build recipes or full training configs.
import recolor.training  # noqa: E402,F401
