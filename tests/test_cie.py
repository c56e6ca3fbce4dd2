"""The ONNX engine's numpy colour steps (recolor/cie.py) against the torch engine's functions and
scikit-image."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import color as skcolor

from recolor import cie, color
from recolor.inference import join_to_host


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


def test_the_constants_are_defined_once():
    for name in ("XYZ_FROM_RGB", "D65_WHITE", "CIE_EPSILON", "CIE_LINEAR_SLOPE", "CIE_F_THRESHOLD", "L_SCALE", "AB_SCALE", "STRIP_PIXELS"):
        assert getattr(color, name) is getattr(cie, name)


def test_lightness_of_8_bit_pixels_matches_torch_and_skimage(rng):
    pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    pixels[0, :8] = [[0, 0, 0], [255, 255, 255], [10, 10, 10], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3], [128, 128, 128]]
    ours = cie.lightness_from_pixels(pixels)
    assert ours.dtype == np.float32 and ours.shape == (37, 53)
    assert np.abs(ours - color.lightness_from_pixels(torch.from_numpy(pixels))[0].numpy()).max() < 1e-4
    assert np.abs(ours - skcolor.rgb2lab(pixels / 255.0)[..., 0]).max() < 1e-3
    grey = pixels[..., :1]
    assert np.abs(cie.lightness_from_pixels(grey) - color.lightness_from_pixels(torch.from_numpy(grey))[0].numpy()).max() < 1e-4


def test_lightness_of_float_photos_matches_skimage(rng):
    rgb = rng.random((20, 30, 3))
    assert np.abs(cie.lightness_from_rgb(rgb) - skcolor.rgb2lab(rgb)[..., 0]).max() < 1e-3
    grey = rgb[..., 0]
    assert np.abs(cie.lightness_from_rgb(grey) - skcolor.rgb2lab(np.repeat(grey[..., None], 3, -1))[..., 0]).max() < 1e-3


@pytest.mark.parametrize("shape", [(512, 768), (300, 200), (40, 90)])  # shrinking, both ways, and growing
def test_network_input_is_torchs_antialiased_bilinear_resize(rng, shape):
    lightness = (rng.random(shape) * 100).astype(np.float32)
    lightness = np.cumsum(lightness, 1) % 100  # some structure for the filter to see
    ours = cie.network_input(lightness.astype(np.float32), 64)
    theirs = color.normalize_l(F.interpolate(torch.from_numpy(lightness)[None, None], size=(64, 64), mode="bilinear",
                                             antialias=True, align_corners=False))[0].numpy()
    assert ours.shape == (1, 64, 64)
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_join_matches_the_torch_join_and_skimage(rng, dtype):
    height, width = 301, 457
    lightness = (rng.random((height, width)) * 100).astype(np.float32)
    ab_small = (rng.random((2, 16, 24)) * 1.6 - 0.8).astype(np.float32)
    ours = cie.join_levels(lightness, ab_small, dtype)
    theirs, _ = join_to_host(torch.from_numpy(lightness)[None], torch.from_numpy(ab_small), torch.device("cpu"),
                             dtype=torch.uint8 if dtype == np.uint8 else torch.uint16)
    assert ours.dtype == dtype and ours.shape == (height, width, 3)
    assert np.abs(ours.astype(int) - theirs.numpy().astype(int)).max() <= 1  # float rounding at a level's edge
    upsampled = F.interpolate(torch.from_numpy(ab_small)[None] * 110, size=(height, width), mode="bilinear", align_corners=False)[0]
    lab = np.concatenate([lightness[None], upsampled.numpy()]).transpose(1, 2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the negative Z values it clips
        reference = skcolor.lab2rgb(lab) * (65535 if dtype == np.uint16 else 255)
    assert np.abs(ours - reference).max() <= (1.0 if dtype == np.uint8 else 2.0)  # rounding; float32 maths at 16 bits
