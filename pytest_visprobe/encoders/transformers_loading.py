"""How transformers models are loaded here: the model's own layers, no progress bar.

transformers 5.25 began swapping layers for compute kernels fetched from the Hugging Face Hub
whenever the ``kernels`` package is installed (``use_kernels`` defaults to on). A tool that
measures a frozen encoder wants the checkpoint's reference layers: the same numbers on every
machine, and no hub access in offline CI. A ``USE_HUB_KERNELS`` the user set is respected.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

HUB_KERNELS_VARIABLE = "USE_HUB_KERNELS"


@contextlib.contextmanager
def loading_transformers() -> Iterator[None]:
    """Hub kernels off (unless the user chose) and the weight-loading bar hidden, then restored."""
    with _without_hub_kernels(), _quiet_progress():
        yield


@contextlib.contextmanager
def _without_hub_kernels() -> Iterator[None]:
    if HUB_KERNELS_VARIABLE in os.environ:
        yield
        return
    os.environ[HUB_KERNELS_VARIABLE] = "NO"
    try:
        yield
    finally:
        os.environ.pop(HUB_KERNELS_VARIABLE, None)


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
