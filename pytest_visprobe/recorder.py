"""The ``visprobe`` fixture: what a probe test uses to get features, skip, and check metrics.

Records are kept on the test item and ride on its report to the controller, which alone
writes the scorecard (so ``pytest -n N`` and a serial run agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .checks import evaluate
from .results import Metric
from .scorecard import DatasetInfo, EncoderInfo, Record

if TYPE_CHECKING:
    import torch

    from .datasets.base import Dataset
    from .encoders import Encoder
    from .profiles import Profile
    from .session import VisprobeSession

ITEM_KEY = pytest.StashKey[dict[str, Any]]()


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

    def check(self, *metrics: Metric, encoder: "Encoder", dataset: "Dataset") -> None:
        """Record every metric, then fail once with all threshold/baseline violations."""
        __tracebackhide__ = True
        self._note(encoder, dataset)
        thresholds = self._session.thresholds_near(self._item.path.parent)
        failures: list[str] = []
        for metric in metrics:
            spec = metric.spec
            key = (encoder.name, metric.probe, dataset.name, metric.metric)
            threshold = thresholds.lookup(metric.probe, metric.metric, dataset.name, encoder.name) if thresholds else None
            baseline = self._session.baseline_value(key)
            other_data = self._session.baseline_data_mismatch(dataset) if baseline is not None else None
            if other_data:  # a number measured on other data is no baseline: say so, compare nothing
                if other_data not in failures:
                    failures.append(other_data)
                baseline = None
            verdict = evaluate(metric, encoder=encoder.name, dataset=dataset.name, threshold=threshold,
                               baseline=baseline, baseline_source=str(self._session.options["visprobe_baseline"]),
                               tolerance=self._session.tolerance)
            failures += verdict.failures
            record = Record(
                encoder=encoder.name, probe=metric.probe, dataset=dataset.name, metric=metric.metric,
                value=float(metric.value), spread=metric.spread, higher_is_better=spec.higher_is_better,
                threshold=threshold.value if threshold else None,
                threshold_source=threshold.source if threshold else None,
                baseline=baseline, passed=verdict.passed and not other_data, nodeid=self._item.nodeid, details=metric.details,
            )
            self._payload["records"].append(record.model_dump(mode="json"))
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)

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
