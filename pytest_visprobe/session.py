"""Per-process run state (kept in ``config.stash``): options, loaded encoders and datasets,
the feature store, and — on the controller — the records gathered from test reports.

Heavy parts (torch, encoders, datasets) are created on first use, never at plugin load.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .encoder_refs import EncoderRef, parse_encoder_ref
from .errors import ConfigError
from .options import DATASET_OPTION, THRESHOLDS_FILENAME, TRANSFORMATIONS_DATASET_OPTION, default_cache_dir
from .profiles import Profile, get_profile
from .scorecard import DatasetInfo, EncoderInfo, Outcome, Record, Scorecard, load_scorecard
from .thresholds import Thresholds, load_thresholds

if TYPE_CHECKING:
    import torch

    from .datasets.base import Dataset
    from .encoders import Encoder
    from .features import FeatureStore


@dataclass
class Collected:
    """What the controller gathers from reports (its own in a serial run, workers' under xdist)."""

    records: list[Record] = field(default_factory=list)
    encoders: dict[str, EncoderInfo] = field(default_factory=dict)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # per worker, latest
    devices: set[str] = field(default_factory=set)
    outcome: Outcome = field(default_factory=Outcome)


#: Probe roles that need only images and labels; ``--visprobe-dataset`` replaces them all.
LABEL_ROLES = ("label", "fewshot", "clustering", "similarity", "robustness")


@dataclass
class VisprobeSession:
    options: dict[str, Any]
    profile: Profile
    encoder_refs: list[EncoderRef]
    dataset_overrides: dict[str, list[str]]  # role -> specs given with --visprobe-dataset
    rootdir: Path
    baseline: Scorecard | None = None
    explicit_thresholds: Thresholds | None = None
    worker_id: str = "main"
    collected: Collected = field(default_factory=Collected)
    _thresholds: dict[Path, Thresholds | None] = field(default_factory=dict)
    _encoders: dict[str, "Encoder"] = field(default_factory=dict)
    _datasets: dict[str, "Dataset"] = field(default_factory=dict)
    _store: "FeatureStore | None" = None
    _controls: dict[str, Any] = field(default_factory=dict)
    _shared: dict[tuple[str, ...], Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict[str, Any], rootdir: Path, worker_id: str) -> "VisprobeSession":
        """Validate everything that can be checked without torch; errors are ConfigErrors."""
        from .errors import EncoderLoadError

        profile = get_profile(options["visprobe_profile"])
        try:
            refs = [parse_encoder_ref(raw, rootdir=rootdir) for raw in options["encoder"]]
        except EncoderLoadError as exc:
            raise ConfigError(str(exc)) from None
        overrides: dict[str, list[str]] = {}
        for raw in options["visprobe_dataset"]:
            role, spec = split_role(raw)
            validate_dataset_spec(spec)
            for name in (role,) if role else LABEL_ROLES:
                overrides.setdefault(name, []).append(spec)
        for spec in options.get("visprobe_transformations_dataset", []):  # = transformations=SPEC
            validate_dataset_spec(spec, TRANSFORMATIONS_DATASET_OPTION)
            overrides.setdefault("transformations", []).append(spec)
        session = cls(options=options, profile=profile, encoder_refs=refs,
                      dataset_overrides=overrides, rootdir=rootdir, worker_id=worker_id)
        baseline = options["visprobe_baseline"]
        if options["visprobe_bless"] and baseline is None:
            raise ConfigError(
                "--visprobe-bless writes the accepted baseline to the path --visprobe-baseline names, "
                "but no --visprobe-baseline was given. Add --visprobe-baseline=PATH (e.g. "
                "accepted/scorecard.json; it need not exist yet)."
            )
        if baseline is not None:
            path = Path(baseline)
            if path.is_file():
                session.baseline = load_scorecard(path)
            elif not options["visprobe_bless"]:
                raise ConfigError(
                    f"--visprobe-baseline={baseline}: file not found ({path.resolve()}). Point it at an "
                    f"accepted scorecard.json, or add --visprobe-bless to write this run's scorecard there."
                )
        if options["visprobe_thresholds"] is not None:
            session.explicit_thresholds = load_thresholds(Path(options["visprobe_thresholds"]))
        return session

    # ------------------------------------------------------------------ settings

    @property
    def seed(self) -> int:
        return int(self.options["visprobe_seed"])

    @property
    def tolerance(self) -> float:
        return float(self.options["visprobe_tolerance"])

    @property
    def report_dir(self) -> Path:
        path = Path(self.options["visprobe_report"])
        return path if path.is_absolute() else self.rootdir / path

    def datasets_for(self, role: str) -> list[str]:
        """Dataset specs for a probe role. ``--visprobe-dataset SPEC`` replaces the lists of every
        role whose probe needs only labels (LABEL_ROLES): a user who names their data expects
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
            from .features import FeatureStore, resolve_device

            cache_dir = None
            if not self.options["visprobe_no_cache"]:
                raw = self.options["visprobe_cache_dir"]
                cache_dir = Path(raw) if raw else default_cache_dir()
            batch = self.options["visprobe_batch_size"] or self.profile.batch_size
            self._store = FeatureStore(cache_dir=cache_dir, device=resolve_device(self.options["visprobe_device"]),
                                       batch_size=batch)
        return self._store

    def encoder(self, ref: EncoderRef) -> "Encoder":
        if ref.raw not in self._encoders:
            from .encoders import load_encoder

            self._encoders[ref.raw] = load_encoder(ref)
        return self._encoders[ref.raw]

    def dataset(self, spec: str) -> "Dataset":
        """Load (once per process) a dataset; real ones come from the data root.

        A real dataset that is not on disk raises ``DatasetNotFoundError``, which the
        ``visprobe_dataset`` fixture turns into a skip.
        """
        if spec not in self._datasets:
            from .datasets import list_datasets, load_dataset

            name = spec.split(":", 1)[0]
            options = dict(self.profile.dataset_options.get(name, {}))
            # only a registered name reads the data root; coco:/imagefolder: specs carry their paths
            entry = next((e for e in list_datasets() if e.name == spec), None)
            if entry is not None and entry.needs_data_root:
                options.setdefault("root", str(self.data_root))
                options.setdefault("download", bool(self.options.get("visprobe_download")))
            self._datasets[spec] = load_dataset(spec, seed=self.seed, limit=self.options["visprobe_limit"], **options)
        return self._datasets[spec]

    @property
    def data_root(self) -> Path:
        """``--visprobe-data-root``, else ``$VISPROBE_DATA_ROOT``, else ~/.cache/pytest-visprobe/data."""
        from .datasets.storage import default_data_root, resolve_root

        raw = self.options.get("visprobe_data_root")
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
            f"baseline {self.options['visprobe_baseline']} was measured on other data for dataset "
            f"{dataset.name!r} (fingerprint {recorded.fingerprint[:12]}, splits {recorded.splits}; "
            f"this run: {dataset.fingerprint[:12]}, splits "
            f"{ {name: len(split) for name, split in dataset.splits.items()} }): the files, the "
            "loader options, --visprobe-seed or --visprobe-limit differ. Run with the baseline's "
            "data and settings, or accept a new baseline made on this data."
        )

    def shared(self, key: tuple[str, ...], compute: "Callable[[], Any]") -> Any:
        """``compute()`` once per process per key: a fit several tests use (a label head, a dense head)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    # ------------------------------------------------------------------ controls and preflight

    def control_encoder(self, encoder: "Encoder") -> "Encoder":
        """The encoder's random-init control (controls.py), built once per process."""
        from .controls import random_init_copy

        if encoder.name not in self._controls:
            try:
                self._controls[encoder.name] = random_init_copy(encoder, self.seed)
            except Exception as exc:  # remember why, so every test that asks skips the same way
                self._controls[encoder.name] = exc
        found = self._controls[encoder.name]
        if isinstance(found, Exception):
            raise found
        return found

    def preflight_images(self, encoder: "Encoder") -> "torch.Tensor":
        """A seeded batch of real test images from ``preflight_dataset()``, at the encoder's input size.

        Given at ``input_size`` so the encoder's own resize is a no-op and the normalisation check
        sees its preprocessing as an exact per-pixel map.
        """
        import numpy as np
        import torch
        import torch.nn.functional as F

        from .features import to_float_images

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
        ``shapes`` (always present): preflight needs a few images, not a particular dataset."""
        from .datasets.base import DatasetNotFoundError

        candidates = [*self.datasets_for("label"),
                      *(spec for role in sorted(self.profile.datasets) for spec in self.datasets_for(role)), "shapes"]
        for spec in dict.fromkeys(candidates):
            try:
                self.dataset(spec)
            except DatasetNotFoundError:
                continue
            return spec
        return "shapes"  # pragma: no cover - shapes is generated, never missing


def split_role(raw: str) -> tuple[str | None, str]:
    """``ROLE=SPEC`` → (ROLE, SPEC); a plain SPEC → (None, SPEC). An unknown role is a ConfigError."""
    from .profiles import ROLES

    role, eq, spec = raw.partition("=")
    if not eq or ":" in role or "/" in role:  # "=" inside a path, not a role prefix
        return None, raw
    if role not in ROLES:
        guess = difflib.get_close_matches(role, ROLES, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise ConfigError(f"{DATASET_OPTION}={raw}: unknown probe role {role!r}.{hint} Roles: "
                          f"{', '.join(ROLES)}; or give SPEC alone for the label-only roles.")
    return role, spec


def validate_dataset_spec(spec: str, option: str = DATASET_OPTION) -> None:
    """Unknown dataset names fail at start-up with a did-you-mean, before anything runs."""
    from .datasets import list_datasets

    name, sep, path = spec.partition(":")
    if name == "imagefolder" and sep:
        if not Path(path).is_dir():
            raise ConfigError(f"{option}={spec}: folder not found ({Path(path).resolve()}).")
        return
    if name == "coco" and sep:
        from .datasets.base import DatasetError
        from .datasets.coco import parse_coco_spec

        try:
            images, annotations = parse_coco_spec(spec)
        except DatasetError as exc:
            raise ConfigError(f"{option}: {exc}") from None
        if not Path(images).is_dir():
            raise ConfigError(f"{option}={spec}: images folder not found ({Path(images).resolve()}).")
        if not Path(annotations).is_file():
            raise ConfigError(f"{option}={spec}: annotation file not found ({Path(annotations).resolve()}).")
        return
    names = [entry.name for entry in list_datasets()]
    if spec not in names:
        guess = difflib.get_close_matches(spec, names, n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise ConfigError(
            f"{option}={spec}: unknown dataset.{hint} Registered: {', '.join(sorted(names))}; "
            f"or imagefolder:PATH for class-per-folder images, coco:IMAGES_DIR:ANNOTATIONS.json for "
            f"COCO-format boxes and masks."
        )
