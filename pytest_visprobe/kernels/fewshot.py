"""Few-shot prototype classification on frozen features (PROTOCOLS.md A, Devillers et al. 2021).

Per trial: draw ``n_shot`` training samples per class at random, prototype = mean of their
L2-normalised features (not re-normalised, as in the study), assign every L2-normalised test
feature to the prototype with the largest dot product, score top-1 over the whole test split.
Pure numpy: the work is one [M, D] x [D, K] matmul per trial, which BLAS does as fast as torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FewShotResult:
    """Top-1 accuracy over trials. ``std`` is the sample std (ddof=1) unless asked otherwise.

    ``outcomes`` [M, trials] bool: whether trial t classified test sample i correctly. Its mean
    is ``mean`` exactly; resampling its rows (test samples) and columns (support sets) together
    gives an interval with both parts of the uncertainty. ``per_sample`` [M] is its row mean.
    """

    n_shot: int
    mean: float
    std: float
    per_trial: tuple[float, ...]
    outcomes: np.ndarray = field(default=None, repr=False, compare=False)

    @property
    def per_sample(self) -> np.ndarray:
        return self.outcomes.mean(axis=1)


def _as_split(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} features must be a non-empty 2-D array [N, D], got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} features must be numeric, got dtype {x.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} labels must be 1-D with one entry per sample: {y.shape} vs {x.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers, got dtype {y.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} features contain NaN or infinity; check the encoder output")
    return x, y


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-normalised float32 copy; an all-zero row stays zero instead of becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, np.float32(1e-12))


def support_indices(train_y: np.ndarray, *, n_shot: int, trial: int, seed: int = 0) -> np.ndarray:
    """Indices into the train split of one trial's support set, [K * n_shot], class-sorted.

    Trial ``t`` draws from ``SeedSequence(seed, spawn_key=(t,))``, i.e. the t-th child of
    ``SeedSequence(seed).spawn``: each trial's draw depends only on (seed, t), so changing the
    number of trials does not change the trials already run. Within each class (sorted ids) the
    ``n_shot`` samples are drawn without replacement.
    """
    train_y = np.asarray(train_y)
    if n_shot < 1:
        raise ValueError(f"n_shot must be >= 1, got {n_shot}")
    classes, counts = np.unique(train_y, return_counts=True)
    short = classes[counts < n_shot]
    if short.size:
        detail = ", ".join(f"{c} ({counts[classes == c][0]})" for c in short[:10])
        raise ValueError(
            f"{n_shot}-shot needs {n_shot} training samples per class, but "
            f"{short.size} class(es) have fewer: {detail}{', ...' if short.size > 10 else ''}"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(trial,)))
    order = np.argsort(train_y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    picks = [
        order[bounds[k] + rng.choice(counts[k], size=n_shot, replace=False)]
        for k in range(classes.size)
    ]
    return np.concatenate(picks)


def fewshot_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    n_shot: int,
    trials: int = 10,
    seed: int = 0,
    ddof: int = 1,
) -> FewShotResult:
    """Nearest-prototype top-1 accuracy with ``n_shot`` training samples per class.

    ``std`` is the sample standard deviation over trials (``ddof=1``, NaN for one trial): the
    trials are a sample of possible support sets, and with 10 of them the population formula
    understates the spread by 5 %. The study's code used ``np.std`` (``ddof=0``); pass
    ``ddof=0`` for its std formula. Every test label must be a train class. Classes with
    fewer than ``n_shot`` training samples raise ValueError. Ties between prototypes go to the
    smaller class id.
    """
    train_x, train_y = _as_split(train_x, train_y, "train")
    test_x, test_y = _as_split(test_x, test_y, "test")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_x.shape[1]} vs {test_x.shape[1]}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 (population std) or 1 (sample std), got {ddof}")
    classes = np.unique(train_y)
    unknown = np.setdiff1d(np.unique(test_y), classes)
    if unknown.size:
        raise ValueError(
            f"test labels {unknown[:10].tolist()} have no training samples, so no prototype can "
            "ever predict them; few-shot needs the same classes in both splits"
        )
    target = np.searchsorted(classes, test_y)  # test labels as prototype rows
    test_n = _l2_normalize(test_x)
    n_classes = classes.size
    outcomes = np.zeros((test_y.shape[0], trials), dtype=bool)
    for t in range(trials):
        idx = support_indices(train_y, n_shot=n_shot, trial=t, seed=seed)
        support = _l2_normalize(train_x[idx]).reshape(n_classes, n_shot, -1)
        prototypes = support.mean(axis=1)  # not re-normalised (the study's rule)
        pred = np.argmax(test_n @ prototypes.T, axis=1)
        outcomes[:, t] = pred == target
    accs = outcomes.mean(axis=0).tolist()
    per_trial = tuple(accs)
    std = float(np.std(accs, ddof=ddof)) if len(accs) > ddof else float("nan")
    return FewShotResult(n_shot=int(n_shot), mean=float(np.mean(accs)), std=std, per_trial=per_trial,
                         outcomes=outcomes)
