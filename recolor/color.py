"""Colour science: sRGB <-> CIE Lab (D65) as pure, batched, differentiable torch functions.

Every function takes tensors shaped ``(..., 3, H, W)`` (channel dimension third from the
end), works on any device and dtype, and never mutates its input.  Constants follow
scikit-image (``skimage.color.rgb2lab`` / ``lab2rgb`` with illuminant D65, observer 2 deg),
which the tests use as the reference.

Normalisation is the one of paper 002, section 4.1: ``L/50 - 1`` and ``ab/110`` so that
both the network's input and its output live in [-1, 1].
"""
from __future__ import annotations

import torch

# sRGB (linear) -> XYZ, as in skimage.color.colorconv.xyz_from_rgb
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)
_EPSILON = 0.008856  # (6/29)^3, the CIE threshold between the cube root and the linear part
_KAPPA = 7.787
_F_THRESHOLD = 0.2068966  # f(_EPSILON): threshold on the inverse side

L_SCALE = 50.0
AB_SCALE = 110.0


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _apply_matrix(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    # (..., 3, H, W) x (3, 3) over the channel dimension
    return torch.einsum("ij,...jhw->...ihw", matrix, image)


def _working_dtype(image: torch.Tensor) -> torch.Tensor:
    """Colour maths in half precision loses several Lab units: compute in float32 at least."""
    if not image.is_floating_point() or image.dtype in (torch.float16, torch.bfloat16):
        return image.float()
    return image


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    rgb = rgb.clamp(0.0, 1.0)
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    # Gamut clipping happens here: out-of-gamut linear values are clipped before the gamma curve.
    linear = linear.clamp(0.0, 1.0)
    # clamp_min keeps the pow's gradient finite at 0 (the branch is not taken there anyway)
    return torch.where(
        linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308).pow(1 / 2.4) - 0.055, 12.92 * linear
    )


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> Lab with L in [0, 100] and a, b roughly in [-110, 110]."""
    rgb = _working_dtype(rgb)
    xyz = _apply_matrix(srgb_to_linear(rgb), _matrix(_XYZ_FROM_RGB, rgb))
    white = torch.tensor(_D65_WHITE, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > _EPSILON, t.clamp_min(_EPSILON).pow(1.0 / 3.0), _KAPPA * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=-3)
    lightness = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack((lightness, a, b), dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> sRGB in [0, 1], clipping colours that fall outside the sRGB gamut."""
    lab = _working_dtype(lab)
    lightness, a, b = lab.unbind(dim=-3)
    fy = (lightness + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = (fy - b / 200.0).clamp_min(0.0)  # as skimage: negative z is clipped to 0
    f = torch.stack((fx, fy, fz), dim=-3)
    t = torch.where(f > _F_THRESHOLD, f.pow(3), (f - 16.0 / 116.0) / _KAPPA)
    white = torch.tensor(_D65_WHITE, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    xyz = t * white
    rgb_from_xyz = torch.linalg.inv(_matrix(_XYZ_FROM_RGB, lab).double()).to(lab.dtype)
    return linear_to_srgb(_apply_matrix(xyz, rgb_from_xyz))


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """The L channel alone, shaped (..., 1, H, W); cheaper than a full conversion."""
    rgb = _working_dtype(rgb)
    y = torch.einsum("j,...jhw->...hw", _matrix(_XYZ_FROM_RGB[1], rgb), srgb_to_linear(rgb))
    f = torch.where(y > _EPSILON, y.clamp_min(_EPSILON).pow(1.0 / 3.0), _KAPPA * y + 16.0 / 116.0)
    return (116.0 * f - 16.0).unsqueeze(-3)


def normalize_l(lightness: torch.Tensor) -> torch.Tensor:
    return lightness / L_SCALE - 1.0


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    return (l_norm + 1.0) * L_SCALE


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    return ab / AB_SCALE


def denormalize_ab(ab_norm: torch.Tensor) -> torch.Tensor:
    return ab_norm * AB_SCALE


def rgb_to_lab_normalized(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB in [0, 1] -> (L_norm (...,1,H,W), ab_norm (...,2,H,W)), both in [-1, 1]."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def lab_normalized_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_lab_normalized`; ab_norm is clamped to [-1, 1] first."""
    lab = torch.cat((denormalize_l(l_norm.float()), denormalize_ab(ab_norm.float().clamp(-1, 1))), dim=-3)
    return lab_to_rgb(lab)


def grey_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """The greyscale version of an sRGB image: same L, a = b = 0, as three channels."""
    lightness = rgb_to_lightness(rgb)
    return lab_to_rgb(torch.cat((lightness, torch.zeros_like(lightness).expand(*lightness.shape[:-3], 2, *lightness.shape[-2:])), dim=-3))


def output_to_ab(output: torch.Tensor, output_space: str) -> torch.Tensor:
    """Normalised ab from a generator's output, whatever space it predicts in.

    Paper 000's networks predict RGB in [-1, 1]; everywhere else the output already is ab/110.
    """
    if output_space == "ab":
        return output.float()
    if output_space == "rgb":
        return rgb_to_lab_normalized(((output.float() + 1) / 2).clamp(0, 1))[1]
    raise ValueError(f"unknown output space '{output_space}'")
