"""The ``visprobe`` fixture: what a probe test uses to get features, skip, and check metrics.

Records are kept on the test item and ride on its report to the controller, which alone
writes the scorecard (so ``pytest -n N`` and a serial run agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

from .checks import evaluate
from .errors import ControlUnavailable, PreflightError
from .results import Metric
from .scorecard import DatasetInfo, EncoderInfo, Interval, Record, Samples

if TYPE_CHECKING:
    import torch

    from .datasets.base import Dataset
    from .encoders import Encoder
    from .profiles import Profile
    from .session import VisprobeSession

ITEM_KEY = pytest.StashKey[dict[str, Any]]()
#: set when a test failed on a threshold/baseline verdict (which does not block --visprobe-bless)
VERDICT_FAILED_KEY = pytest.StashKey[bool]()


class Recorder:
    def __init__(self, session: "VisprobeSession", item: pytest.Item) -> None:
        self._session = session
        self._item = item
        self._payload = item.stash.setdefault(ITEM_KEY, {"records": [], "encoders": {}, "datasets": {}})

    @property
    def seed(self) -> int:
        return self._session.seed

    @property
    def profile(self) -> "Profile":
        return self._session.profile

    def require(self, dataset: "Dataset", *targets: str) -> None:
        """Skip (with the reason and the fix) when the dataset lacks a target the probe needs."""
        missing = [t for t in targets if t not in dataset.targets]
        if missing:
            pytest.skip(
                f"dataset {dataset.name!r} provides no {', '.join(missing)} targets (it provides: "
                f"{', '.join(sorted(dataset.targets)) or 'none'}); choose another with "
                f"--visprobe-dataset or the profile."
            )

    def require_feature_map(self, encoder: "Encoder") -> None:
        """Skip dense probes (with what to implement) when the encoder gives no spatial map."""
        if not encoder.has_feature_map:
            pytest.skip(
                f"encoder {encoder.name!r} has no feature_map(), which the dense (localization) "
                f"probes need; implement `feature_map(images) -> Tensor[N, C, h, w]` on its Encoder "
                f"subclass, or return a module with forward_features() or a 4-D (conv) activation."
            )

    def features(self, encoder: "Encoder", dataset: "Dataset", split: str, view: str = "embed") -> "torch.Tensor":
        """Cached features of one split (computed at most once per session, reused from disk)."""
        self._note(encoder, dataset)
        return self._session.store.get(encoder, dataset, split, view)

    def shared(self, name: str, encoder: "Encoder", dataset: "Dataset", compute: "Callable[[], Any]") -> Any:
        """``compute()`` once per process per (name, encoder, dataset), for fits several tests use.

        Profile settings and the seed are fixed for the session, so the key need not name them.
        """
        return self._session.shared((name, encoder.name, dataset.name), compute)

    def label_probe(self, encoder: "Encoder", dataset: "Dataset", train_x: "torch.Tensor | None" = None,
                    test_x: "torch.Tensor | None" = None) -> tuple[Metric, Any]:
        """The label probe on cached features, fitted once per process per (encoder, dataset).

        The semantics suite reports its metric; the robustness suite attacks its head — one fit.
        Features already in hand may be passed; otherwise they are fetched only for the fit.
        """
        from .probes.semantics import label_probe

        def fit() -> tuple[Metric, Any]:
            train, test = dataset.split("train"), dataset.split("test")
            return label_probe(
                self.features(encoder, dataset, "train") if train_x is None else train_x, train.labels,
                self.features(encoder, dataset, "test") if test_x is None else test_x, test.labels,
                n_classes=len(dataset.class_names), config=self.profile.linear_probe, seed=self.seed)

        return self.shared("label_probe", encoder, dataset, fit)

    def check(self, *metrics: Metric, encoder: "Encoder", dataset: "Dataset", split: str = "test") -> None:
        """Record every metric, then fail once with all threshold/baseline violations.

        Each metric gets a 95 % interval: bootstrapped from ``per_sample`` (scores over ``split``,
        in split order) when given, else the probe's own ``interval``. Records of a control
        encoder (``control_encoder``) are kept for the scorecard and never gated.
        """
        __tracebackhide__ = True
        self._note(encoder, dataset)
        control_of = getattr(encoder, "control_of", None)
        thresholds = self._session.thresholds_near(self._item.path.parent) if control_of is None else None
        failures: list[str] = []
        for metric in metrics:
            spec = metric.spec
            key = (encoder.name, metric.probe, dataset.name, metric.metric)
            interval, samples = self._uncertainty(metric, key, dataset, split)
            threshold = thresholds.lookup(metric.probe, metric.metric, dataset.name, encoder.name) if thresholds else None
            baseline = self._session.baseline_record(key) if control_of is None else None
            other_data = self._session.baseline_data_mismatch(dataset) if baseline is not None else None
            if other_data:  # a number measured on other data is no baseline: say so, compare nothing
                if other_data not in failures:
                    failures.append(other_data)
                baseline = None
            verdict = evaluate(metric, encoder=encoder.name, dataset=dataset.name, threshold=threshold,
                               baseline=baseline, baseline_source=str(self._session.options["visprobe_baseline"]),
                               tolerance=self._session.tolerance, interval=interval, samples=samples)
            failures += verdict.failures
            record = Record(
                encoder=encoder.name, probe=metric.probe, dataset=dataset.name, metric=metric.metric,
                value=float(metric.value), spread=metric.spread, higher_is_better=spec.higher_is_better,
                threshold=threshold.value if threshold else None,
                threshold_source=threshold.source if threshold else None,
                baseline=baseline.value if baseline else None, passed=verdict.passed and not other_data,
                nodeid=self._item.nodeid, details=metric.details, interval=interval, samples=samples,
                comparison=verdict.comparison, control_of=control_of,
            )
            self._payload["records"].append(record.model_dump(mode="json"))
            if control_of is None:
                # --junitxml carries these (the test id already names encoder and dataset)
                self._item.user_properties.append((f"visprobe.{metric.probe}.{metric.metric}", f"{metric.value:.6g}"))
                if interval is not None:
                    self._item.user_properties.append(
                        (f"visprobe.{metric.probe}.{metric.metric}.ci95", f"{interval.low:.6g},{interval.high:.6g}"))
        if failures:
            self._item.stash[VERDICT_FAILED_KEY] = True
            pytest.fail("\n".join(failures), pytrace=False)

    def _uncertainty(self, metric: Metric, key: tuple[str, ...], dataset: "Dataset",
                     split: str) -> tuple[Interval | None, Samples | None]:
        """The metric's 95 % interval and, for 0/1 per-sample scores, their compact record."""
        import numpy as np

        from .uncertainty import Bits, bootstrap_interval, is_binary, samples_key, seed_for

        gate = self.profile.gate
        if metric.per_sample is None:
            if metric.interval is None:
                return None, None
            low, high = metric.interval
            return Interval(low=float(low), high=float(high), method="probe"), None
        values = np.asarray(metric.per_sample, dtype=np.float64).ravel()
        if values.size == 0 or abs(values.mean() - metric.value) > 1e-6 * max(1.0, abs(metric.value)):
            raise ValueError(
                f"{metric.probe}.{metric.metric}: per_sample has mean {values.mean() if values.size else 'n/a'} "
                f"over {values.size} samples but value is {metric.value}; per_sample must hold the "
                f"per-test-sample scores whose mean is the value (a probe bug)."
            )
        low, high = bootstrap_interval(values, rng=seed_for(self.seed, *key), resamples=gate.resamples,
                                       level=gate.level)
        interval = Interval(low=low, high=high, level=gate.level, method="bootstrap", resamples=gate.resamples)
        samples = None
        if is_binary(values):
            bits = Bits.from_array(values)
            samples = Samples(split=split, n=bits.n, key=samples_key(dataset.fingerprint, split, bits.n),
                              bits=bits.packed)
        return interval, samples

    def control_encoder(self, encoder: "Encoder") -> "Encoder":
        """The same architecture with every parameter re-initialised (seeded), cached per session.

        Skips the test, with the reason, when the encoder cannot be re-initialised.
        """
        try:
            return self._session.control_encoder(encoder)
        except ControlUnavailable as exc:
            reason = str(exc)
        pytest.skip(f"no random-init control for {encoder.name!r}: {reason}")

    def preflight(self, check: "Callable[..., Any]", encoder: "Encoder") -> Any:
        """Run one preflight check on a seeded batch of real images; its failure is a plain test failure."""
        __tracebackhide__ = True
        images = self._session.preflight_images(encoder)
        source = self._session.preflight_dataset()
        self._item.user_properties.append(("visprobe.preflight.dataset", source))
        encoder.to(images.device)
        try:
            found = check(encoder, images)
        except PreflightError as exc:
            found = exc
        if isinstance(found, PreflightError):
            pytest.fail(f"{encoder.name}: {found} (preflight images: test split of {source!r})", pytrace=False)
        if isinstance(found, str):  # what the check could tell, kept in --junitxml
            self._item.user_properties.append((f"visprobe.preflight.{check.__name__}", found))
        return found

    def _note(self, encoder: "Encoder", dataset: "Dataset") -> None:
        if encoder.name not in self._payload["encoders"]:
            size = list(encoder.input_size) if encoder.input_size else None
            self._payload["encoders"][encoder.name] = EncoderInfo(
                name=encoder.name, ref=getattr(encoder, "ref", encoder.name), fingerprint=encoder.fingerprint(),
                input_size=size, parameters=sum(p.numel() for p in encoder.parameters()),
                has_feature_map=encoder.has_feature_map,
            ).model_dump(mode="json")
        if dataset.name not in self._payload["datasets"]:
            self._payload["datasets"][dataset.name] = DatasetInfo(
                name=dataset.name, fingerprint=dataset.fingerprint,
                splits={name: len(split) for name, split in dataset.splits.items()},
                targets=sorted(dataset.targets),
            ).model_dump(mode="json")
