"""Spreading a point's colour over the object it falls on, by the encoder's own features.

A hint-taking network learns from simulated points to carry their colour along; on a CPU budget
it learns the spot well and the object slowly. This module gives it the object directly: every
cell of the 1/4-resolution grid takes the colours of the hinted cells that *look like it* to the
ImageNet encoder (cosine similarity of its multi-scale features, which tell a suit from the wall
behind it) and lie near it, as in non-local / attention propagation (Zhang et al. 2017's network
learns the same end to end). What it gives is a product-of-experts term, ``gain x confidence x
log q_spread``, added to the logits: where no hinted cell is similar, the confidence is ~0 and the
prediction is the network's own.

Three learnt scalars, each stored scaled so that Adam's steps of about the learning rate move it
in tens of steps: the sharpness of the feature similarity, the distance fall-off, and the gain
(zero-started: a network fine-tuned from one without this module starts out as it was).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_HINTED_CELLS = 256  # hinted cells attended to (a point covers about 2x2 cells): ONNX needs a fixed bound
SCALE = 100.0


def affinity_features(skips: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """(B, C, h, w) unit vectors: the encoder's features at 1/4, 1/8 and 1/16, each normalised,
    upsampled to ``size`` and joined (equal weight per scale), then normalised again."""
    parts = []
    for skip in skips[1:4]:
        feature = F.normalize(skip.float(), dim=1)
        if feature.shape[-2:] != size:
            feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        parts.append(feature)
    return F.normalize(torch.cat(parts, dim=1), dim=1)


class HintSpread(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.zeros(1))  # x SCALE
        self.sharpness = nn.Parameter(torch.zeros(1))  # log, / 10 scale: exp(log 20 + 10 s)
        self.falloff = nn.Parameter(torch.zeros(1))  # log, likewise: exp(log 4 + 10 f)

    def forward(self, skips: list[torch.Tensor], encoded: torch.Tensor, hinted: torch.Tensor) -> torch.Tensor:
        """The term to add to the logits (B, Q, h, w), from the encoded hints (B, Q, h, w) and the
        hinted mask (B, 1, h, w) at the head's resolution."""
        batch, bins, height, width = encoded.shape
        cells = height * width
        features = affinity_features(skips, (height, width)).flatten(2)  # (B, C, N)
        keys = min(MAX_HINTED_CELLS, cells)
        present, index = hinted.flatten(1).float().topk(keys, dim=1)  # hinted cells first; padding has present 0
        key_features = torch.gather(features, 2, index[:, None, :].expand(-1, features.shape[1], -1))  # (B, C, K)
        key_colours = torch.gather(encoded.flatten(2).float(), 2, index[:, None, :].expand(-1, bins, -1))  # (B, Q, K)
        similarity = torch.einsum("bcn,bck->bnk", features, key_features)  # (B, N, K)
        rows = torch.arange(height, device=encoded.device, dtype=torch.float32) / max(height, width)
        columns = torch.arange(width, device=encoded.device, dtype=torch.float32) / max(height, width)
        grid = torch.stack(torch.meshgrid(rows, columns, indexing="ij"), dim=-1).reshape(cells, 2)  # (N, 2)
        key_positions = grid[index]  # (B, K, 2)
        distance2 = (grid[None, :, None, :] - key_positions[:, None, :, :]).pow(2).sum(-1)  # (B, N, K)
        sharpness = torch.exp(math.log(20.0) + 10.0 * self.sharpness)
        falloff = torch.exp(math.log(4.0) + 10.0 * self.falloff)
        affinity = torch.exp(sharpness * (similarity - 1.0) - falloff * distance2) * present[:, None, :]
        total = affinity.sum(-1)  # (B, N)
        spread = torch.einsum("bnk,bqk->bqn", affinity, key_colours) / (total[:, None, :] + 1e-6)
        confidence = affinity.amax(-1)  # 1 on a hinted cell, ~0 where nothing hinted looks alike
        term = (SCALE * self.gain) * confidence[:, None, :] * torch.log(spread + 1e-3)
        return term.reshape(batch, bins, height, width).to(encoded.dtype)
