"""Noise-aware gating: intervals, per-sample bitsets, McNemar, the baseline rule, controls, schema."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binom, permutation_test
from torch import nn

from pytest_visprobe.report.gate import evaluate
from pytest_visprobe.encoders.controls import ControlUnavailable, random_init_copy
from pytest_visprobe.probes.label import LabelDetails, permuted_targets, selectivity
from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.errors import ConfigError
from pytest_visprobe.probes.spec import Metric
from pytest_visprobe.report.markdown import control_rows, format_cell
from pytest_visprobe.report.scorecard import (
    Interval,
    Provenance,
    Record,
    Samples,
    Scorecard,
    load_scorecard,
    with_floors,
    write_scorecard,
)
from pytest_visprobe.kernels.ranking import mean_average_precision
from pytest_visprobe.report.statistics import (
    Bits,
    bootstrap_interval,
    map_bootstrap_interval,
    map_of_resamples,
    mcnemar_exact,
    samples_key,
    seed_for,
)

# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize(("n", "p"), [(150, 0.8), (300, 0.5), (1000, 0.93)])
def test_bootstrap_interval_of_accuracy_matches_the_binomial(n: int, p: float) -> None:
    # resampling n 0/1 outcomes with k ones draws Binomial(n, k/n)/n exactly: its quantiles are the answer
    k = int(round(p * n))
    outcomes = np.r_[np.ones(k), np.zeros(n - k)]
    low, high = bootstrap_interval(outcomes, rng=seed_for(0, "acc"), resamples=1000)
    exact_low, exact_high = binom.ppf(0.025, n, k / n) / n, binom.ppf(0.975, n, k / n) / n
    assert abs(low - exact_low) <= 2.5 / n and abs(high - exact_high) <= 2.5 / n  # Monte-Carlo error only
    assert low <= k / n <= high


def test_bootstrap_interval_is_seeded_by_key_not_order() -> None:
    values = np.random.default_rng(1).random(200)
    a = bootstrap_interval(values, rng=seed_for(3, "enc", "probe"))
    assert a == bootstrap_interval(values, rng=seed_for(3, "enc", "probe"))
    assert a != bootstrap_interval(values, rng=seed_for(4, "enc", "probe"))
    assert bootstrap_interval(np.ones(50), rng=seed_for(0)) == (1.0, 1.0)


def test_bootstrap_interval_of_a_statistic_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=120), rng.normal(size=120)
    corr = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    low, high = bootstrap_interval((x, y), corr, rng=seed_for(0, "k"), resamples=400)
    reference_rng = seed_for(0, "k")
    draws = []
    for _ in range(400):
        rows = reference_rng.integers(0, 120, 120)
        draws.append(corr(x[rows], y[rows]))
    assert (low, high) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])), abs=1e-12)


def test_vectorised_map_bootstrap_equals_map_of_each_resample() -> None:
    rng = np.random.default_rng(0)
    y = rng.random((120, 6)) < 0.15
    y[:, 5] = False  # a column without positives is left out, as mean_average_precision does
    scores = np.round(rng.random((120, 6)) + y, 1)  # rounded: many ties
    rows = rng.integers(0, 120, (40, 120))
    reference = [mean_average_precision(y[r], scores[r])[0] for r in rows]
    assert map_of_resamples(y, scores, rows) == pytest.approx(reference, abs=1e-12)
    low, high = map_bootstrap_interval(y, scores, rng=seed_for(0, "m"), resamples=300)
    assert low < mean_average_precision(y, scores)[0] < high


def test_selectivity_interval_scores_both_heads_on_the_same_resampled_rows() -> None:
    """The attribute probe's selectivity (mAP − control mAP) resamples test rows once for both
    score matrices: checked against scikit-learn's average_precision_score in a direct loop."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(5)
    y = rng.random((90, 4)) < 0.3
    measured = y + rng.normal(0, 0.8, y.shape)
    control = rng.normal(0, 1, y.shape)
    got = map_bootstrap_interval(y, measured, control_scores=control, rng=seed_for(0, "s"), resamples=200, chunk=64)
    draw = seed_for(0, "s")
    rows = np.concatenate([draw.integers(0, 90, (min(64, 200 - start), 90)) for start in range(0, 200, 64)])

    def sk_map(scores: np.ndarray, r: np.ndarray) -> float:
        present = [j for j in range(4) if y[r, j].any()]
        return float(np.mean([average_precision_score(y[r, j], scores[r, j]) for j in present]))

    diffs = [sk_map(measured, r) - sk_map(control, r) for r in rows]
    assert got == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-9)
    assert got[0] > 0  # the measured scores carry the labels, the control's do not


def test_bits_round_trip_and_size() -> None:
    flags = np.random.default_rng(0).random(1001) < 0.7
    bits = Bits.from_array(flags)
    assert np.array_equal(bits.to_array(), flags)
    assert len(bits.packed) == 4 * math.ceil(math.ceil(1001 / 8) / 3)  # base64 of 126 bytes
    with pytest.raises(ValueError, match="bitset holds"):
        Bits(2000, bits.packed).to_array()


def test_mcnemar_exact_against_the_binomial_sum() -> None:
    base = np.array([1] * 40 + [0] * 10 + [1] * 12 + [0] * 3, dtype=bool)
    now = np.array([1] * 40 + [0] * 10 + [0] * 12 + [1] * 3, dtype=bool)
    test = mcnemar_exact(base, now)
    assert (test.n, test.worse, test.better) == (65, 12, 3)
    n, k = 15, 3
    tail = sum(math.comb(n, i) for i in range(0, k + 1)) / 2**n
    assert test.p_value == pytest.approx(min(1.0, 2 * tail), rel=1e-12)
    assert mcnemar_exact(base, base).p_value == 1.0


# ----------------------------------------------------------------------------- the baseline rule


def _record(value: float, *, interval=None, samples=None, higher=True) -> Record:
    return Record(encoder="enc", probe="label_probe", dataset="digits", metric="top1", value=value,
                  higher_is_better=higher, passed=True, nodeid="t", interval=interval, samples=samples)


def _samples(flags: np.ndarray, key: str = samples_key("fp", "test", 0)) -> Samples:
    bits = Bits.from_array(flags)
    return Samples(split="test", n=bits.n, key=key, bits=bits.packed)


def _check(now: np.ndarray, base: np.ndarray, tolerance: float = 0.02):
    baseline = _record(float(base.mean()), samples=_samples(base))
    metric = Metric("label_probe", "top1", float(now.mean()), per_sample=now)
    return evaluate(metric, encoder="enc", dataset="digits", threshold=None, baseline=baseline,
                    baseline_source="accepted.json", tolerance=tolerance, samples=_samples(now))


def test_paired_drop_within_noise_passes_beyond_fails() -> None:
    base = np.zeros(200, dtype=bool)
    base[:160] = True  # 0.80
    within = base.copy()
    within[150:160] = False  # 0.75: 10 newly wrong …
    within[160:166] = True  # … 6 newly right → 0.78, a drop of 0.02 + noise
    within[150:152] = True
    verdict = _check(within, base)
    assert verdict.comparison.method == "mcnemar" and verdict.passed
    assert verdict.comparison.p_value > 0.05
    beyond = base.copy()
    beyond[130:160] = False  # 30 newly wrong, none newly right → 0.65
    verdict = _check(beyond, base)
    assert not verdict.passed
    message = verdict.failures[0]
    for part in ("obtained 0.6500", "baseline 0.8000 − tolerance 0.02 = 0.7800", "McNemar exact p =",
                 "30 samples newly wrong, 0 newly right", "--visprobe-bless"):
        assert part in message, (part, message)


def test_paired_drop_that_is_significant_but_within_tolerance_passes() -> None:
    base = np.ones(5000, dtype=bool)
    now = base.copy()
    now[:50] = False  # 0.99: McNemar p ~ 1e-15, but a drop of 0.01 is within tolerance 0.02
    verdict = _check(now, base)
    assert verdict.passed and verdict.comparison.p_value < 1e-10


def test_other_samples_or_edited_values_fall_back_to_intervals() -> None:
    base = np.r_[np.ones(80), np.zeros(20)].astype(bool)
    metric = Metric("label_probe", "top1", 0.7, per_sample=np.r_[np.ones(70), np.zeros(30)])
    now_interval = Interval(low=0.61, high=0.79, method="bootstrap")
    other = _samples(np.r_[np.ones(70), np.zeros(30)].astype(bool), key="another-dataset")
    baseline = _record(0.8, samples=_samples(base), interval=Interval(low=0.72, high=0.88, method="bootstrap"))
    verdict = evaluate(metric, encoder="enc", dataset="digits", threshold=None, baseline=baseline,
                       baseline_source="b", tolerance=0.02, interval=now_interval, samples=other)
    assert verdict.comparison.method == "intervals" and "other samples" in verdict.comparison.note
    assert verdict.comparison.noise == pytest.approx(math.hypot(0.08, 0.09))
    assert verdict.passed  # drop 0.10 < 0.12 explained by the two intervals
    edited = baseline.model_copy(update={"value": 0.95})  # bitset mean 0.8 ≠ value
    verdict = evaluate(metric, encoder="enc", dataset="digits", threshold=None, baseline=edited,
                       baseline_source="b", tolerance=0.02, interval=now_interval,
                       samples=_samples(np.r_[np.ones(70), np.zeros(30)].astype(bool)))
    assert verdict.comparison.method == "intervals" and "edited by hand" in verdict.comparison.note
    assert not verdict.passed and "drop 0.2500 > 0.1204 explained by the 95 % intervals" in verdict.failures[0]


def test_baseline_without_interval_is_assumed_as_noisy_as_this_run() -> None:
    metric = Metric("attribute_probe", "mAP", 0.60)
    interval = Interval(low=0.55, high=0.65, method="probe")
    common = dict(encoder="e", dataset="d", threshold=None, baseline_source="b", tolerance=0.02, interval=interval)
    old = Record(encoder="e", probe="attribute_probe", dataset="d", metric="mAP", value=0.66,
                 higher_is_better=True, passed=True, nodeid="t")  # a version-1 record
    verdict = evaluate(metric, baseline=old, **common)
    assert verdict.passed and verdict.comparison.noise == pytest.approx(math.sqrt(2) * 0.05)
    assert not evaluate(metric, baseline=old.model_copy(update={"value": 0.68}), **common).passed
    # no uncertainty anywhere: the tolerance alone decides, as before
    assert evaluate(Metric("attribute_probe", "mAP", 0.60), baseline=old, **{**common, "interval": None}).failures


def _units_record(values: np.ndarray, sources: np.ndarray) -> tuple[Metric, "Units"]:
    from pytest_visprobe.report.scorecard import Units
    from pytest_visprobe.report.units import clustered, encode_array

    stats = clustered(values, sources, "source image")
    stored = Units(statistic=stats.statistic, unit=stats.unit, split="test", n=stats.n, key="views-key",
                   arrays={k: encode_array(v) for k, v in stats.arrays.items()})
    return Metric("transformation_linear", "grouped_top1", float(values.mean()), units=stats), stored


def test_clustered_views_are_compared_by_a_paired_test_over_sources() -> None:
    """Views of one source share its outcome: a drop McNemar would call significant on 3 × 40
    views is noise over 40 sources (the paired bootstrap's interval of the drop includes 0, the
    sign-flip test over sources is not significant), and a larger drop is caught."""
    rng = np.random.default_rng(0)
    sources = np.repeat(np.arange(40), 3)
    base = np.repeat(rng.random(40) < 0.7, 3).astype(float)
    noisy = base.copy()
    flip = rng.choice(40, 6, replace=False)  # 6 sources change, 4 newly wrong and 2 newly right
    for k, s in enumerate(flip):
        noisy[sources == s] = 0.0 if k < 4 else 1.0
    metric, now_units = _units_record(noisy, sources)
    base_metric, base_units = _units_record(base, sources)
    baseline = Record(encoder="e", probe="transformation_linear", dataset="photos", metric="grouped_top1",
                      value=base_metric.value, higher_is_better=True, passed=True, nodeid="t", units=base_units)
    common = dict(encoder="e", dataset="photos", threshold=None, baseline=baseline, baseline_source="b",
                  tolerance=0.0, seed=0, resamples=500)
    verdict = evaluate(metric, units=now_units, **common)
    assert verdict.comparison.method == "paired_sign_flip" and verdict.comparison.unit == "source image"
    assert verdict.passed and verdict.comparison.drop_low <= 0 <= verdict.comparison.drop_high
    b, n = base.reshape(40, 3).sum(1), noisy.reshape(40, 3).sum(1)
    changed = b != n  # sources whose outcome did not change add nothing to any sign pattern
    exact = permutation_test((b[changed], n[changed]), lambda x, y, axis: np.sum(x - y, axis=axis),
                             permutation_type="samples", n_resamples=np.inf, vectorized=True).pvalue
    assert verdict.comparison.p_value == pytest.approx(exact)
    worse = base.copy()
    worse[np.isin(sources, np.flatnonzero(base[::3])[:12])] = 0.0  # 12 sources newly wrong
    metric, now_units = _units_record(worse, sources)
    verdict = evaluate(metric, units=now_units, **common)
    assert not verdict.passed and verdict.comparison.p_value < 0.05
    assert "paired over source images" in verdict.failures[0] and "sign-flip test p =" in verdict.failures[0]


def test_a_paired_test_that_cannot_reach_significance_says_so_in_the_scorecard() -> None:
    """Five source images: the exact sign-flip test's smallest p is 2 / 2**5 = 0.0625, so even
    all five turning wrong is not significant. The verdict stays honest (noise could explain it)
    and the comparison's note, listed in the Markdown, says the metric is not gateable so."""
    from pytest_visprobe.report.markdown import to_markdown
    from pytest_visprobe.report.scorecard import Scorecard

    sources = np.repeat(np.arange(5), 3)
    base = np.ones(15)
    metric, now_units = _units_record(np.zeros(15), sources)
    base_metric, base_units = _units_record(base, sources)
    baseline = Record(encoder="e", probe="transformation_linear", dataset="photos", metric="grouped_top1",
                      value=base_metric.value, higher_is_better=True, passed=True, nodeid="t", units=base_units)
    verdict = evaluate(metric, units=now_units, encoder="e", dataset="photos", threshold=None, baseline=baseline,
                       baseline_source="b", tolerance=0.0, seed=0, resamples=200)
    c = verdict.comparison
    assert c.method == "paired_sign_flip" and c.p_value == pytest.approx(2 / 32) and verdict.passed
    assert c.note.startswith("only 5 source images: no sign pattern of so few gives p < 0.05")
    record = baseline.model_copy(update={"value": 0.0, "baseline": 1.0, "comparison": c})
    md = to_markdown(Scorecard(provenance=_provenance(), records=[record]))
    assert "## Comparisons with a caveat" in md
    assert "- transformation_linear.grouped_top1 on photos (`e`): only 5 source images" in md


def test_fewshot_outcomes_pair_over_images_and_support_sets_and_an_old_row_only_baseline_falls_back() -> None:
    from pytest_visprobe.report.scorecard import Units
    from pytest_visprobe.report.units import UnitStats, encode_array

    rng = np.random.default_rng(1)
    base = rng.random((150, 6)) < 0.6
    now = base.copy()
    now &= rng.random((150, 6)) < 0.8  # a fifth of the hits lost, in every support set

    def stored(outcomes: np.ndarray, columns: str | None) -> Units:
        value = outcomes if columns else outcomes.mean(axis=1)
        return Units(statistic="mean", unit="test image", split="test", n=150, key="k", columns=columns,
                     arrays={"value": encode_array(value)})

    metric = Metric("fewshot", "top1_5shot", float(now.mean()),
                    units=UnitStats("mean", "test image", {"value": now}, columns="support set"))
    baseline = Record(encoder="e", probe="fewshot", dataset="d", metric="top1_5shot", value=float(base.mean()),
                      higher_is_better=True, passed=True, nodeid="t", units=stored(base, "support set"))
    common = dict(encoder="e", dataset="d", threshold=None, baseline_source="b", tolerance=0.0, seed=0,
                  resamples=300, units=stored(now, "support set"))
    verdict = evaluate(metric, baseline=baseline, **common)
    assert verdict.comparison.method == "paired_bootstrap" and not verdict.passed
    old = baseline.model_copy(update={"units": stored(base, None)})  # written before support sets were resampled
    fallback = evaluate(metric, baseline=old, interval=Interval(low=0.4, high=0.5, method="bootstrap"), **common)
    assert fallback.comparison.method == "intervals"
    assert fallback.comparison.note == "the baseline resampled test images, this run test images and support sets"


def test_threshold_on_the_bound_fails_a_metric_only_luckily_above_its_floor() -> None:
    from pytest_visprobe.report.thresholds import Threshold

    metric = Metric("label_probe", "top1", 0.62)
    threshold = Threshold(value=0.6, source="visprobe_thresholds.toml")
    interval = Interval(low=0.55, high=0.69, method="bootstrap")
    common = dict(encoder="e", dataset="d", threshold=threshold, baseline=None, baseline_source=None,
                  tolerance=0.02, interval=interval)
    assert evaluate(metric, **common).passed
    verdict = evaluate(metric, threshold_on="bound", **common)
    assert not verdict.passed and "the 95 % interval's lower bound is 0.5500 (value 0.6200" in verdict.failures[0]
    assert evaluate(metric, threshold_on="bound", **{**common, "interval": Interval(low=0.61, high=0.63,
                                                                                    method="bootstrap")}).passed


# ----------------------------------------------------------------------------- scorecard schema


def _provenance() -> Provenance:
    return Provenance(created=datetime(2024, 1, 2, tzinfo=timezone.utc), profile="quick", seed=0,
                      python="3.11", platform="linux", packages={}, command=["pytest"])


def test_version_1_scorecard_still_loads_as_a_baseline(tmp_path: Path) -> None:
    old = {"schema_version": 1, "provenance": json.loads(_provenance().model_dump_json()),
           "records": [{"encoder": "e", "probe": "label_probe", "dataset": "d", "metric": "top1", "value": 0.5,
                        "higher_is_better": True, "baseline": None, "passed": True, "nodeid": "t",
                        "duration": 0.1, "details": {}}]}
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    card = load_scorecard(path)
    # migrated to the current schema on load: no intervals to compare with, nothing invented
    assert card.schema_version == 5 and card.records[0].interval is None and card.records[0].samples is None


def test_new_fields_round_trip_and_malformed_ones_are_one_clear_error(tmp_path: Path) -> None:
    flags = np.r_[np.ones(7), np.zeros(3)].astype(bool)
    record = _record(0.7, interval=Interval(low=0.4, high=0.9, method="bootstrap", resamples=1000),
                     samples=_samples(flags))
    card = Scorecard(provenance=_provenance(), records=[record])
    json_path, _ = write_scorecard(card, tmp_path)
    loaded = load_scorecard(json_path)
    assert loaded.schema_version == 5 and loaded.records == [record]
    data = json.loads(json_path.read_text())
    data["records"][0]["interval"] = {"low": 0.4}
    json_path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"records\.0\.interval\.high: Field required.*--visprobe-baseline"):
        load_scorecard(json_path)


def test_cells_show_interval_and_arrows_by_direction() -> None:
    record = _record(0.70, interval=Interval(low=0.6, high=0.8, method="bootstrap"))
    assert format_cell(record) == "0.700 [0.600, 0.800]"
    worse = record.model_copy(update={"baseline": 0.75, "passed": True})
    assert format_cell(worse) == "0.700 [0.600, 0.800] ▼ 0.050 ✓"
    better = record.model_copy(update={"baseline": 0.65, "passed": True})
    assert format_cell(better) == "0.700 [0.600, 0.800] ▲ 0.050 ✓"
    lower = _record(0.30, higher=False).model_copy(update={"baseline": 0.35, "passed": False})
    assert format_cell(lower) == "0.300 ▲ 0.050 ✗"  # lower is better: a fall is an improvement


def test_markdown_lists_each_failing_verdict_and_how_each_interval_was_made() -> None:
    from pytest_visprobe.report.markdown import to_markdown, verdict_rows
    from pytest_visprobe.report.scorecard import Comparison, Scorecard

    failing = _record(0.65, interval=Interval(low=0.6, high=0.7, method="bootstrap over source images")).model_copy(
        update={"baseline": 0.80, "passed": False, "comparison": Comparison(
            method="paired_bootstrap", drop=0.15, drop_low=0.08, drop_high=0.22, p_value=0.002, unit="source image")})
    no_interval = Record(encoder="enc", probe="detection_probe", dataset="shapes", metric="mAP", value=0.1,
                         higher_is_better=True, passed=True, nodeid="t", uncertainty="no interval yet: because")
    card = Scorecard(provenance=_provenance(), records=[failing, no_interval])
    headers, rows = verdict_rows(card)
    assert rows == [["enc", "label_probe.top1", "digits", "0.6500", "0.8000", "+0.1500 [+0.0800, +0.2200]",
                     "paired bootstrap", "0.002", "source image"]]
    md = to_markdown(card)
    assert "## Gate verdicts" in md
    assert "- label_probe.top1: bootstrap over source images" in md
    assert "- detection_probe.mAP: none — no interval yet: because" in md


def test_floors_come_from_the_random_init_control_records() -> None:
    real = _record(0.8).model_copy(update={"chance": 0.1})
    control = _record(0.3).model_copy(update={"encoder": "enc~random-init", "control_of": "enc"})
    records = with_floors([real, control])
    assert records[0].floor == 0.3 and records[1].floor is None
    headers, body = control_rows(Scorecard(provenance=_provenance(), records=records))
    assert body == [["enc", "label_probe", "digits", "top1", "0.100", "0.300", "—", "0.800", "—"]]


# ----------------------------------------------------------------------------- controls


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.scale = nn.Parameter(torch.full((4,), 3.0))  # owned by a module without reset_parameters

    def init_weights(self) -> None:
        nn.init.normal_(self.scale)

    def forward(self, x):
        return self.bn(self.conv(x)) * self.scale[:, None, None]


def test_random_init_copy_reinitialises_every_parameter_and_keeps_the_original() -> None:
    torch.manual_seed(0)
    encoder = ModuleEncoder(_Net(), name="net")
    with torch.no_grad():
        encoder.module.bn.running_mean.fill_(5.0)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    control = random_init_copy(encoder, seed=0)
    assert control.name == "net~random-init" and control.control_of == "net" and not control.training
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key])  # the encoder itself is untouched
    changed = [k for k, v in control.state_dict().items() if not torch.equal(v, before[k])]
    assert {"module.conv.weight", "module.conv.bias", "module.scale", "module.bn.running_mean"} <= set(changed)
    again = random_init_copy(encoder, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(control.state_dict().values(), again.state_dict().values()))
    assert control.fingerprint() != encoder.fingerprint()


def test_random_init_copy_is_unavailable_with_a_reason() -> None:
    with pytest.raises(ControlUnavailable, match="no parameters"):
        random_init_copy(ModuleEncoder(nn.Flatten(), name="flat"), seed=0)

    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x.mean(dim=(2, 3)) * self.weight

    with pytest.raises(ControlUnavailable, match=r"'module' \(Bare\) owns parameters but has neither reset_parameters"):
        random_init_copy(ModuleEncoder(Bare(), name="bare"), seed=0)


def test_random_init_copy_of_a_timm_vit_uses_init_weights() -> None:
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=1)
    encoder = ModuleEncoder(model, name="vit")
    control = random_init_copy(encoder, seed=0)
    assert not torch.equal(control.module.pos_embed, model.pos_embed)
    assert not torch.equal(control.module.patch_embed.proj.weight, model.patch_embed.proj.weight)


def test_permuted_targets_keep_frequencies_and_break_the_pairing() -> None:
    labels = np.repeat(np.arange(5), 40)
    shuffled = permuted_targets(labels, seed=0)
    assert np.array_equal(np.bincount(shuffled), np.bincount(labels))
    assert (shuffled == labels).mean() < 0.4
    assert np.array_equal(shuffled, permuted_targets(labels, seed=0))
    rows = np.random.default_rng(0).random((30, 4)) < 0.5
    assert sorted(map(tuple, permuted_targets(rows, 1))) == sorted(map(tuple, rows))


def test_selectivity_is_measured_minus_control_with_paired_per_sample_differences() -> None:
    real = Metric("label_probe", "top1", 0.75, per_sample=np.array([1, 1, 1, 0]), chance=0.5)
    control = Metric("label_probe", "top1", 0.25, per_sample=np.array([0, 1, 0, 0]))
    gap = selectivity(real, control, LabelDetails)
    assert (gap.metric, gap.value) == ("selectivity", 0.5)
    assert gap.per_sample.tolist() == [1, 0, 1, 0] and gap.per_sample.mean() == gap.value
    assert gap.details.control == 0.25 and gap.chance == 0.5


def test_a_threshold_may_be_set_on_selectivity(tmp_path: Path) -> None:
    from pytest_visprobe.report.thresholds import load_thresholds

    path = tmp_path / "visprobe_thresholds.toml"
    path.write_text('[[threshold]]\nprobe = "label_probe"\nmetric = "selectivity"\nvalue = 0.3\n')
    threshold = load_thresholds(path).lookup("label_probe", "selectivity", "digits", "enc")
    gap = Metric("label_probe", "selectivity", 0.1)
    verdict = evaluate(gap, encoder="enc", dataset="digits", threshold=threshold, baseline=None,
                       baseline_source=None, tolerance=0.02)
    assert not verdict.passed and "label_probe.selectivity on digits: obtained 0.1000, expected >= 0.3000" in verdict.failures[0]
