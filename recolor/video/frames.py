"""Frames in, colour frames out, through the photos' own path: each frame's lightness, the
network at its input size (``Colorizer.predict_ab``, batched), then the full-resolution join of
``recolor.inference.join_to_host``. Between the two, the optional :class:`TemporalStabiliser`
steadies the predicted ab along the motion."""
from __future__ import annotations

import numpy as np
import torch

from ..color import lightness_from_pixels
from ..inference import Colorizer, join_to_host
from .stabilise import TemporalStabiliser


class FrameColorizer:
    """Colorizes the frames of one video, in order, a batch at a time (one per video: the
    stabiliser carries state from frame to frame)."""

    def __init__(self, colorizer: Colorizer, stabiliser: TemporalStabiliser | None = None) -> None:
        if not isinstance(getattr(colorizer, "device", None), torch.device):
            colorizer = colorizer.torch_engine()  # the ONNX engine's colorizer: steadying works on torch tensors
        self.colorizer, self.stabiliser = colorizer, stabiliser

    @torch.no_grad()
    def colorize(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 RGB frames (H, W, 3) -> their colorizations, the same size and lightness."""
        if not frames:
            return []
        colorizer, device = self.colorizer, self.colorizer.device
        lightness = [lightness_from_pixels(torch.from_numpy(frame).to(device)) for frame in frames]
        small = torch.stack([colorizer.input_from_lightness(plane) for plane in lightness])
        # a model that takes hints gets its "no hint" inputs (a video's hints: issue 26's item 4, to do)
        extra = colorizer.hint_inputs([None] * len(frames), [(plane.shape[-1], plane.shape[-2]) for plane in lightness])
        ab_small = colorizer.predict_ab(small, extra)
        if self.stabiliser is not None:
            ab_small = self._steadied(small, ab_small)
        outputs = []
        for plane, field_small in zip(lightness, ab_small):
            out, ready = join_to_host(plane, field_small, device)
            if ready is not None:
                ready.synchronize()
            outputs.append(out.numpy())
        return outputs

    def _steadied(self, small: torch.Tensor, ab_small: torch.Tensor) -> torch.Tensor:
        grey = ((small[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        fields = ab_small.float().cpu().permute(0, 2, 3, 1).numpy()
        steady = np.stack([self.stabiliser(g, np.ascontiguousarray(f)) for g, f in zip(grey, fields)])
        return torch.from_numpy(steady).permute(0, 3, 1, 2).to(ab_small.device)
