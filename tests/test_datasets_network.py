"""Real downloads of the real datasets: off by default, run with ``pytest -m network tests/``.

They fetch into ``$VISPROBE_DATA_ROOT`` when set (so a second run reuses the files), else a
temporary folder, and check the official sizes, which tiny test files cannot.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pytest_visprobe.datasets import load_dataset

pytestmark = pytest.mark.network


@pytest.fixture(autouse=True)
def _only_when_selected(request: pytest.FixtureRequest) -> None:
    if "network" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("downloads real datasets; run with: pytest -m network tests/test_datasets_network.py")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("VISPROBE_DATA_ROOT")
    return Path(configured) if configured else tmp_path_factory.mktemp("real-data")


@pytest.mark.parametrize("name, n_train, n_test, n_classes, size", [
    ("mnist", 60_000, 10_000, 10, 28),
    ("fashion_mnist", 60_000, 10_000, 10, 28),
    ("cifar10", 50_000, 10_000, 10, 32),
    ("cifar100", 50_000, 10_000, 100, 32),
    ("svhn", 73_257, 26_032, 10, 32),
    ("stl10", 5_000, 8_000, 10, 96),
])
def test_torchvision_download_gives_the_official_splits(data_root, name, n_train, n_test, n_classes, size):
    ds = load_dataset(name, root=data_root, download=True)
    assert (len(ds.split("train")), len(ds.split("test"))) == (n_train, n_test)
    assert len(ds.class_names) == n_classes
    assert ds.split("test").images.get([0, 1]).shape == (2, size, size, 3)
    assert set(np.unique(ds.split("test").labels)) == set(range(n_classes))
    assert load_dataset(name, root=data_root).fingerprint == ds.fingerprint  # no second download


def test_cub_download_gives_the_official_split_and_attributes(data_root):
    ds = load_dataset("cub", root=data_root, download=True, image_size=64)
    assert (len(ds.split("train")), len(ds.split("test"))) == (5_994, 5_794)
    assert len(ds.class_names) == 200 and ds.split("train").attributes.shape == (5_994, 312)
    assert ds.split("test").images.get([0]).shape == (1, 64, 64, 3)
