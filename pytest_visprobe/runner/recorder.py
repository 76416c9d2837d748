"""The ``visprobe`` fixture: what a probe test uses to get features, skip, and check metrics.

Records are kept on the test item and ride on its report to the controller, which alone
writes the scorecard (so ``pytest -n N`` and a serial run agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

from pytest_visprobe.errors import ControlUnavailable, PreflightError
from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.report.gate import evaluate
from pytest_visprobe.report.scorecard import DatasetInfo, EncoderInfo, Interval, ProbeInfo, Record, Samples, Units
from pytest_visprobe.runner.stash import ITEM_KEY, VERDICT_FAILED_KEY

if TYPE_CHECKING:
    import torch

    from pytest_visprobe.datasets.base import Dataset
    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.profiles import Profile
    from pytest_visprobe.runner.context import ProbeContext
    from pytest_visprobe.runner.session import VisprobeSession


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

    def layer_views(self, encoder: "Encoder") -> list["Encoder"]:
        """The ``--visprobe-layers`` views of ``encoder`` (none without the option)."""
        from pytest_visprobe.runner.options import LAST

        if self._session.run.layers == LAST:
            return []
        return list(self._session.layer_group(encoder).views)

    def progress(self, desc: str, total: int, items: int) -> Any:
        """A context yielding ``tick()``, once per step of ``total`` (``items`` images in all), for a
        long step that is not a feature pass (runner/progress.py); silent without a progress display."""
        import contextlib

        progress = self._session.progress
        return progress.track(desc, total, items) if progress is not None else contextlib.nullcontext(lambda: None)

    def shared(self, key: tuple[str, ...], compute: "Callable[[], Any]") -> Any:
        """``compute()`` once per process per key (``ProbeContext.shared`` builds complete keys)."""
        return self._session.shared(key, compute)

    def run(self, probe: str, encoder: "Encoder", dataset: "Dataset", **params: Any) -> list[Metric]:
        """Run a registered probe on (encoder, dataset) and check every metric it returns.

        Skips (with the reason and the fix) when the dataset lacks a target the probe needs or
        the encoder has no feature map a dense probe needs. ``params`` are the probe's own
        (e.g. ``n_shot``). Returns the metrics, already recorded.
        """
        __tracebackhide__ = True
        from pytest_visprobe.probes.spec import get_probe
        from pytest_visprobe.runner.context import ProbeContext

        spec = get_probe(probe)
        self.require(dataset, *spec.targets)
        if spec.needs_feature_map:
            self.require_feature_map(encoder)
        session = self._session
        ctx = ProbeContext(
            recorder=self, probe=probe, encoder=encoder, dataset=dataset, settings=session.probe_settings(probe),
            seed=self.seed, resamples=self.profile.gate.resamples, device=session.store.device,
            encoders=session.loaded_encoders() if spec.compares_encoders else [encoder],
            text_model=session.run.text_model, is_control=getattr(encoder, "control_of", None) is not None)
        metrics = spec.run(ctx, **params)
        self._sheet(ctx, metrics)
        by_encoder: dict[str, tuple["Encoder", list[Metric]]] = {}
        for metric in metrics:
            owner = metric.encoder if metric.encoder is not None else encoder
            by_encoder.setdefault(owner.name, (owner, []))[1].append(metric)
        failures: list[str] = []
        for owner, owned in by_encoder.values():
            try:
                self.check(*owned, encoder=owner, dataset=dataset)
            except pytest.fail.Exception as exc:
                failures.append(str(exc))
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)
        return metrics

    def _sheet(self, ctx: "ProbeContext", metrics: list[Metric]) -> None:
        """Draw what the probe saw (the first metric's ``examples``) as PNG bytes on the test's
        report, for the controller to write beside the scorecard; never fails the test."""
        import base64
        import re
        import warnings

        examples = next((m.examples for m in metrics if m.examples is not None), None)
        if examples is None or ctx.is_control or getattr(ctx.encoder, "layer", None) is not None \
                or self._session.run.no_sheets:  # controls and layers: numbers only, one sheet per encoder
            return
        parts = (ctx.probe, ctx.encoder.name, ctx.dataset.name)
        name = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part)[:60] for part in parts) + ".png"
        try:
            from pytest_visprobe.report.plots.sheets import sheet_png

            png = sheet_png(examples, ctx.dataset, " · ".join(parts))
        except Exception as exc:  # a sheet is a convenience: never fail the run for it
            warnings.warn(f"visprobe: the contact sheet {name} could not be drawn ({type(exc).__name__}: "
                          f"{exc}); the scorecard is unaffected.", stacklevel=2)
            return
        if png is not None:
            self._payload.setdefault("sheets", {})[name] = base64.b64encode(png).decode("ascii")

    def check(self, *metrics: Metric, encoder: "Encoder", dataset: "Dataset", split: str = "test") -> None:
        """Record every metric, then fail once with all threshold/baseline violations.

        Each metric gets a 95 % interval: bootstrapped from ``per_sample`` (scores over ``split``,
        in split order) when given, else the probe's own ``interval``. Records of a control
        encoder (``control_encoder``) are kept for the scorecard and never gated.
        """
        __tracebackhide__ = True
        self._note(encoder, dataset)
        control_of = getattr(encoder, "control_of", None)
        layer = getattr(encoder, "layer", None)
        # a layer's record is compared with the same layer's baseline, but not held to the thresholds
        # written for the encoder's embedding (early layers are meant to score lower)
        gated = control_of is None and layer is None
        thresholds = self._session.thresholds_near(self._item.path.parent) if gated else None
        failures: list[str] = []
        for metric in metrics:
            spec = metric.spec
            key = (encoder.name, metric.probe, dataset.name, metric.metric)
            interval, samples, units = self._uncertainty(metric, key, dataset, metric.split or split)
            threshold = thresholds.lookup(metric.probe, metric.metric, dataset.name, encoder.name) if thresholds else None
            probe_info = self._session.probe_info(metric.probe)
            self._payload.setdefault("probes", {})[metric.probe] = probe_info.model_dump(mode="json")
            baseline = self._session.baseline_record(key) if control_of is None else None
            incomparable = self._incomparable(baseline, metric, probe_info, encoder, dataset) if baseline else None
            if incomparable:  # a number measured otherwise is no baseline: say so, compare nothing
                if incomparable not in failures:
                    failures.append(incomparable)
                baseline = None
            gate = self.profile.gate
            verdict = evaluate(metric, encoder=encoder.name, dataset=dataset.name, threshold=threshold,
                               baseline=baseline, baseline_source=str(self._session.run.baseline),
                               tolerance=self._session.tolerance, interval=interval, samples=samples,
                               units=units, threshold_on=self._session.run.threshold_on, seed=self.seed,
                               resamples=gate.resamples, level=gate.level)
            failures += verdict.failures
            record = Record(
                encoder=encoder.name, probe=metric.probe, dataset=dataset.name, metric=metric.metric,
                value=float(metric.value), spread=metric.spread, higher_is_better=spec.higher_is_better,
                threshold=threshold.value if threshold else None,
                threshold_source=threshold.source if threshold else None,
                baseline=baseline.value if baseline else None, passed=verdict.passed and not incomparable,
                nodeid=self._item.nodeid, details=metric.details_dict(), interval=interval, samples=samples,
                comparison=verdict.comparison, control_of=control_of, chance=metric.chance,
                settings_hash=probe_info.settings_hash, probe_version=probe_info.version,
                data_key=metric.data_key, units=units,
                uncertainty=metric.uncertainty if interval is None else None, layer=layer,
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

    def _incomparable(self, baseline: Record, metric: Metric, probe_info: "ProbeInfo", encoder: "Encoder",
                      dataset: "Dataset") -> str | None:
        """Why ``baseline`` may not be compared with this metric (a failure message), or None.

        Other data, another probe version, other settings or other derived data make it so;
        a baseline too old to tell is compared, with a warning (BaselineUncheckedWarning).
        """
        import warnings

        from pytest_visprobe.errors import BaselineUncheckedWarning
        from pytest_visprobe.report import comparability

        session = self._session
        other_data = session.baseline_data_mismatch(dataset)
        if other_data:
            return other_data
        assert session.baseline is not None
        found = comparability.check(baseline, session.baseline.probes.get(metric.probe), probe_info,
                                    metric.data_key, layer=getattr(encoder, "layer", None))
        if found.warning:
            warnings.warn(BaselineUncheckedWarning(f"{encoder.name} · {metric.probe} on {dataset.name}: "
                                                   f"{found.warning}"), stacklevel=2)
        if not found.differences:
            return None
        return (f"{encoder.name} · {metric.probe} on {dataset.name}: the baseline {session.run.baseline} is not "
                f"comparable with this run: {'; '.join(found.differences)}. Run with the baseline's settings "
                f"(its profile was {session.baseline.provenance.profile!r}), or accept this run as the new "
                f"baseline with --visprobe-bless.")

    def _uncertainty(self, metric: Metric, key: tuple[str, ...], dataset: "Dataset",
                     split: str) -> tuple[Interval | None, Samples | None, Units | None]:
        """The metric's 95 % interval and its compact per-sample (0/1) or per-unit record."""
        import numpy as np

        from pytest_visprobe.report.statistics import Bits, bootstrap_interval, is_binary, samples_key, seed_for

        gate = self.profile.gate
        if metric.units is not None:
            return self._unit_uncertainty(metric, key, dataset)
        if metric.per_sample is None:
            if metric.interval is None:
                return None, None, None
            low, high = metric.interval
            return Interval(low=float(low), high=float(high), method="probe"), None, None
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
        return interval, samples, None

    def _unit_uncertainty(self, metric: Metric, key: tuple[str, ...],
                          dataset: "Dataset") -> tuple[Interval | None, None, Units]:
        """Bootstrap over the metric's independent units; their rows are kept for paired tests."""
        from pytest_visprobe.report import units as unit_stats
        from pytest_visprobe.report.statistics import samples_key, seed_for

        gate = self.profile.gate
        stats: unit_stats.UnitStats = metric.units
        recomputed = stats.value()
        if abs(recomputed - metric.value) > 1e-6 * max(1.0, abs(metric.value)):
            raise ValueError(f"{metric.probe}.{metric.metric}: its per-unit statistics give {recomputed} but the "
                             f"value is {metric.value} (a probe bug)")
        source = metric.data_key or dataset.fingerprint
        record = Units(statistic=stats.statistic, unit=stats.unit, split=stats.split, n=stats.n,
                       key=samples_key(source, stats.split, stats.n), note=stats.note, columns=stats.columns,
                       arrays={k: unit_stats.encode_array(v) for k, v in stats.arrays.items()})
        try:
            low, high = unit_stats.interval(stats, seed_for(self.seed, *key), gate.resamples, gate.level)
        except ValueError:
            return None, None, record
        method = f"bootstrap over {stats.unit}s" + (f" and {stats.columns}s (crossed)" if stats.columns else "")
        method += f" ({stats.note})" if stats.note else ""
        return Interval(low=low, high=high, level=gate.level, method=method, resamples=gate.resamples), None, record

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
                has_feature_map=encoder.has_feature_map, **_layer_info(encoder),
            ).model_dump(mode="json")
        if dataset.name not in self._payload["datasets"]:
            self._payload["datasets"][dataset.name] = DatasetInfo(
                name=dataset.name, fingerprint=dataset.fingerprint,
                splits={name: len(split) for name, split in dataset.splits.items()},
                targets=sorted(dataset.targets),
            ).model_dump(mode="json")



def _layer_info(encoder: "Encoder") -> dict[str, Any]:
    """A layer view's source and depth, for the scorecard's per-layer table and depth plot."""
    source = getattr(encoder, "source", None)
    if getattr(encoder, "layer_of", None) is None or source is None:
        return {}
    layers = list(source.layers())
    return {"layer_of": encoder.layer_of,
            "layer_depth": layers.index(encoder.layer) if encoder.layer in layers else None}
