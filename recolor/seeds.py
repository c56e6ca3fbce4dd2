"""The random seeds the commands and the API take: one range for all of them.

torch's generators take 64-bit seeds, numpy's and the per-photo seeds derived by adding an index
need headroom below that: 0 to 2**32 - 1 fits every one (a seed of 2**70 once failed every photo
of a diversity run, one by one, instead of being refused).
"""
from __future__ import annotations

MAX_SEED = 2**32 - 1


def check_seed(seed: int) -> int:
    """``seed``, or a one-line ValueError when it is out of range."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed}: out of range (0 to {MAX_SEED})")
    return seed
