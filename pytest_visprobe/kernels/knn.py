"""Weighted k-nearest-neighbour classification on frozen features (DINO, Caron et al. 2021).

Features are L2-normalised, so the dot product is the cosine similarity; each test sample takes
its ``k`` most similar train samples, each neighbour votes for its class with weight
``exp(similarity / temperature)``, and the class with the largest summed vote wins (ties go to
the smaller class id). This is DINO's ``knn_classifier`` (eval_knn.py). Torch on any device:
test queries go through in chunks so the [chunk, N_train] similarity block stays bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: DINO's default: a sharp vote, the closest neighbours dominate
TEMPERATURE = 0.07
#: similarity entries per chunk of test queries (2^24 float32 = 64 MiB)
CHUNK_ELEMENTS = 1 << 24


def _as_features(x: "np.ndarray | torch.Tensor", name: str, device: "torch.device | str | None") -> "torch.Tensor":
    import torch

    t = torch.as_tensor(x)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} features must be a non-empty 2-D array [N, D], got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} features contain NaN or infinity; check the encoder output")
    t = t.to(device) if device is not None else t
    return torch.nn.functional.normalize(t, dim=1)  # an all-zero row stays zero


def knn_predict(
    train_x: "np.ndarray | torch.Tensor",
    train_y: np.ndarray,
    test_x: "np.ndarray | torch.Tensor",
    *,
    ks: Sequence[int],
    temperature: float = TEMPERATURE,
    n_classes: int | None = None,
    device: "torch.device | str | None" = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> dict[int, np.ndarray]:
    """Predicted class of every test sample for each ``k`` in ``ks``, keyed by the ``k`` asked for.

    A ``k`` above the train size uses every train sample (``min(k, N_train)``). One top-k
    search with the largest ``k`` serves every ``k``: the first ``k`` of a sorted top-K are the
    top-k. Labels are class ids ``0..n_classes-1`` (``n_classes`` defaults to the largest + 1).
    Computes in the dtype of the features (float32 for cached features; float64 stays float64).
    """
    import torch

    train_y = np.asarray(train_y)
    if train_y.ndim != 1 or not np.issubdtype(train_y.dtype, np.integer) or (train_y < 0).any():
        raise ValueError("train labels must be 1-D non-negative integer class ids")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"every k must be >= 1, got {list(ks)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    train = _as_features(train_x, "train", device)
    test = _as_features(test_x, "test", train.device).to(train.dtype)
    if train.shape[0] != train_y.shape[0]:
        raise ValueError(f"train labels must have one entry per sample: {train_y.shape[0]} vs {train.shape[0]}")
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in width: {train.shape[1]} vs {test.shape[1]}")
    n_classes = int(train_y.max()) + 1 if n_classes is None else int(n_classes)
    if train_y.max() >= n_classes:
        raise ValueError(f"train labels reach {int(train_y.max())}, but n_classes is {n_classes}")
    labels = torch.as_tensor(train_y, dtype=torch.long, device=train.device)
    used = {int(k): min(int(k), train.shape[0]) for k in ks}
    top = max(used.values())
    chunk = max(1, chunk_elements // train.shape[0])
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in used}
    for start in range(0, test.shape[0], chunk):
        sim = test[start:start + chunk] @ train.T
        values, indices = sim.topk(top, dim=1, largest=True, sorted=True)
        weights = (values / temperature).exp()
        neighbours = labels[indices]
        for k, k_used in used.items():
            votes = torch.zeros(sim.shape[0], n_classes, dtype=weights.dtype, device=train.device)
            votes.scatter_add_(1, neighbours[:, :k_used], weights[:, :k_used])
            preds[k].append(votes.argmax(dim=1))  # the first maximum: ties to the smaller class id
    return {k: torch.cat(p).cpu().numpy() for k, p in preds.items()}
