"""Preflight draws its images from the first dataset that is on disk, and says which: a new user's
``--visprobe-profile=standard`` run with no real datasets must not fail six preflight checks with
``DatasetNotFoundError: CIFAR-10 is not on disk``."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pytest_visprobe.runner.options import DATA_ROOT_OPTION, DATASET_OPTION, ENCODER_OPTION, PROFILE_OPTION


def _preflight_sources(suite, *args: str) -> set[str]:
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_preflight.py", "--junitxml=junit.xml", *args)
    result.assert_outcomes(passed=6)
    tree = ET.parse(suite.pytester.path / "junit.xml")
    return {p.get("value") for p in tree.iter("property") if p.get("name") == "visprobe.preflight.dataset"}


def test_standard_profile_without_data_uses_embedded_shapes(suite, tmp_path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert _preflight_sources(suite, f"{PROFILE_OPTION}=standard", f"{DATA_ROOT_OPTION}={empty}") == {"shapes"}


def test_first_present_label_dataset_is_used(suite, tmp_path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    sources = _preflight_sources(suite, f"{DATASET_OPTION}=label=cifar10", f"{DATASET_OPTION}=label=digits",
                                 f"{DATA_ROOT_OPTION}={empty}")
    assert sources == {"digits"}
