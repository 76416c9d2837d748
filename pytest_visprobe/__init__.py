"""pytest-visprobe: what a frozen vision encoder's representations encode, as pytest tests.

Importing this package imports neither torch nor numpy; the names below load on first access.
Extend it through these names or the hooks in ``pytest_visprobe.hookspecs``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "Encoder": "pytest_visprobe.encoders.base",
    "ModuleEncoder": "pytest_visprobe.encoders.base",
    "Metric": "pytest_visprobe.probes.spec",
    "MetricSpec": "pytest_visprobe.probes.spec",
    "ProbeSpec": "pytest_visprobe.probes.spec",
    "register_probe": "pytest_visprobe.probes.spec",
    "get_probe": "pytest_visprobe.probes.spec",
    "list_probes": "pytest_visprobe.probes.spec",
    "ProbeContext": "pytest_visprobe.runner.context",
    "Registry": "pytest_visprobe.registry",
    "register_dataset": "pytest_visprobe.datasets",
    "register_transformation": "pytest_visprobe.datasets.transformations",
    "register_text_embedder": "pytest_visprobe.encoders.text",
    "register_profile": "pytest_visprobe.profiles",
    "VisprobeError": "pytest_visprobe.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pytest_visprobe' has no attribute {name!r}")
