"""Encoders: the Encoder contract, ``--encoder`` references and their loaders, controls, preflight
checks and the text models the similarity probe compares with.

Importing this package does not import torch: ``Encoder``, ``ModuleEncoder``, ``load_encoder``
and ``as_encoder`` load it on first access.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Encoder": "base", "ModuleEncoder": "base", "load_encoder": "loading", "as_encoder": "loading",
         "open_clip_encoder": "loading"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"pytest_visprobe.encoders.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pytest_visprobe.encoders' has no attribute {name!r}")
