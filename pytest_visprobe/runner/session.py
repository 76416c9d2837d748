"""Per-process run state (kept in ``config.stash``): options, loaded encoders and datasets,
the feature store, and — on the controller — the records gathered from test reports.

Heavy parts (torch, encoders, datasets) are created on first use, never at plugin load.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pytest_visprobe.encoders.refs import EncoderRef, parse_encoder_ref
from pytest_visprobe.errors import ConfigError
from pytest_visprobe.runner.options import (
    DATASET_OPTION,
    THRESHOLDS_FILENAME,
    TRANSFORMATIONS_DATASET_OPTION,
    RunSettings,
    default_cache_dir,
)
from pytest_visprobe.profiles import Profile, get_profile
from pytest_visprobe.report.scorecard import (
    DatasetInfo,
    EncoderInfo,
    Outcome,
    ProbeInfo,
    Record,
    Scorecard,
    load_scorecard,
)
from pytest_visprobe.report.thresholds import Thresholds, load_thresholds

if TYPE_CHECKING:
    import torch

    from pytest_visprobe.datasets.base import Dataset
    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.features import FeatureStore


@dataclass
class Collected:
    """What the controller gathers from reports (its own in a serial run, workers' under xdist)."""

    records: list[Record] = field(default_factory=list)
    encoders: dict[str, EncoderInfo] = field(default_factory=dict)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    probes: dict[str, ProbeInfo] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # per worker, latest
    devices: set[str] = field(default_factory=set)
    sheets: dict[str, str] = field(default_factory=dict)  # contact sheet file name -> base64 PNG
    outcome: Outcome = field(default_factory=Outcome)


@dataclass(frozen=True)
class LayerParam:
    """A test parameter: one layer (``--visprobe-layers``) of an ``--encoder``."""

    ref: EncoderRef
    layer: str

    @property
    def id(self) -> str:
        return f"{self.ref.id}@{self.layer}"


@dataclass
class VisprobeSession:
    run: RunSettings
    profile: Profile
    encoder_refs: list[EncoderRef]
    dataset_overrides: dict[str, list[str]]  # role -> specs given with --visprobe-dataset
    rootdir: Path
    baseline: Scorecard | None = None
    explicit_thresholds: Thresholds | None = None
    worker_id: str = "main"
    hook: Any = None  # config.hook: the plugins' pytest_visprobe_* implementations
    progress: Any = None  # runner/progress.Progress: where long steps show their progress
    collected: Collected = field(default_factory=Collected)
    _thresholds: dict[Path, Thresholds | None] = field(default_factory=dict)
    _encoders: dict[str, "Encoder"] = field(default_factory=dict)
    _datasets: dict[str, "Dataset"] = field(default_factory=dict)
    _store: "FeatureStore | None" = None
    _controls: dict[str, Any] = field(default_factory=dict)
    _shared: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _settings: dict[str, Any] = field(default_factory=dict)
    _preflight_spec: str | None = None
    _layer_groups: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: RunSettings, rootdir: Path, worker_id: str, hook: Any = None) -> "VisprobeSession":
        """Validate everything that can be checked without torch; errors are ConfigErrors."""
        from pytest_visprobe.errors import EncoderLoadError
        from pytest_visprobe.probes.spec import label_only_roles

        profile = get_profile(options.profile)
        profile.validate_probes()
        try:
            refs = [parse_encoder_ref(raw, rootdir=rootdir) for raw in options.encoders]
        except EncoderLoadError as exc:
            raise ConfigError(str(exc)) from None
        overrides: dict[str, list[str]] = {}
        for raw in options.datasets:
            role, spec = split_role(raw)
            validate_dataset_spec(spec)
            for name in (role,) if role else label_only_roles():
                overrides.setdefault(name, []).append(spec)
        for spec in options.transformations_datasets:  # = transformations=SPEC
            validate_dataset_spec(spec, TRANSFORMATIONS_DATASET_OPTION)
            overrides.setdefault("transformations", []).append(spec)
        session = cls(run=options, profile=profile, encoder_refs=refs,
                      dataset_overrides=overrides, rootdir=rootdir, worker_id=worker_id, hook=hook)
        baseline = options.baseline
        if options.bless and baseline is None:
            raise ConfigError(
                "--visprobe-bless writes the accepted baseline to the path --visprobe-baseline names, "
                "but no --visprobe-baseline was given. Add --visprobe-baseline=PATH (e.g. "
                "accepted/scorecard.json; it need not exist yet)."
            )
        if baseline is not None:
            path = Path(baseline)
            if path.is_file():
                session.baseline = load_scorecard(path)
            elif not options.bless:
                raise ConfigError(
                    f"--visprobe-baseline={baseline}: file not found ({path.resolve()}). Point it at an "
                    f"accepted scorecard.json, or add --visprobe-bless to write this run's scorecard there."
                )
        if options.thresholds is not None:
            session.explicit_thresholds = load_thresholds(Path(options.thresholds))
        return session

    # ------------------------------------------------------------------ settings

    @property
    def seed(self) -> int:
        return int(self.run.seed)

    @property
    def tolerance(self) -> float:
        return float(self.run.tolerance)

    @property
    def report_dir(self) -> Path:
        path = Path(self.run.report)
        return path if path.is_absolute() else self.rootdir / path

    def probe_settings(self, probe: str) -> Any:
        """The probe's settings model from the profile (validated once per process)."""
        if probe not in self._settings:
            self._settings[probe] = self.profile.settings_for(probe)
        return self._settings[probe]

    def probe_info(self, probe: str) -> ProbeInfo:
        """The probe's version and effective settings, as the scorecard records them.

        A probe that reads feature maps also records ``feature_maps`` when they are cached in
        another dtype than the default float32: its numbers may move, so a baseline with other
        maps is not comparable (and baselines made with the default stay comparable).
        """
        from pytest_visprobe.probes.spec import get_probe
        from pytest_visprobe.profiles import settings_hash

        spec = get_probe(probe)
        settings = self.probe_settings(probe).model_dump(mode="json")
        if spec.needs_feature_map and self.run.map_dtype != "float32":
            settings["feature_maps"] = self.run.map_dtype
        return ProbeInfo(version=spec.version, settings=settings, settings_hash=settings_hash(settings))

    def datasets_for(self, role: str) -> list[str]:
        """Dataset specs for a probe role. ``--visprobe-dataset SPEC`` replaces the lists of every
        role whose probes need only labels (probes.spec.label_only_roles): a user who names their data expects
        the label, few-shot, clustering, similarity and robustness probes all to run on it.
        ``--visprobe-dataset ROLE=SPEC`` (or ``--visprobe-transformations-dataset SPEC`` for
        ``transformations``) replaces one role's, e.g. ``localization=coco:...``."""
        if role in self.dataset_overrides:
            return list(self.dataset_overrides[role])
        try:
            return list(self.profile.datasets[role])
        except KeyError:
            raise ConfigError(
                f"profile {self.profile.name!r} has no datasets for role {role!r}; roles: "
                f"{sorted(self.profile.datasets)}."
            ) from None

    # ------------------------------------------------------------------ heavy parts, lazily

    @property
    def store(self) -> "FeatureStore":
        if self._store is None:
            from pytest_visprobe.features import MAP_DTYPES, FeatureStore, resolve_device

            cache_dir = None
            if not self.run.no_cache:
                raw = self.run.cache_dir
                cache_dir = Path(raw) if raw else default_cache_dir()
            batch = self.run.batch_size or self.profile.batch_size
            max_gb = self.run.cache_max_gb
            self._store = FeatureStore(cache_dir=cache_dir, device=resolve_device(self.run.device, self.worker_id),
                                       batch_size=batch, progress=self.progress, map_dtype=MAP_DTYPES[self.run.map_dtype],
                                       max_bytes=None if max_gb is None else int(max_gb * 1e9))
        return self._store

    def encoder(self, ref: EncoderRef) -> "Encoder":
        """Load (once per process) an encoder: a ``pytest_visprobe_load_encoder`` hook first, then
        the registered kinds."""
        if ref.raw not in self._encoders:
            from pytest_visprobe.encoders.loading import load_encoder

            self._encoders[ref.raw] = load_encoder(ref, hook=self.hook)
        return self._encoders[ref.raw]

    def loaded_encoders(self) -> list["Encoder"]:
        """Every ``--encoder``, loaded, in command-line order (the first is the reference)."""
        return [self.encoder(ref) for ref in self.encoder_refs]

    def dataset(self, spec: str) -> "Dataset":
        """Load (once per process) a dataset; real ones come from the data root.

        A real dataset that is not on disk raises ``DatasetNotFoundError``, which the
        ``visprobe_dataset`` fixture turns into a skip.
        """
        if spec not in self._datasets:
            from pytest_visprobe.datasets import DATASETS, load_dataset, parse_dataset_spec

            made = self.hook.pytest_visprobe_make_dataset(spec=spec, seed=self.seed, limit=self.run.limit) \
                if self.hook is not None else None
            if made is None:
                parsed = parse_dataset_spec(spec)
                options = dict(self.profile.dataset_options.get(parsed.name, {}))
                # only a registered name reads the data root; path forms carry their paths
                if parsed.kind is None and parsed.name in DATASETS and DATASETS.get(parsed.name).needs_data_root:
                    options.setdefault("root", str(self.data_root))
                    options.setdefault("download", bool(self.run.download))
                made = load_dataset(spec, seed=self.seed, limit=self.run.limit, **options)
            self._datasets[spec] = made
        return self._datasets[spec]

    @property
    def data_root(self) -> Path:
        """``--visprobe-data-root``, else ``$VISPROBE_DATA_ROOT``, else ~/.cache/pytest-visprobe/data."""
        from pytest_visprobe.datasets.storage import default_data_root, resolve_root

        raw = self.run.data_root
        return resolve_root(raw) if raw else default_data_root()

    # ------------------------------------------------------------------ thresholds and baseline

    def thresholds_near(self, directory: Path) -> Thresholds | None:
        """``--visprobe-thresholds`` if given, else the nearest thresholds file in or above ``directory``."""
        if self.explicit_thresholds is not None:
            return self.explicit_thresholds
        directory = directory.resolve()
        if directory not in self._thresholds:
            found = None
            for candidate_dir in (directory, *directory.parents):
                candidate = candidate_dir / THRESHOLDS_FILENAME
                if candidate.is_file():
                    found = load_thresholds(candidate)
                    break
                if candidate_dir == self.rootdir.resolve():
                    break
            self._thresholds[directory] = found
        return self._thresholds[directory]

    def baseline_record(self, key: tuple[str, str, str, str]) -> Record | None:
        if self.baseline is None:
            return None
        for record in self.baseline.records:
            if record.key == key and record.control_of is None:
                return record
        return None

    def baseline_data_mismatch(self, dataset: "Dataset") -> str | None:
        """Why the baseline's numbers for ``dataset`` were measured on other data, or None.

        Fingerprints cover the files, loader options, seed and ``--visprobe-limit``.
        """
        if self.baseline is None:
            return None
        recorded = next((d for d in self.baseline.datasets if d.name == dataset.name), None)
        if recorded is None or recorded.fingerprint == dataset.fingerprint:
            return None
        return (
            f"baseline {self.run.baseline} was measured on other data for dataset "
            f"{dataset.name!r} (fingerprint {recorded.fingerprint[:12]}, splits {recorded.splits}; "
            f"this run: {dataset.fingerprint[:12]}, splits "
            f"{ {name: len(split) for name, split in dataset.splits.items()} }): the files, the "
            "loader options, --visprobe-seed or --visprobe-limit differ. Run with the baseline's "
            "data and settings, or accept a new baseline made on this data."
        )

    def shared(self, key: tuple[str, ...], compute: "Callable[[], Any]") -> Any:
        """``compute()`` once per process per key: a fit several tests use (a label head, a dense head).

        Callers key by everything that determines the fit (``ProbeContext.shared``)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    # ------------------------------------------------------------------ controls and preflight

    def control_encoder(self, encoder: "Encoder") -> "Encoder":
        """The encoder's random-init control (controls.py), built once per process."""
        from pytest_visprobe.encoders.controls import random_init_copy

        source = getattr(encoder, "layer_of", None) and getattr(encoder, "source", None)
        if source is not None:  # a layer's floor: the same layer of the source's control
            return self.layer_encoder(self.control_encoder(source), encoder.layer)
        if encoder.name not in self._controls:
            try:
                self._controls[encoder.name] = random_init_copy(encoder, self.seed)
            except Exception as exc:  # remember why, so every test that asks skips the same way
                self._controls[encoder.name] = exc
        found = self._controls[encoder.name]
        if isinstance(found, Exception):
            raise found
        return found

    # ------------------------------------------------------------------ layers

    def layer_params(self, ref: EncoderRef) -> list[EncoderRef | LayerParam]:
        """What a per-layer probe's tests run on for ``ref``: the encoder's own embedding, then each
        layer ``--visprobe-layers`` names (resolved on the loaded encoder; ConfigError if unknown)."""
        from pytest_visprobe.runner.options import LAST

        if self.run.layers == LAST:
            return [ref]
        group = self.layer_group(self.encoder(ref))
        return [ref, *(LayerParam(ref, layer) for layer in group.layers)]

    def layer_group(self, encoder: "Encoder") -> Any:
        """The encoder's requested layers as views sharing one forward pass (encoders/layers.py)."""
        if encoder.name not in self._layer_groups:
            from pytest_visprobe.encoders.layers import LayerGroup, resolve_layers
            from pytest_visprobe.runner.options import LAST

            layers = [layer for layer in resolve_layers(encoder, self.run.layers) if layer != LAST]
            self._layer_groups[encoder.name] = LayerGroup(encoder, layers)
        return self._layer_groups[encoder.name]

    def layer_encoder(self, encoder: "Encoder", layer: str) -> "Encoder":
        """The view of one layer of ``encoder`` (its embedding when ``layer`` is ``last``)."""
        from pytest_visprobe.runner.options import LAST

        if layer == LAST:
            return encoder
        group = self.layer_group(encoder)
        for view in group.views:
            if view.layer == layer:
                return view
        raise ConfigError(f"layer {layer!r} of {encoder.name!r} was not requested with --visprobe-layers "
                          f"({self.run.layers}); requested: {', '.join(group.layers) or 'none'}.")

    def preflight_images(self, encoder: "Encoder") -> "torch.Tensor":
        """A seeded batch of real test images from ``preflight_dataset()``, at the encoder's input size.

        Given at ``input_size`` so the encoder's own resize is a no-op and the normalisation check
        sees its preprocessing as an exact per-pixel map.
        """
        import numpy as np
        import torch
        import torch.nn.functional as F

        from pytest_visprobe.features import to_float_images

        spec = self.preflight_dataset()
        split = self.dataset(spec).split("test")
        count = min(self.profile.gate.preflight_images, len(split))
        rows = np.sort(np.random.default_rng(self.seed).choice(len(split), size=count, replace=False))
        images = to_float_images(split.images.get(rows), torch.device("cpu"))
        if encoder.input_size is not None and tuple(images.shape[-2:]) != tuple(encoder.input_size):
            images = F.interpolate(images, size=tuple(encoder.input_size), mode="bilinear",
                                   antialias=True, align_corners=False).clamp_(0, 1)
        return images.to(self.store.device)

    def preflight_dataset(self) -> str:
        """The first label dataset that is on disk, else the first of any role's, else the embedded
        ``shapes`` (always present): preflight needs a few images, not a particular dataset.
        Chosen once per process (absent datasets are not probed again for every check)."""
        from pytest_visprobe.errors import DatasetNotFoundError

        if self._preflight_spec is None:
            candidates = [*self.datasets_for("label"),
                          *(spec for role in sorted(self.profile.datasets) for spec in self.datasets_for(role))]
            self._preflight_spec = "shapes"
            for spec in dict.fromkeys(candidates):
                try:
                    self.dataset(spec)
                except DatasetNotFoundError:
                    continue
                self._preflight_spec = spec
                break
        return self._preflight_spec


def split_role(raw: str) -> tuple[str | None, str]:
    """``ROLE=SPEC`` → (ROLE, SPEC); a plain SPEC → (None, SPEC). An unknown role is a ConfigError."""
    from pytest_visprobe.probes.spec import roles

    role, eq, spec = raw.partition("=")
    if not eq or ":" in role or "/" in role:  # "=" inside a path, not a role prefix
        return None, raw
    known = roles()
    if role not in known:
        guess = difflib.get_close_matches(role, known, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise ConfigError(f"{DATASET_OPTION}={raw}: unknown probe role {role!r}.{hint} Roles: "
                          f"{', '.join(known)}; or give SPEC alone for the label-only roles.")
    return role, spec


def validate_dataset_spec(spec: str, option: str = DATASET_OPTION) -> None:
    """Unknown datasets and missing files fail at start-up with a did-you-mean, before anything runs."""
    from pytest_visprobe.datasets import DATASETS
    from pytest_visprobe.datasets.specs import check_dataset_spec
    from pytest_visprobe.errors import DatasetError

    try:
        check_dataset_spec(spec, DATASETS.names())
    except DatasetError as exc:
        raise ConfigError(f"{option}={spec}: {exc}") from None
