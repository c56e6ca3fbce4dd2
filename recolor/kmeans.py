"""Lloyd's k-means with k-means++ seeding, in torch: how the paper 004 baselines' 256 draws are
clustered into k colorizations (:mod:`recolor.diverse`; moved out of it unchanged)."""
from __future__ import annotations

import torch


def kmeans(points: torch.Tensor, k: int, seed: int = 0, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding: centres (k, D) and sizes (k,), largest cluster first."""
    points = points.float()
    count = points.shape[0]
    if not 1 <= k <= count:
        raise ValueError(f"cannot make {k} clusters of {count} points")
    generator = torch.Generator().manual_seed(seed)
    first = int(torch.randint(count, (1,), generator=generator))
    centres = points[first : first + 1]
    closest = torch.cdist(points, centres).pow(2).min(dim=1).values
    for _ in range(1, k):
        total = float(closest.sum())
        if total <= 0:  # fewer distinct points than k: repeat one (its cluster stays empty)
            pick = int(torch.randint(count, (1,), generator=generator))
        else:
            pick = int(torch.multinomial((closest / total).cpu(), 1, generator=generator))
        centres = torch.cat((centres, points[pick : pick + 1]))
        closest = torch.minimum(closest, torch.cdist(points, points[pick : pick + 1]).pow(2)[:, 0])
    assignment = torch.cdist(points, centres).argmin(dim=1)
    for _ in range(iterations):
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        sizes = torch.bincount(assignment, minlength=k).to(points.dtype)
        centres = torch.where(sizes[:, None] > 0, sums / sizes.clamp_min(1)[:, None], centres)
        updated = torch.cdist(points, centres).argmin(dim=1)
        if torch.equal(updated, assignment):
            break
        assignment = updated
    sizes = torch.bincount(assignment, minlength=k)
    order = torch.argsort(sizes, descending=True, stable=True)
    return centres[order], sizes[order]
