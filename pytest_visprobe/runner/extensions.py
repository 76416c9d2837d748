"""Every extension point in one place, handed to ``pytest_visprobe_register`` implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_visprobe.registry import Registry

_DONE_KEY = pytest.StashKey[bool]()


@dataclass(frozen=True)
class Registries:
    """The registries a plugin or conftest adds to (each a ``Registry``: ``register``, ``get``, ...)."""

    probes: Registry[Any]
    datasets: Any  # name -> dataset entry (register with pytest_visprobe.datasets.register_dataset)
    dataset_kinds: Registry[str]
    encoder_kinds: Registry[Any]
    text_models: Registry[Any]
    transformations: Any
    profiles: Registry[Any]


def registries() -> Registries:
    from pytest_visprobe.datasets import DATASETS, DATASET_KINDS
    from pytest_visprobe.datasets.transformations import TRANSFORMATIONS
    from pytest_visprobe.encoders.kinds import ENCODER_KINDS
    from pytest_visprobe.encoders.text import TEXT_MODELS
    from pytest_visprobe.probes.spec import PROBES
    from pytest_visprobe.profiles import PROFILES

    return Registries(probes=PROBES, datasets=DATASETS, dataset_kinds=DATASET_KINDS, encoder_kinds=ENCODER_KINDS,
                      text_models=TEXT_MODELS, transformations=TRANSFORMATIONS, profiles=PROFILES)


def register_extensions(config: pytest.Config) -> None:
    """Call every ``pytest_visprobe_register`` once per session; what they register is removed
    again when the session ends (so a conftest's probe does not leak into the next in-process run)."""
    if config.stash.get(_DONE_KEY, False):
        return
    config.stash[_DONE_KEY] = True
    found = registries()
    kept = [(registry, registry.snapshot()) for registry in vars(found).values() if isinstance(registry, Registry)]

    def restore() -> None:
        for registry, snapshot in kept:
            registry.restore(snapshot)

    config.add_cleanup(restore)
    config.hook.pytest_visprobe_register(registries=found, config=config)
