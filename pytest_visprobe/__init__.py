"""pytest-visprobe: what a frozen vision encoder's representations encode, as pytest tests.

Importing this package does not import torch; ``Encoder`` and ``ModuleEncoder`` load it on
first access.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Encoder", "ModuleEncoder", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Encoder", "ModuleEncoder"):
        from . import encoders

        return getattr(encoders, name)
    raise AttributeError(f"module 'pytest_visprobe' has no attribute {name!r}")
