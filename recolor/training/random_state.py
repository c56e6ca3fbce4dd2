"""The process's random streams, saved with every checkpoint and restored on resume.

The data order and the crops are functions of (seed, epoch, index) already (``batches.py``,
``data.py``), but dropout's masks, noise inputs and anything a recipe draws come from torch's
global stream (and CUDA's), and Python's and NumPy's global generators are one import away from
any recipe: a resumed run equals the uninterrupted one only when all of them go on from where the
checkpoint left them. Their states become tensors (the generators' words) and JSON facts.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_random_streams() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON-able facts) of torch's CPU and CUDA streams, NumPy's and Python's global generators."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors |= {f"cuda.{index}": state for index, state in enumerate(torch.cuda.get_rng_state_all())}
    kind, words, position, has_gauss, cached_gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(words, dtype=np.int64))
    version, python_words, python_gauss = random.getstate()
    facts = {"numpy": [kind, int(position), int(has_gauss), float(cached_gauss)],
             "python": [version, list(python_words), python_gauss]}
    return tensors, facts


def restore_random_streams(tensors: dict[str, torch.Tensor], facts: dict[str, Any]) -> None:
    """Put back what :func:`capture_random_streams` saved (CUDA's streams when this process has as many GPUs)."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{index}"] for index in range(len(tensors)) if f"cuda.{index}" in tensors]
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    kind, position, has_gauss, cached_gauss = facts["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    version, python_words, python_gauss = facts["python"]
    random.setstate((version, tuple(python_words), python_gauss))
