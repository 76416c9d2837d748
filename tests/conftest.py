"""Shared helpers for the end-to-end tests: a copy of the shipped suites and tiny encoders."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

# pytester's in-process runs drop modules first imported inside them, and numpy/torch cannot be
# imported twice in one process: import the heavy stack here, once, before any inline run.
import numpy  # noqa: F401,E402
import PIL.Image  # noqa: F401,E402
import safetensors.torch  # noqa: F401,E402
import scipy.fft  # noqa: F401,E402
import scipy.ndimage  # noqa: F401,E402
import scipy.sparse  # noqa: F401,E402
import skimage.draw  # noqa: F401,E402
import sklearn.linear_model  # noqa: F401,E402
import sklearn.model_selection  # noqa: F401,E402
import skimage.data  # noqa: F401,E402
import tabulate  # noqa: F401,E402
import torch  # noqa: F401,E402
import torch._dynamo  # noqa: F401,E402  (pulls in triton on CUDA builds; its extension aborts on re-import)

# transformers >= 5.25 swaps layers for hub kernels when the `kernels` package is installed; the
# plugin loads models with their own layers (encoders/transformers_loading.py), and the tests'
# reference computations, which call transformers directly, must do the same. (Kernelizing also
# breaks under pytester's module snapshots: two copies of kernels' Mode enum end up compared.)
os.environ.setdefault("USE_HUB_KERNELS", "NO")

REPO = Path(__file__).resolve().parents[1]

#: No weights at all: 6×6 average-pooled pixels. Fast, deterministic, and good enough on digits.
POOLED_PIXELS = """
    from torch import nn

    def create_encoder():
        return nn.Sequential(nn.AdaptiveAvgPool2d(6), nn.Flatten())
"""

#: A seeded random conv net through the Encoder API, with a feature map.
SEEDED_CONV = """
    import torch
    from torch import nn
    from pytest_visprobe import Encoder

    class SeededConv(Encoder):
        input_size = (32, 32)

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())

        def feature_map(self, images):
            images = nn.functional.interpolate(images, size=self.input_size, mode="bilinear")
            return self.body(images - 0.5)

        def embed(self, images):
            return self.feature_map(images).mean(dim=(2, 3))

    def create_encoder():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return SeededConv()
"""


class Suite:
    """A pytester project holding a copy of suites/ and helpers to run it and read its scorecard."""

    def __init__(self, pytester: pytest.Pytester, cache_dir: Path) -> None:
        self.pytester = pytester
        self.cache_dir = cache_dir
        shutil.copytree(REPO / "suites", pytester.path / "suites")
        # Each test states the thresholds it is about; the shipped floors are tested on their own.
        (pytester.path / "suites" / "visprobe_thresholds.toml").unlink()
        self.encoder("pooled.py", POOLED_PIXELS)
        self.encoder("conv.py", SEEDED_CONV)

    def encoder(self, name: str, source: str) -> str:
        path = self.pytester.path / name
        path.write_text(textwrap.dedent(source))
        return name

    def run(self, *args: str, subprocess: bool = False, limit: int | None = 150) -> pytest.RunResult:
        """Run pytest in the project; ``limit`` caps each split (--visprobe-limit) to stay fast."""
        full = ["-p", "no:cacheprovider", f"--visprobe-cache-dir={self.cache_dir}", *args]
        if limit is not None:
            full.append(f"--visprobe-limit={limit}")
        if subprocess:
            return self.pytester.runpytest_subprocess(*full)
        return self.pytester.runpytest(*full)

    def scorecard(self, report_dir: str = "visprobe-report") -> dict:
        return json.loads((self.pytester.path / report_dir / "scorecard.json").read_text())

    def values(self, report_dir: str = "visprobe-report") -> dict[tuple[str, str, str, str], float]:
        card = self.scorecard(report_dir)
        return {(r["encoder"], r["probe"], r["dataset"], r["metric"]): r["value"] for r in card["records"]}


@pytest.fixture
def suite(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> Suite:
    return Suite(pytester, tmp_path_factory.mktemp("feature-cache"))


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature cache shared by tests that only read results, to keep the suite fast."""
    return tmp_path_factory.mktemp("shared-feature-cache")
