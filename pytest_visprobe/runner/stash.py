"""Typed stash keys shared by the plugin and the runner (imports nothing heavy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_visprobe.runner.session import VisprobeSession  # noqa: F401 (the key's type)

#: the run's state, made on first use (runner/session.py)
SESSION_KEY = pytest.StashKey["VisprobeSession"]()
#: an item's records, encoders and datasets, carried to the controller on its report
ITEM_KEY = pytest.StashKey[dict[str, Any]]()
#: set when a test failed on a threshold/baseline verdict (which does not block --visprobe-bless)
VERDICT_FAILED_KEY = pytest.StashKey[bool]()
