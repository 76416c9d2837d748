"""What a probe's ``run`` sees: the encoder and dataset under test, its settings, and the run's
services (cached features, fits shared between tests, skips), without any pytest objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import pytest

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    from pytest_visprobe.datasets.base import Dataset
    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.runner.recorder import Recorder


@dataclass
class ProbeContext:
    recorder: "Recorder" = field(repr=False)
    probe: str
    encoder: "Encoder"
    dataset: "Dataset"
    settings: "BaseModel"  # the probe's settings model, from the profile
    seed: int
    resamples: int  # bootstrap resamples for intervals a probe computes itself (mAP)
    device: "torch.device"
    encoders: list["Encoder"] = field(default_factory=list)  # every --encoder, for probes comparing them
    text_model: str = "minilm"
    is_control: bool = False  # the encoder is a random-init control: its records are floors

    def features(self, split: str, view: str = "embed", *, encoder: "Encoder | None" = None,
                 dataset: "Dataset | None" = None) -> "torch.Tensor":
        """Cached features of one split (one forward pass per session, reused from disk)."""
        return self.recorder.features(encoder or self.encoder, dataset or self.dataset, split, view)

    def layer_views(self) -> list["Encoder"]:
        """The ``--visprobe-layers`` views of the encoder under test, in the option's order
        (encoders/layers.py); empty without the option."""
        return self.recorder.layer_views(self.encoder)

    def progress(self, desc: str, total: int, items: int) -> Any:
        """A context yielding ``tick()`` for a long step (the augmented transfer epochs)."""
        return self.recorder.progress(desc, total, items)

    def shared(self, name: str, compute: Callable[[], Any], *settings: "BaseModel") -> Any:
        """``compute()`` once per process per (name, encoder, dataset, seed, settings): a fit that
        several probes use (a label head, a dense head), keyed by everything that determines it."""
        from pytest_visprobe.profiles import settings_hash

        key = (name, self.encoder.name, self.encoder.fingerprint(), self.dataset.fingerprint, str(self.seed),
               *(f"{type(s).__name__}:{settings_hash(s)}" for s in settings))
        return self.recorder.shared(key, compute)

    def skip(self, reason: str) -> NoReturn:
        """This probe cannot run here (and the reason says what would make it run)."""
        pytest.skip(reason)
