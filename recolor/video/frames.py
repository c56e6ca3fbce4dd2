"""Frames in, colour frames out, through the photos' own path: each frame's lightness and the
hints in force at its number, the network at its input size (``Colorizer.predict_ab``, batched),
then the full-resolution join of ``recolor.inference.join_to_host``. Between the two, the optional
:class:`TemporalStabiliser` steadies the predicted ab along the motion, starting afresh where the
hints in force change."""
from __future__ import annotations

import numpy as np
import torch

from ..color import lightness_from_pixels
from ..hintpoints import Hints
from ..hintsfile import HintSchedule
from ..inference import Colorizer, join_to_host
from .stabilise import TemporalStabiliser


class FrameColorizer:
    """Colorizes the frames of one video, in order, a batch at a time (one per video: the
    stabiliser carries state from frame to frame)."""

    def __init__(self, colorizer: Colorizer, stabiliser: TemporalStabiliser | None = None, hints: HintSchedule | None = None) -> None:
        if not isinstance(getattr(colorizer, "device", None), torch.device):
            colorizer = colorizer.torch_engine()  # the ONNX engine's colorizer: steadying works on torch tensors
        self.colorizer, self.stabiliser = colorizer, stabiliser
        self.hints = hints if hints else None  # the video's hints, by frame number (issue 26, item 4)
        self.next_frame = 0
        self._hints_in_force: Hints | None = None

    @torch.no_grad()
    def colorize(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 RGB frames (H, W, 3) -> their colorizations, the same size and lightness."""
        if not frames:
            return []
        colorizer, device = self.colorizer, self.colorizer.device
        lightness = [lightness_from_pixels(torch.from_numpy(frame).to(device)) for frame in frames]
        small = torch.stack([colorizer.input_from_lightness(plane) for plane in lightness])
        # each frame the hints in force at its number, through the photos' own hint inputs (a
        # hint-taking model without hints gets its "no hint" inputs); the stabiliser then steadies them alike
        numbers = range(self.next_frame, self.next_frame + len(frames))
        self.next_frame += len(frames)
        frame_hints = [self.hints.at(number) if self.hints else None for number in numbers]
        extra = colorizer.hint_inputs(frame_hints, [(plane.shape[-1], plane.shape[-2]) for plane in lightness], small)
        ab_small = colorizer.predict_ab(small, extra)
        if self.stabiliser is not None:
            ab_small = self._steadied(small, ab_small, frame_hints)
        outputs = []
        for plane, field_small in zip(lightness, ab_small):
            out, ready = join_to_host(plane, field_small, device)
            if ready is not None:
                ready.synchronize()
            outputs.append(out.numpy())
        return outputs

    def _steadied(self, small: torch.Tensor, ab_small: torch.Tensor, frame_hints: list[Hints | None]) -> torch.Tensor:
        grey = ((small[:, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        fields = ab_small.float().cpu().permute(0, 2, 3, 1).numpy()
        steady = []
        for g, f, hints in zip(grey, fields, frame_hints):
            if hints != self._hints_in_force:  # by content: an empty section coming into force changes nothing
                self.stabiliser.restart()
                self._hints_in_force = hints
            steady.append(self.stabiliser(g, np.ascontiguousarray(f)))
        steady = np.stack(steady)
        return torch.from_numpy(steady).permute(0, 3, 1, 2).to(ab_small.device)
