"""CIE Lab without torch: the colour constants (their one definition: :mod:`recolor.color`'s torch
functions import them from here) and numpy versions of the per-pixel steps of a colorization.

The ONNX engine (:mod:`recolor.onnx_engine`) runs on numpy alone so that a one-photo
``recolor colorize`` never pays torch's import (seconds; see benchmarks/README.md). Its steps are
those of :mod:`recolor.inference`, written for numpy and tested against the torch functions and
scikit-image (tests/test_cie.py):

* :func:`lightness_from_pixels`: 8-bit sRGB -> CIE L by table look-up, as
  :func:`recolor.color.lightness_from_pixels`;
* :func:`lightness_from_rgb`: float sRGB in [0, 1] (16-bit and float photos) -> L;
* :func:`network_input`: full-size L -> the network's normalised square input, antialiased
  bilinear (Pillow's resampling, which torch's ``antialias=True`` was written to match);
* :func:`join_levels`: the small predicted ab upsampled (bilinear, half-pixel centres) and joined
  to the full-size L, converted to sRGB levels in row strips, as
  :func:`recolor.inference.join_to_host` (arranged for numpy: resampling as matrix products,
  channels last, the 8-bit gamma curve as a table; 3x faster than the formulas written as torch's).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# sRGB (linear) -> XYZ, as in skimage.color.colorconv.xyz_from_rgb
XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
D65_WHITE = (0.95047, 1.0, 1.08883)
CIE_EPSILON = 0.008856  # (6/29)^3, the CIE threshold between the cube root and the linear part
CIE_LINEAR_SLOPE = 7.787  # kappa / 116 (kappa = 24389/27 = 903.3): the slope of f(t) below CIE_EPSILON
CIE_F_THRESHOLD = 0.2068966  # f(CIE_EPSILON): threshold on the inverse side
SRGB_THRESHOLD = 0.04045  # sRGB level below which the curve is linear (slope 1/12.92)
LINEAR_THRESHOLD = 0.0031308  # the same threshold on the linear side

# Normalisation of paper 002, section 4.1: the network sees L/50 - 1 and predicts ab/110.
L_SCALE = 50.0
AB_SCALE = 110.0

# Per-pixel work runs in strips of this many pixels: small enough that the dozen elementwise
# passes over a strip stay in the CPU's cache (measured: 2x faster than 2-megapixel strips on a
# 3-megapixel join), large enough that kernel launches do not dominate on a GPU.
STRIP_PIXELS = 1 << 18


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    rgb = np.clip(rgb, 0.0, 1.0)
    return np.where(rgb > SRGB_THRESHOLD, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def lab_f(t: np.ndarray) -> np.ndarray:
    """CIE's f(t): the cube root above CIE_EPSILON, its tangent line below."""
    return np.where(t > CIE_EPSILON, np.cbrt(np.maximum(t, CIE_EPSILON)), CIE_LINEAR_SLOPE * t + 16.0 / 116.0)


LINEAR_OF_8_BIT_LEVEL = srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0)
_XYZ_OVER_WHITE = (np.array(XYZ_FROM_RGB) / np.array(D65_WHITE)[:, None]).T
# (3, 256) luminance Y contributed by each 8-bit R, G, B level, in float32 as torch's tables
_LUMINANCE_OF_LEVEL = (np.array(XYZ_FROM_RGB[1], dtype=np.float32)[:, None] * LINEAR_OF_8_BIT_LEVEL.astype(np.float32)[None])
_L_OF_GREY_LEVEL = (116.0 * lab_f(_LUMINANCE_OF_LEVEL.sum(0, dtype=np.float64)) - 16.0).astype(np.float32)
# XYZ -> linear sRGB with the D65 white folded in (computed in float64)
RGB_FROM_XYZ_WHITE = (np.linalg.inv(np.array(XYZ_FROM_RGB)) * np.array(D65_WHITE)).astype(np.float32)


def thumbnail_chroma(rgb: np.ndarray) -> float:
    """Mean Lab chroma of a small uint8 RGB array: :func:`recolor.imageio.mean_chroma`'s figure.

    The same formulas in a handful of numpy calls: a decoding thread that issued mean_chroma's
    thirty small torch calls would fight the model's thread for the GIL at every one of them.
    """
    t = LINEAR_OF_8_BIT_LEVEL[rgb].reshape(-1, 3) @ _XYZ_OVER_WHITE
    f = lab_f(t)
    a, b = 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])
    return float(np.sqrt(a * a + b * b).mean()) if len(a) else 0.0


def lightness_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """CIE L (H, W) float32 of 8-bit sRGB pixels (H, W, C), C = 1 (grey) or 3, in row strips."""
    height, width, channels = pixels.shape
    if channels == 1:
        return _L_OF_GREY_LEVEL[pixels[..., 0]]
    out = np.empty((height, width), dtype=np.float32)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        strip = pixels[top:top + rows]
        y = _LUMINANCE_OF_LEVEL[0][strip[..., 0]]
        y += _LUMINANCE_OF_LEVEL[1][strip[..., 1]]
        y += _LUMINANCE_OF_LEVEL[2][strip[..., 2]]
        out[top:top + rows] = 116.0 * lab_f(y) - 16.0
    return out


def lightness_from_rgb(array: np.ndarray) -> np.ndarray:
    """CIE L (H, W) float32 of a float sRGB array (H, W[, 3]) in [0, 1] (a grey one: R = G = B), in row strips."""
    height, width = array.shape[:2]
    out = np.empty((height, width), dtype=np.float32)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    weights = np.array(XYZ_FROM_RGB[1], dtype=np.float32)
    for top in range(0, height, rows):
        linear = srgb_to_linear(array[top:top + rows].astype(np.float32))
        y = linear if linear.ndim == 2 else linear @ weights
        out[top:top + rows] = 116.0 * lab_f(y) - 16.0
    return out


def network_input(lightness: np.ndarray, size: int) -> np.ndarray:
    """Full-size L (H, W) in 0..100 -> the network's normalised input (1, size, size) float32.

    Pillow's bilinear resize of a float image: antialiased when shrinking (its support grows with
    the scale), as ``F.interpolate(..., mode="bilinear", antialias=True)``, which follows it."""
    small = Image.fromarray(np.ascontiguousarray(lightness, dtype=np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return (np.asarray(small, dtype=np.float32) / L_SCALE - 1.0)[None]


def interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) float32 weights of align_corners=False bilinear resampling along one
    axis (half-pixel centres, borders clamped), two non-zeros a row: resampling is then a matrix
    product, which BLAS does several times faster than numpy's gathers and blends."""
    position = np.clip((np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5, 0, size_in - 1)
    first = np.floor(position).astype(np.intp)
    weight = position - first
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, first), 1.0 - weight)
    np.add.at(matrix, (rows, np.minimum(first + 1, size_in - 1)), weight)
    return matrix


def _level_of_linear_8_bit() -> np.ndarray:
    """round(255 * sRGB(x)) for x = i / 65535: the gamma curve as a table for 8-bit outputs (its
    step moves a level by at most 0.05, so a level differs from the exact curve's only where the
    exact value sits at a rounding edge)."""
    linear = np.arange(65536, dtype=np.float64) / 65535
    curved = 1.055 * np.maximum(linear, LINEAR_THRESHOLD) ** (1 / 2.4) - 0.055
    return np.rint(255 * np.minimum(curved, 12.92 * linear)).astype(np.uint8)


_LEVEL_OF_LINEAR = _level_of_linear_8_bit()


def linear_rgb_from_lab(lightness: np.ndarray, ab: np.ndarray, clip: bool = True) -> np.ndarray:
    """L (r, W) and ab (2, r, W) in Lab units -> linear sRGB (3, r, W) float32, clipped to [0, 1]
    (the formulas and gamut clipping of :func:`recolor.color.lab_to_rgb`); planes stay contiguous
    and the XYZ -> RGB matrix is one matrix product. ``clip=False``: neither z nor the result is
    clipped, so a value outside [0, 1] says the colour is outside sRGB (:func:`ab_within_gamut`)."""
    f = np.empty((3, *lightness.shape), dtype=np.float32)
    fy = f[1]
    np.multiply(lightness, np.float32(1 / 116), out=fy)
    fy += np.float32(16 / 116)
    np.multiply(ab[0], np.float32(1 / 500), out=f[0])
    f[0] += fy
    np.multiply(ab[1], np.float32(-1 / 200), out=f[2])
    f[2] += fy
    if clip:
        np.maximum(f[2], 0.0, out=f[2])  # as skimage: negative z is clipped to 0
    above = f > np.float32(CIE_F_THRESHOLD)
    cube = f * f
    cube *= f
    f -= np.float32(16 / 116)  # below the threshold, CIE's linear piece
    f *= np.float32(1 / CIE_LINEAR_SLOPE)
    np.copyto(f, cube, where=above)
    linear = (RGB_FROM_XYZ_WHITE @ f.reshape(3, -1)).reshape(f.shape)
    return np.clip(linear, 0.0, 1.0, out=linear) if clip else linear


def srgb_levels(linear: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """Linear sRGB in [0, 1] -> sRGB levels of ``dtype``, rounded: a table look-up for 8 bits, the
    curve itself (the minimum of its two pieces, as :func:`recolor.color.lab_to_srgb_levels`) for 16."""
    if dtype == np.uint8:
        index = linear * np.float32(65535)
        index += np.float32(0.5)
        return _LEVEL_OF_LINEAR.take(index.astype(np.int32))
    peak = np.float32(65535)
    straight = linear * (np.float32(12.92) * peak)
    curved = np.power(np.maximum(linear, np.float32(LINEAR_THRESHOLD)), np.float32(1 / 2.4))
    curved *= np.float32(1.055) * peak
    curved -= np.float32(0.055) * peak
    return np.rint(np.minimum(curved, straight, out=curved)).astype(dtype)


def join_levels(lightness: np.ndarray, ab_small: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """Full-size L (H, W) + the small normalised ab (2, h, w) -> sRGB (H, W, 3) of ``dtype`` (uint8,
    or uint16: the float conversion rounded to 16 bits), in row strips: no full-size float ab or RGB.

    The ab is upsampled bilinearly with half-pixel centres and border clamping (what
    ``F.interpolate(..., align_corners=False)`` does), separably: along the width once for the
    few rows of the small field, then along the height per strip, each a matrix product."""
    height, width = lightness.shape
    ab = ab_small.astype(np.float32) * np.float32(AB_SCALE)
    ab_rows = ab @ interpolation_matrix(width, ab.shape[-1]).T  # (2, h, W)
    down = interpolation_matrix(height, ab.shape[-2])
    out = np.empty((height, width, 3), dtype=dtype)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip_ab = down[top:bottom] @ ab_rows  # (2, r, W)
        out[top:bottom] = srgb_levels(linear_rgb_from_lab(lightness[top:bottom], strip_ab), dtype).transpose(1, 2, 0)
    return out


def ab_within_gamut(lightness: np.ndarray, ab: np.ndarray, share: float = 1.0, steps: int = 24) -> np.ndarray:
    """ab (2, ...) in Lab units with their chroma cut to at most ``share`` of the largest chroma
    sRGB can show at the same hue and ``lightness`` (...), found by bisection along the hue. A
    pure blue at a light grey's lightness becomes a pale blue that exists there."""
    lightness = np.asarray(lightness, dtype=np.float64)
    a, b = (np.asarray(channel, dtype=np.float64) for channel in ab)
    chroma = np.hypot(a, b)
    unit_a, unit_b = np.where(chroma > 0, a / np.maximum(chroma, 1e-12), 0.0), np.where(chroma > 0, b / np.maximum(chroma, 1e-12), 0.0)
    low, high = np.zeros_like(chroma), np.full_like(chroma, 200.0)  # chroma in gamut at low, out at high (Lab's ab span +-128)
    for _ in range(steps):
        middle = (low + high) / 2
        rgb = linear_rgb_from_lab(lightness, np.stack((unit_a * middle, unit_b * middle)), clip=False)
        fits = np.all((rgb >= 0.0) & (rgb <= 1.0), axis=0)
        low, high = np.where(fits, middle, low), np.where(fits, high, middle)
    kept = np.minimum(chroma, share * low)
    return np.stack((unit_a * kept, unit_b * kept))
