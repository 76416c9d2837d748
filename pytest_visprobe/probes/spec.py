"""What a probe is, declared once in the module that implements it.

A ``ProbeSpec`` holds a probe's name, its metrics (direction, bounds, how chance is computed),
its settings model (a profile's ``[probes.NAME]`` table), the dataset role and targets it needs,
its details model (what each record carries for the Markdown and plots) and its plot. Listing,
threshold validation, profile loading, the scorecard and the plots all read the spec; nothing
else names the probe. ``run(ctx, **params)`` returns ``Metric`` values, one result type for
every probe.

Register a probe with ``register_probe(SPEC)`` (or the ``pytest_visprobe_register`` hook).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pytest_visprobe.errors import UnknownNameError
from pytest_visprobe.registry import Registry

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass(frozen=True)
class MetricSpec:
    """One metric of a probe. ``name`` may hold ``{n}`` (digits) for a family (``top1_{n}shot``),
    or ``{name}`` (a lower-case word, ``[a-z][a-z0-9]*``) for one named in the settings
    (``rsa_language_{name}``: one per text model of the profile)."""

    name: str
    higher_is_better: bool
    description: str
    lower: float | None = 0.0
    upper: float | None = 1.0
    #: how the probe computes this metric's chance level (shown by --visprobe-list); the value
    #: itself rides on each ``Metric``. None: no meaningful chance level.
    chance: str | None = None
    probe: str = ""  # filled in by ProbeSpec

    def matches(self, name: str) -> bool:
        if "{" not in self.name:
            return name == self.name
        pattern = re.escape(self.name).replace(r"\{n\}", r"\d+").replace(r"\{name\}", "[a-z][a-z0-9]*")
        return re.fullmatch(pattern, name) is not None


@dataclass(frozen=True)
class Metric:
    """One measured number, the one result type every probe's ``run`` returns (a list of them).

    ``per_sample`` holds the per-test-sample scores whose mean is ``value`` where the metric is
    such a mean over independent samples (bootstrap intervals, McNemar against a baseline);
    ``units`` (report.units.UnitStats) the per-unit rows the value is recomputed from where it is
    not such a mean, or where samples are clustered (views of one image); ``interval`` a 95 %
    interval the probe computed itself otherwise, and ``uncertainty`` says why there is none
    when no interval is honest. ``data_key`` fingerprints derived data the metric saw (e.g. the
    transformed views), so a baseline on other derived data is not compared. ``details`` is an
    instance of the spec's details model. ``encoder`` names whose number this is when a probe
    measures several encoders at once. ``split`` names the split ``per_sample`` is over when it
    is not the test split (RPGD's ``all``), so a per-sample record is paired only with its own.
    ``examples`` (probes.examples.Examples) is what the probe saw, for its contact sheet: held in
    memory only, never in the scorecard.
    """

    probe: str
    metric: str
    value: float
    spread: float | None = None
    details: Any = None
    per_sample: Any = None
    interval: tuple[float, float] | None = None
    chance: float | None = None
    encoder: Any = None
    units: Any = None
    data_key: str | None = None
    uncertainty: str | None = None
    split: str | None = None  # the split ``per_sample`` runs over when not the recorder's ("test")
    examples: Any = field(default=None, repr=False, compare=False)

    @property
    def spec(self) -> MetricSpec:
        return get_probe(self.probe).metric(self.metric)

    def details_dict(self) -> dict[str, Any]:
        if self.details is None:
            return {}
        if isinstance(self.details, dict):
            return dict(self.details)
        return self.details.model_dump(mode="json", exclude_none=True)


def _no_settings() -> type["BaseModel"]:
    from pydantic import BaseModel, ConfigDict

    class NoSettings(BaseModel):
        """This probe takes no settings."""

        model_config = ConfigDict(extra="forbid", frozen=True)

    return NoSettings


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    description: str
    metrics: tuple[MetricSpec, ...]
    #: ``run(ctx, **params) -> list[Metric]``; params come from the suite's parametrization
    run: Callable[..., list[Metric]] = field(repr=False, compare=False)
    settings: type["BaseModel"] | None = None  # validated from a profile's [probes.NAME] table
    details: type["BaseModel"] | None = None  # what each record's ``details`` holds
    role: str = "label"  # the profile's dataset role whose datasets its tests run on
    targets: tuple[str, ...] = ()  # dataset targets it needs (its tests skip otherwise)
    needs_feature_map: bool = False
    compares_encoders: bool = False  # run sees every --encoder (ctx.encoders) and returns each one's metrics
    #: reads only pooled embeddings, so it also runs on each layer --visprobe-layers names (ENCODER@LAYER)
    per_layer: bool = False
    #: compares an encoder's layers: its tests run only with --visprobe-layers (deselected otherwise)
    layers_only: bool = False
    #: ``"module:function"`` (or the function) drawing this probe's records: ``(card, dir) -> [Path]``
    plot: str | Callable[..., Any] | None = None
    version: int = 1  # bump when the probe's numbers change meaning

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(
            m if m.probe == self.name else MetricSpec(**{**m.__dict__, "probe": self.name}) for m in self.metrics))
        if self.settings is None:
            object.__setattr__(self, "settings", _no_settings())

    def metric(self, name: str) -> MetricSpec:
        """The declared metric (a family member resolved); a did-you-mean error otherwise."""
        for spec in self.metrics:
            if spec.matches(name):
                return spec if spec.name == name else MetricSpec(**{**spec.__dict__, "name": name})
        import difflib

        names = [m.name for m in self.metrics]
        guess = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise UnknownNameError(f"probe {self.name!r} has no metric {name!r}.{hint} Its metrics: {', '.join(names)}.")

    @property
    def label_only(self) -> bool:
        """Needs only images and labels: ``--visprobe-dataset SPEC`` replaces its role's datasets."""
        return self.targets == ("label",) and not self.needs_feature_map


PROBES: Registry[ProbeSpec] = Registry(
    "probe", hint="Register one with pytest_visprobe.register_probe(ProbeSpec(...)) in a conftest.py or plugin.")

#: the built-in probes, one module each, imported on the first look-up
BUILTIN_PROBE_MODULES = (
    "pytest_visprobe.probes.label",
    "pytest_visprobe.probes.attributes",
    "pytest_visprobe.probes.fewshot",
    "pytest_visprobe.probes.knn",
    "pytest_visprobe.probes.clustering",
    "pytest_visprobe.probes.similarity",
    "pytest_visprobe.probes.cka",
    "pytest_visprobe.probes.layer_cka",
    "pytest_visprobe.probes.transformations",
    "pytest_visprobe.probes.segmentation",
    "pytest_visprobe.probes.detection",
    "pytest_visprobe.probes.instances",
    "pytest_visprobe.probes.regions",
    "pytest_visprobe.probes.rpgd",
    "pytest_visprobe.probes.zeroshot",
    "pytest_visprobe.probes.retrieval",
)


def _load_builtin() -> None:
    import importlib

    for module in BUILTIN_PROBE_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, ProbeSpec) and value.name not in PROBES._entries:
                PROBES.register(value.name, value)


PROBES.on_first_use(_load_builtin)


def register_probe(spec: ProbeSpec, *, replace: bool = False) -> ProbeSpec:
    """Make ``spec`` known to listing, profiles, thresholds, the scorecard and ``visprobe.run``."""
    PROBES.register(spec.name, spec, replace=replace)
    return spec


def get_probe(name: str) -> ProbeSpec:
    return PROBES.get(name)


def list_probes() -> list[ProbeSpec]:
    return [PROBES.get(name) for name in PROBES.names()]


def metric_spec(probe: str, metric: str) -> MetricSpec:
    """The declared metric of a probe; did-you-mean errors (``UnknownNameError``) otherwise."""
    return get_probe(probe).metric(metric)


def roles() -> list[str]:
    """Every dataset role a registered probe runs on, in registration order."""
    return list(dict.fromkeys(spec.role for spec in list_probes()))


def label_only_roles() -> list[str]:
    """Roles whose probes all need only labels: what a plain ``--visprobe-dataset SPEC`` replaces."""
    by_role: dict[str, bool] = {}
    for spec in list_probes():
        by_role[spec.role] = by_role.get(spec.role, True) and spec.label_only
    return [role for role, only in by_role.items() if only]
