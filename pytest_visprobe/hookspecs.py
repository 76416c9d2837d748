"""Hooks a ``conftest.py`` or a plugin package implements to extend pytest-visprobe.

Added with ``pytest_addhooks``. Each docstring's example is run by tests/test_hooks.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_visprobe.encoders.refs import EncoderRef
    from pytest_visprobe.report.scorecard import Scorecard
    from pytest_visprobe.runner.extensions import Registries


def pytest_visprobe_register(registries: "Registries", config: pytest.Config) -> None:
    """Register probes, datasets, encoder kinds, text models, transformations or profiles.

    Called once per process, before the first visprobe test is collected (and before
    ``--visprobe-list``), so what you register is listed, validated and usable everywhere::

        def pytest_visprobe_register(registries):
            registries.probes.register("my_probe", MY_PROBE_SPEC)  # a ProbeSpec
            registries.encoder_kinds.register("mykind", "my encoders: mykind:NAME")
    """


@pytest.hookspec(firstresult=True)
def pytest_visprobe_load_encoder(ref: "EncoderRef") -> Any:
    """Load the encoder for an ``--encoder`` reference, or return None to leave it to others.

    Called before the built-in loaders, for every reference; ``ref.kind`` is the prefix
    (``file``, ``timm``, ... or one you registered in ``registries.encoder_kinds``) and
    ``ref.target`` what follows it. Return an ``Encoder`` or a ``torch.nn.Module``::

        def pytest_visprobe_load_encoder(ref):
            if ref.kind == "mykind":
                return build_my_model(ref.target)
    """


@pytest.hookspec(firstresult=True)
def pytest_visprobe_make_dataset(spec: str, seed: int, limit: int | None) -> Any:
    """Make the dataset for a ``--visprobe-dataset``/profile spec, or return None to leave it to others.

    Called before the built-in datasets for every spec; a spec ``KIND:ARG`` is accepted when
    ``KIND`` is registered in ``registries.dataset_kinds``::

        def pytest_visprobe_make_dataset(spec, seed, limit):
            if spec.startswith("mydata:"):
                return load_my_dataset(spec.partition(":")[2], seed=seed)  # a Dataset
    """


def pytest_visprobe_scorecard(scorecard: "Scorecard", json_path: Path, markdown_path: Path,
                              config: pytest.Config) -> None:
    """Called on the controller with the finished scorecard, after it was written (e.g. to upload it)::

        def pytest_visprobe_scorecard(scorecard, json_path):
            upload(json_path, failing=[r for r in scorecard.records if not r.passed])
    """
