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

# the constants live in recolor.cie (torch-free, for the ONNX engine's numpy path): one definition
from .cie import (  # noqa: F401 (re-exported)
    AB_SCALE, CIE_EPSILON, CIE_F_THRESHOLD, CIE_LINEAR_SLOPE, D65_WHITE, L_SCALE, LINEAR_THRESHOLD, SRGB_THRESHOLD, STRIP_PIXELS,
    XYZ_FROM_RGB, thumbnail_chroma,
)


def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _apply_matrix(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    # (..., 3, H, W) x (3, 3) over the channel dimension
    return torch.einsum("ij,...jhw->...ihw", matrix, image)


def _check_three_channels(image: torch.Tensor, what: str) -> None:
    """One clear ValueError for an image that is not (..., 3, H, W), as kornia's conversions give,
    instead of einsum's complaint about its operands."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{what}: expected a torch.Tensor, not {type(image).__name__}")
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"{what}: expected a tensor of shape (..., 3, H, W), got {tuple(image.shape)}")


def _working_dtype(image: torch.Tensor) -> torch.Tensor:
    """Colour maths in half precision loses several Lab units: compute in float32 at least."""
    if not image.is_floating_point() or image.dtype in (torch.float16, torch.bfloat16):
        return image.float()
    return image


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    rgb = rgb.clamp(0.0, 1.0)
    return torch.where(rgb > SRGB_THRESHOLD, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    # Gamut clipping happens here: out-of-gamut linear values are clipped before the gamma curve.
    linear = linear.clamp(0.0, 1.0)
    # clamp_min keeps the pow's gradient finite at 0 (the branch is not taken there anyway)
    return torch.where(
        linear > LINEAR_THRESHOLD, 1.055 * linear.clamp_min(LINEAR_THRESHOLD).pow(1 / 2.4) - 0.055, 12.92 * linear
    )


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> Lab with L in [0, 100] and a, b roughly in [-110, 110]; (..., 3, H, W)."""
    _check_three_channels(rgb, "rgb_to_lab")
    rgb = _working_dtype(rgb)
    xyz = _apply_matrix(srgb_to_linear(rgb), _matrix(XYZ_FROM_RGB, rgb))
    white = torch.tensor(D65_WHITE, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > CIE_EPSILON, t.clamp_min(CIE_EPSILON).pow(1.0 / 3.0), CIE_LINEAR_SLOPE * t + 16.0 / 116.0)
    fx, fy, fz = f.unbind(dim=-3)
    lightness = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack((lightness, a, b), dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab -> sRGB in [0, 1], clipping colours that fall outside the sRGB gamut; (..., 3, H, W)."""
    _check_three_channels(lab, "lab_to_rgb")
    lab = _working_dtype(lab)
    lightness, a, b = lab.unbind(dim=-3)
    fy = (lightness + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = (fy - b / 200.0).clamp_min(0.0)  # as skimage: negative z is clipped to 0
    f = torch.stack((fx, fy, fz), dim=-3)
    t = torch.where(f > CIE_F_THRESHOLD, f.pow(3), (f - 16.0 / 116.0) / CIE_LINEAR_SLOPE)
    white = torch.tensor(D65_WHITE, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    xyz = t * white
    rgb_from_xyz = torch.linalg.inv(_matrix(XYZ_FROM_RGB, lab).double()).to(lab.dtype)
    return linear_to_srgb(_apply_matrix(xyz, rgb_from_xyz))


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """The L channel alone, shaped (..., 1, H, W); cheaper than a full conversion."""
    _check_three_channels(rgb, "rgb_to_lightness")
    rgb = _working_dtype(rgb)
    y = torch.einsum("j,...jhw->...hw", _matrix(XYZ_FROM_RGB[1], rgb), srgb_to_linear(rgb))
    f = torch.where(y > CIE_EPSILON, y.clamp_min(CIE_EPSILON).pow(1.0 / 3.0), CIE_LINEAR_SLOPE * y + 16.0 / 116.0)
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


# --- fast paths for 8-bit photos (inference and the batch pipeline) ---------------------------
# The same formulas as above, arranged for speed: table look-ups instead of the gamma curve,
# fewer passes, numpy where a decoding thread must not fight the model's thread for the GIL.

_RGB_FROM_XYZ: dict[torch.device, torch.Tensor] = {}
_LIGHTNESS_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def rgb_from_xyz_matrix(device: torch.device) -> torch.Tensor:
    """XYZ->linear sRGB with the D65 white folded in, computed once per device (in float64)."""
    if device not in _RGB_FROM_XYZ:
        matrix = torch.linalg.inv(torch.tensor(XYZ_FROM_RGB, dtype=torch.float64)) * torch.tensor(D65_WHITE, dtype=torch.float64)
        _RGB_FROM_XYZ[device] = matrix.float().to(device)
    return _RGB_FROM_XYZ[device]


def lab_to_srgb_levels(lightness: torch.Tensor, ab: torch.Tensor, matrix: torch.Tensor, peak: float = 255.0) -> torch.Tensor:
    """L (r, W) and ab (2, r, W) in Lab units -> sRGB levels 0..peak (r, W, 3), rounded, float.

    The formulas and gamut clipping of :func:`recolor.color.lab_to_rgb` then ``round(peak * rgb)``
    in fewer, cheaper passes (measured 1.2x): the white point sits in the matrix and the peak in the
    gamma curve, and both piecewise curves avoid ``where``. CIE's linear piece is the tangent of
    f^3 at the threshold f0, so f^3 for f > f0 and the tangent below is tangent(f) +
    (m^3 - tangent(m)) with m = max(f, f0); sRGB's linear piece lies above its power curve past
    the threshold and below it before, so the curve is the minimum of the two. It agrees with
    lab_to_rgb to within one level on a handful of pixels in 100,000 (rounding).
    """
    fy = (lightness + 16.0) / 116.0
    f = torch.stack((fy + ab[0] / 500.0, fy, (fy - ab[1] / 200.0).clamp_min_(0.0)))
    m = f.clamp_min(CIE_F_THRESHOLD)
    t = (m * m * m).sub_((m - 16.0 / 116.0).div_(CIE_LINEAR_SLOPE)).add_((f - 16.0 / 116.0).div_(CIE_LINEAR_SLOPE))
    linear = torch.einsum("ij,jhw->ihw", matrix, t).clamp_(0.0, 1.0)
    straight = linear * (12.92 * peak)
    curved = linear.clamp_min_(LINEAR_THRESHOLD).pow_(1 / 2.4).mul_(1.055 * peak).sub_(0.055 * peak)
    return torch.minimum(curved, straight).round_().permute(1, 2, 0)


def _lightness_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 256) luminance contribution of each 8-bit R, G, B value, and (256,) L of each grey value."""
    if device not in _LIGHTNESS_TABLES:
        levels = torch.arange(256, dtype=torch.float32) / 255.0
        luminance = torch.tensor(XYZ_FROM_RGB[1], dtype=torch.float32)[:, None] * srgb_to_linear(levels)[None]
        grey = rgb_to_lightness(levels.view(1, 1, 256).expand(3, 1, 256))[0, 0]
        _LIGHTNESS_TABLES[device] = (luminance.to(device), grey.to(device))
    return _LIGHTNESS_TABLES[device]


def lightness_from_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """CIE L (1, H, W) float32 of 8-bit sRGB pixels (H, W, C), C = 1 (grey) or 3, on their device.

    256-entry tables replace the sRGB gamma curve (the costly part of a float conversion); the
    cube root of the luminance remains. Computed in row strips: no full-size float RGB. (Gathers
    with int32 indices, channel by channel, measured fastest: 2.5x the float conversion on a CPU.)
    """
    height, width, channels = pixels.shape
    luminance, grey = _lightness_tables(pixels.device)
    out = torch.empty((1, height, width), dtype=torch.float32, device=pixels.device)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        strip = pixels[top : top + rows].to(torch.int32)
        target = out[0, top : top + rows]
        if channels == 1:
            target.copy_(grey.index_select(0, strip.flatten()).view_as(target))
            continue
        y = luminance[0].index_select(0, strip[..., 0].flatten())
        y.add_(luminance[1].index_select(0, strip[..., 1].flatten())).add_(luminance[2].index_select(0, strip[..., 2].flatten()))
        f = torch.where(y > CIE_EPSILON, y.clamp_min(CIE_EPSILON).pow_(1.0 / 3.0), CIE_LINEAR_SLOPE * y + 16.0 / 116.0)
        target.copy_(f.mul_(116.0).sub_(16.0).view_as(target))
    return out
