"""The transformation bank of the substance-or-style probe (PROTOCOLS.md section C).

A transformation is ``fn(image, rng) -> image`` on uint8 ``[H, W, 3]`` arrays, same shape out.
Its parameters are drawn from ``rng`` within the range its docstring states, so one seed gives
one concrete edit and the probe sees the whole range across seeds. Spatial parameters are
fractions of the shorter image side, so a transformation looks alike at 64 and 224 pixels.

The built-ins live one module per family (colour.py, quality.py, ...) and are registered on the
bank's first use; they use PIL and NumPy (SciPy and scikit-image on first use), never torch.
Users add their own with :func:`register_transformation`; :func:`apply_transformation` is the
one way to run any of them, seeded.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from pytest_visprobe.errors import RegistryError, UnknownNameError, VisprobeError
from pytest_visprobe.registry import Registry

__all__ = [
    "FAMILIES",
    "TRANSFORMATIONS",
    "Transformation",
    "TransformationError",
    "apply_transformation",
    "generalization_split",
    "get_transformation",
    "list_families",
    "list_transformations",
    "register_transformation",
    "unregister_transformation",
]

TransformFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: Built-in families, in the order labels and reports use. ``identity`` is a class of its own.
FAMILIES: tuple[str, ...] = (
    "identity",
    "colour",
    "quality",
    "noise",
    "blur",
    "overlay",
    "geometry",
    "style",
)
#: the modules holding the built-ins, imported (and registered) on the bank's first use
BUILTIN_MODULES = ("identity", "colour", "quality", "noise", "blur", "overlay", "geometry", "style")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")



class TransformationError(VisprobeError):
    """A transformation name, family or registration is invalid, or a transformation broke
    the image contract (uint8 ``[H, W, 3]`` in, same shape and dtype out)."""


@dataclass(frozen=True)
class Transformation:
    """One registered transformation; ``description`` states its parameter range."""

    name: str
    family: str
    fn: TransformFn
    description: str


TRANSFORMATIONS: Registry[Transformation] = Registry(
    "transformation", hint="list_transformations() shows them all; register_transformation() adds one.")
_EXTRA_FAMILIES: list[str] = []


def _register_builtins() -> None:
    from pytest_visprobe.datasets.transformations.common import BUILTINS

    for module in BUILTIN_MODULES:
        importlib.import_module(f"pytest_visprobe.datasets.transformations.{module}")
    for name, family, fn in BUILTINS:
        summary = " ".join(fn.__doc__.split("\n\n")[0].split())
        register_transformation(name, family, fn, description=summary)


TRANSFORMATIONS.on_first_use(_register_builtins)


# --------------------------------------------------------------------------------------------
# Registry


def list_families() -> list[str]:
    """Built-in families followed by any that users registered with ``new_family=True``."""
    return list(FAMILIES) + list(_EXTRA_FAMILIES)


def register_transformation(
    name: str,
    family: str,
    fn: TransformFn,
    *,
    description: str,
    new_family: bool = False,
    replace: bool = False,
) -> Transformation:
    """Add ``fn`` to the bank under ``name``.

    ``family`` must be one of :func:`list_families` unless ``new_family=True``, so a typo does
    not silently create a one-member family. Names are unique; unregister first to replace.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TransformationError(
            f"invalid transformation name {name!r}: use letters, digits, '_', '.', '-' "
            "(it becomes a class label and a test id)."
        )
    if name in TRANSFORMATIONS and not replace:
        raise RegistryError(
            f"a transformation named {name!r} is already registered (family "
            f"{TRANSFORMATIONS.get(name).family!r}); pick another name, pass replace=True, or call "
            f"unregister_transformation({name!r}) first."
        )
    if not isinstance(family, str) or not _NAME_RE.match(family):
        raise TransformationError(f"invalid family name {family!r}.")
    if family not in list_families():
        if not new_family:
            raise TransformationError(
                f"unknown family {family!r}{_did_you_mean(family, list_families())}; known "
                f"families: {', '.join(list_families())}. Pass new_family=True to create it."
            )
        _EXTRA_FAMILIES.append(family)
    if not callable(fn):
        raise TransformationError(f"transformation {name!r}: fn must be callable, got {fn!r}.")
    if not isinstance(description, str) or not description.strip():
        raise TransformationError(
            f"transformation {name!r}: give a description stating its parameter range."
        )
    entry = Transformation(name=name, family=family, fn=fn, description=description.strip())
    TRANSFORMATIONS.register(name, entry, replace=replace)
    return entry


def unregister_transformation(name: str) -> Transformation:
    """Remove ``name`` from the bank (a user family left empty goes too); returns the entry."""
    entry = TRANSFORMATIONS.unregister(name)
    if entry.family in _EXTRA_FAMILIES and not list_transformations(entry.family):
        _EXTRA_FAMILIES.remove(entry.family)
    return entry


def list_transformations(family: str | None = None) -> list[Transformation]:
    """Registered transformations in family order, then registration order."""
    if family is not None and family not in list_families():
        raise TransformationError(
            f"unknown family {family!r}{_did_you_mean(family, list_families())}; known "
            f"families: {', '.join(list_families())}."
        )
    order = {fam: i for i, fam in enumerate(list_families())}
    entries = sorted((t for _, t in TRANSFORMATIONS.items()), key=lambda t: order[t.family])  # stable sort
    return [t for t in entries if family is None or t.family == family]


def get_transformation(name: str) -> Transformation:
    """The registered transformation ``name``; an unknown name suggests the closest ones."""
    if not isinstance(name, str):
        raise UnknownNameError(f"unknown transformation {name!r}: names are strings.")
    return TRANSFORMATIONS.get(name)


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _stable_hash(text: str) -> int:
    """64-bit hash of ``text`` that, unlike ``hash()``, is the same in every process."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _check_seed(seed: object) -> None:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TransformationError(f"seed must be a non-negative int, got {seed!r}.")


def _describe(array: object) -> str:
    if isinstance(array, np.ndarray):
        return f"{array.dtype} {list(array.shape)}"
    return type(array).__name__


def apply_transformation(name: str, image: np.ndarray, *, seed: int) -> np.ndarray:
    """Apply ``name`` to ``image`` with parameters drawn from ``seed``.

    Deterministic in (name, image, seed): the generator is seeded from the seed and a stable
    hash of the name, so two transformations under one seed draw independent parameters. The
    parameters depend on (name, seed) only, so give each source image its own seed to spread
    the range over a dataset. The input is passed read-only (a transformation must not edit
    it) and the output is checked against the contract.
    """
    entry = get_transformation(name)
    _check_seed(seed)
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] < 1
        or image.shape[1] < 1
    ):
        got = _describe(image)
        raise TransformationError(f"{name}: expected a uint8 [H, W, 3] image, got {got}.")
    view = image.view()
    view.flags.writeable = False
    rng = np.random.default_rng([int(seed), _stable_hash(name)])
    out = entry.fn(view, rng)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != image.shape:
        raise TransformationError(
            f"transformation {name!r} returned {_describe(out)}; it must return uint8 "
            f"{list(image.shape)} (the input's shape)."
        )
    if not out.flags.writeable or np.may_share_memory(out, image):
        out = out.copy()  # the caller owns the result; the input stays untouched
    return out


def generalization_split(seed: int = 0) -> tuple[list[str], list[str]]:
    """Split the bank into (train names, held-out names) for the generalization task.

    In every family except ``identity`` with at least two members, ``max(1, n // 4)`` members
    are held out, chosen by a generator seeded from ``seed`` and the family name. The family
    probe trains on the rest and is scored on the held-out members, so each family keeps at
    least one training member; identity is never held out. Both lists follow bank order.
    """
    _check_seed(seed)
    held: set[str] = set()
    for family in list_families():
        names = sorted(t.name for t in list_transformations(family))
        if family == "identity" or len(names) < 2:
            continue
        rng = np.random.default_rng([int(seed), _stable_hash("generalization_split:" + family)])
        k = max(1, len(names) // 4)
        held.update(names[i] for i in rng.choice(len(names), size=k, replace=False))
    order = [t.name for t in list_transformations()]
    return [n for n in order if n not in held], [n for n in order if n in held]
