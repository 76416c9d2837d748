"""One registry type behind every extension point: lazy entries, one duplicate rule, did-you-mean,
and one error tree under VisprobeError."""

from __future__ import annotations

import pytest

from pytest_visprobe.errors import RegistryError, UnknownNameError, VisprobeError
from pytest_visprobe.registry import Registry, resolve


def test_lazy_entries_import_on_first_get():
    registry: Registry[object] = Registry("thing")
    registry.register("join", "os.path:join")
    import os.path

    assert registry.get("join") is os.path.join
    assert resolve("os.path:join") is os.path.join
    with pytest.raises(RegistryError, match="module:attribute"):
        resolve("os.path.join")


def test_duplicates_are_errors_unless_replaced():
    registry: Registry[int] = Registry("thing")
    registry.register("a", 1)
    with pytest.raises(RegistryError, match="thing 'a' is already registered; pass replace=True"):
        registry.register("a", 2)
    registry.register("a", 3, replace=True)
    assert registry.get("a") == 3


def test_unknown_names_guess_and_list():
    registry: Registry[int] = Registry("probe", hint="Register one with register_probe().")
    registry.register("fewshot", 1)
    registry.register("clustering", 2)
    with pytest.raises(UnknownNameError) as info:
        registry.get("fewshots")
    message = str(info.value)
    assert message == ("unknown probe 'fewshots'. Did you mean 'fewshot'? Registered: fewshot, clustering. "
                       "Register one with register_probe().")
    assert isinstance(info.value, VisprobeError) and isinstance(info.value, KeyError)


def test_built_in_loaders_run_once_before_the_first_lookup():
    calls = []
    registry: Registry[int] = Registry("thing")
    registry.on_first_use(lambda: calls.append(1) or registry.register("builtin", 1))
    registry.register("mine", 2)  # registering does not load the built-ins
    assert calls == []
    assert registry.names() == ["mine", "builtin"] and calls == [1]
    assert "builtin" in registry and len(registry) == 2 and calls == [1]


def test_every_extension_point_uses_the_one_registry_type():
    from pytest_visprobe.runner.extensions import registries

    found = registries()
    for name in ("probes", "datasets", "dataset_kinds", "encoder_kinds", "text_models", "transformations",
                 "profiles"):
        assert isinstance(getattr(found, name), Registry), name


def test_dataset_errors_are_visprobe_errors():
    from pytest_visprobe.datasets import load_dataset
    from pytest_visprobe.errors import DatasetError

    assert issubclass(DatasetError, VisprobeError)
    with pytest.raises(DatasetError, match="unknown dataset 'digit'. Did you mean 'digits'"):
        load_dataset("digit")
    with pytest.raises(DatasetError, match="unknown kind 'imagefoldr'. Did you mean imagefolder:/x"):
        load_dataset("imagefoldr:/x")
