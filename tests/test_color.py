import warnings

import numpy as np
import torch
from skimage import color as skcolor

from recolor.color import (
    grey_rgb, lab_normalized_to_rgb, lab_to_rgb, normalize_ab, normalize_l, rgb_to_lab,
    rgb_to_lab_normalized, rgb_to_lightness,
)

EXTREMES = np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1],
                     [0.04045, 0.04045, 0.04045], [0.0031308, 0.5, 0.999], [1e-6, 1e-6, 1e-6]])


def to_chw(array):
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)


def test_rgb_to_lab_matches_skimage_on_random_and_extreme_colours():
    rng = np.random.default_rng(1)
    rgb = rng.random((40, 40, 3))
    rgb[0, : len(EXTREMES)] = EXTREMES
    reference = skcolor.rgb2lab(rgb)
    for dtype, tolerance in ((torch.float64, 1e-6), (torch.float32, 1e-2)):
        ours = rgb_to_lab(to_chw(rgb).to(dtype)).permute(1, 2, 0).double().numpy()
        assert np.abs(ours - reference).max() < tolerance


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(2)
    lab = rng.uniform([0, -110, -110], [100, 110, 110], (32, 32, 3))  # many fall outside sRGB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the negative Z values it clips
        reference = skcolor.lab2rgb(lab)
    ours = lab_to_rgb(to_chw(lab)).permute(1, 2, 0).numpy()
    assert ours.min() >= 0 and ours.max() <= 1  # gamut clipped
    assert np.abs(ours - reference).max() < 1e-6


def test_round_trip_and_lightness_only_path():
    rng = np.random.default_rng(3)
    rgb = to_chw(rng.random((16, 16, 3)))
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)
    assert torch.allclose(rgb_to_lightness(rgb)[0], rgb_to_lab(rgb)[0], atol=1e-9)


def test_batched_shapes_and_normalisation_ranges():
    rgb = torch.rand(2, 5, 3, 8, 8)
    lightness, ab = rgb_to_lab_normalized(rgb)
    assert lightness.shape == (2, 5, 1, 8, 8) and ab.shape == (2, 5, 2, 8, 8)
    assert lightness.min() >= -1 and lightness.max() <= 1 and ab.abs().max() <= 1
    assert torch.allclose(normalize_l(torch.tensor([0.0, 50.0, 100.0])), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(normalize_ab(torch.tensor([-110.0, 110.0])), torch.tensor([-1.0, 1.0]))
    back = lab_normalized_to_rgb(lightness, ab)
    assert torch.allclose(back, rgb, atol=1e-4)


def test_half_precision_input_is_computed_in_float32():
    rgb = torch.rand(3, 8, 8)
    assert torch.allclose(rgb_to_lab(rgb.half()), rgb_to_lab(rgb.half().float()))


def test_conversions_are_differentiable_with_finite_gradients():
    rgb = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    rgb[0, :, 0, 0] = 0.0  # black: the cube-root and gamma kinks must not give NaN
    rgb.requires_grad_(True)
    lab = rgb_to_lab(rgb)
    back = lab_to_rgb(lab)
    (lab.sum() + back.sum()).backward()
    assert torch.isfinite(rgb.grad).all()
    assert torch.autograd.gradcheck(lambda x: rgb_to_lab(x), (torch.rand(1, 3, 2, 2, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_(),))


def test_grey_rgb_has_zero_chroma_and_same_lightness():
    rgb = torch.rand(3, 8, 8, dtype=torch.float64)
    grey = grey_rgb(rgb)
    lab = rgb_to_lab(grey)
    assert lab[1:].abs().max() < 1e-3
    assert torch.allclose(lab[0], rgb_to_lab(rgb)[0], atol=1e-6)
