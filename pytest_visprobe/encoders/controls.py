"""Controls, so a probe cannot pass trivially.

- **Random-init control**: a deep copy of the encoder with every parameter re-initialised (seeded)
  by each module's own ``reset_parameters`` (PyTorch's default init; BatchNorm also resets its
  running statistics). Modules that own parameters but have no ``reset_parameters`` (e.g. timm's
  position embeddings or class tokens) are re-initialised by the nearest ancestor's
  ``init_weights()`` (timm's convention); if neither exists, or the encoder has no parameters at
  all, there is no control and the test that asked for it skips with that reason. The control's
  score is the metric's floor: what the architecture and the probe reach with no training.
- **Control task** (after Hewitt & Liang, 2019): the same probe trained on train targets permuted
  across images; it lives with the probes it controls (probes/label.py ``selectivity``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from pytest_visprobe.errors import ControlUnavailable

if TYPE_CHECKING:
    from pytest_visprobe.encoders.base import Encoder

CONTROL_SUFFIX = "~random-init"


def random_init_copy(encoder: "Encoder", seed: int) -> "Encoder":
    """A re-initialised deep copy named ``<name>~random-init``, with ``control_of`` set."""
    import torch

    originals = [p.detach().clone() for p in encoder.parameters()]
    if not originals:
        raise ControlUnavailable("it has no parameters, so a re-initialised copy would compute the same function")
    control = copy.deepcopy(encoder)
    modules = dict(control.named_modules())
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        # a stream of its own: re-using the session seed would redraw the very weights of an
        # encoder that was itself built right after torch.manual_seed(seed)
        torch.manual_seed(int(np.random.SeedSequence([seed, 0xC0A7]).generate_state(1)[0]))
        uncovered = []
        for name, module in modules.items():
            if not callable(getattr(module, "reset_parameters", None)) and any(True for _ in module.parameters(recurse=False)):
                uncovered.append(name)
        initialisers = {}
        for name in uncovered:
            owner = _ancestor_with_init_weights(name, modules)
            if owner is None:
                kind = type(modules[name]).__name__
                raise ControlUnavailable(
                    f"module {name or '<root>'!r} ({kind}) owns parameters but has neither "
                    f"reset_parameters() nor an ancestor with init_weights(); give it a "
                    f"reset_parameters() to get a random-init floor"
                )
            initialisers[owner] = modules[owner]
        for name, module in initialisers.items():
            try:
                module.init_weights()
            except TypeError as exc:
                raise ControlUnavailable(f"{name or '<root>'}.init_weights() needs arguments ({exc})") from None
        for module in modules.values():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    if all(torch.equal(a, b.detach()) for a, b in zip(originals, control.parameters())):
        raise ControlUnavailable("re-initialising left every parameter unchanged")
    control.name = f"{encoder.name}{CONTROL_SUFFIX}"
    control.ref = f"random-init copy of {getattr(encoder, 'ref', encoder.name)} (seed {seed})"
    control.source_ref = getattr(encoder, "source_ref", None) or getattr(encoder, "ref", None)  # its kind (kinds.encoder_kind)
    control.control_of = encoder.name
    control.eval()
    return control


def _ancestor_with_init_weights(name: str, modules: dict) -> str | None:
    parts = name.split(".") if name else []
    for depth in range(len(parts), -1, -1):
        candidate = ".".join(parts[:depth])
        if callable(getattr(modules.get(candidate), "init_weights", None)):
            return candidate
    return None
