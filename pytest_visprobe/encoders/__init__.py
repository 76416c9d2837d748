"""Encoders: the Encoder contract, ``--encoder`` references and their loaders, controls, preflight
checks and the text models the similarity probe compares with.

Importing this package does not import torch: ``Encoder``, ``ModuleEncoder``, ``load_encoder``
and ``as_encoder`` load it on first access.
"""

from __future__ import annotations

from typing import Any

_LAZY = ("Encoder", "ModuleEncoder", "load_encoder", "as_encoder")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pytest_visprobe.encoders import base

        return getattr(base, name)
    raise AttributeError(f"module 'pytest_visprobe.encoders' has no attribute {name!r}")
