"""The identity: the reference class of the bank."""

from __future__ import annotations

import numpy as np

from pytest_visprobe.datasets.transformations.common import builtin


@builtin("identity", "identity")
def identity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unchanged image (no parameters): the reference class."""
    return image.copy()
