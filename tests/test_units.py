"""Per-unit statistics (report/units.py): each interval and paired test against a direct loop,
cluster bootstraps against a reference on data with a known answer, and the comparability key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from pytest_visprobe.kernels.segmentation import per_class_iou, per_image_counts
from pytest_visprobe.report import comparability, units
from pytest_visprobe.report.scorecard import ProbeInfo, Record


def _percentile(draws, level=0.95):
    tail = 100 * (1 - level) / 2
    return tuple(np.percentile(np.asarray(draws), [tail, 100 - tail]))


def _masks(n=24, labels=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, labels, (n, size, size), generator=g)
    noise = torch.randint(0, labels, (n, size, size), generator=g)
    keep = torch.rand((n, size, size), generator=g) < 0.6
    return torch.where(keep, target, noise), target  # pred right on ~60 % of pixels


def test_per_image_counts_sum_to_torchmetrics_miou():
    pred, target = _masks()
    inter, union = per_image_counts(pred, target, 4)
    iou = per_class_iou(pred, target, 4)
    stats = units.UnitStats("miou", "test image", {"intersection": inter, "union": union})
    assert stats.value() == pytest.approx(float(np.nanmean(iou)), abs=1e-6)  # torchmetrics: float32


def test_miou_interval_equals_a_direct_loop_over_resampled_images():
    pred, target = _masks()
    inter, union = per_image_counts(pred, target, 4)
    stats = units.UnitStats("miou", "test image", {"intersection": inter, "union": union})
    got = units.interval(stats, np.random.default_rng(5), 200, 0.95)
    rows = np.random.default_rng(5).integers(0, len(pred), (200, len(pred)))
    direct = [float(np.nanmean(per_class_iou(pred[torch.as_tensor(r)], target[torch.as_tensor(r)], 4))) for r in rows]
    assert got == pytest.approx(_percentile(direct), abs=1e-6)


def test_nmi_and_ari_intervals_hold_the_partition_fixed_and_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 90)
    clusters = np.where(rng.random(90) < 0.7, labels, rng.integers(0, 3, 90))
    rows = np.random.default_rng(1).integers(0, 90, (100, 90))
    for name, reference in (("nmi", normalized_mutual_info_score), ("ari", adjusted_rand_score)):
        stats = units.UnitStats(name, "test sample", {"labels": labels, "clusters": clusters}, note="partition fixed")
        assert stats.value() == pytest.approx(reference(labels, clusters))
        direct = [reference(labels[r], clusters[r]) for r in rows]
        assert units.interval(stats, np.random.default_rng(1), 100, 0.95) == pytest.approx(_percentile(direct))


def test_cluster_bootstrap_resamples_whole_sources():
    """Views of one source image share its outcome: three copies of each of 40 independent
    outcomes carry the information of 40 samples, not 120. The cluster bootstrap's interval is
    the one of the 40 source means (known answer), wider than a naive bootstrap of 120 views."""
    rng = np.random.default_rng(3)
    per_source = rng.random(40) < 0.6
    views = np.repeat(per_source.astype(float), 3)
    sources = np.repeat(np.arange(40), 3)
    stats = units.clustered(views, sources, "source image")
    assert stats.n == 40 and stats.value() == pytest.approx(views.mean())
    clustered = units.interval(stats, np.random.default_rng(7), 2000, 0.95)
    rows = np.random.default_rng(7).integers(0, 40, (2000, 40))
    reference = _percentile([per_source[r].mean() for r in rows])
    assert clustered == pytest.approx(reference)
    naive_rows = np.random.default_rng(7).integers(0, 120, (2000, 120))
    naive = _percentile([views[r].mean() for r in naive_rows])
    assert (clustered[1] - clustered[0]) > 1.4 * (naive[1] - naive[0])  # about sqrt(3) wider


def test_clustered_ratio_with_unequal_cluster_sizes_equals_an_expanded_loop():
    scores = np.array([1, 0, 1, 1, 0, 0, 1, 1, 1, 0], float)
    clusters = np.array([5, 5, 2, 2, 2, 9, 7, 7, 7, 7])
    stats = units.clustered(scores, clusters, "image")
    rows = np.random.default_rng(2).integers(0, stats.n, (300, stats.n))
    ids = np.unique(clusters)
    direct = [np.concatenate([scores[clusters == ids[i]] for i in r]).mean() for r in rows]
    assert units.interval(stats, np.random.default_rng(2), 300, 0.95) == pytest.approx(_percentile(direct))


def test_paired_bootstrap_equals_a_direct_loop_and_detects_a_real_drop():
    rng = np.random.default_rng(4)
    base = (rng.random(300) < 0.8).astype(float)
    now = base.copy()
    now[np.flatnonzero(base)[:30]] = 0  # 30 samples newly wrong, none newly right: drop 0.1
    b = units.UnitStats("mean", "test sample", {"value": base})
    c = units.UnitStats("mean", "test sample", {"value": now})
    result = units.paired_bootstrap(b, c, higher_is_better=True, rng=np.random.default_rng(9), resamples=500, level=0.95)
    rows = np.random.default_rng(9).integers(0, 300, (500, 300))
    diffs = np.array([base[r].mean() - now[r].mean() for r in rows])
    assert result.drop == pytest.approx(0.1)
    assert (result.low, result.high) == pytest.approx(_percentile(diffs))
    assert result.test == "sign-flip" and result.p_value == pytest.approx(1 / 501)  # no sign pattern reaches 30 of 30
    assert result.p_value < 0.05 and result.low > 0
    same = units.paired_bootstrap(b, b, higher_is_better=True, rng=np.random.default_rng(9), resamples=500, level=0.95)
    assert same.drop == 0 and same.p_value == 1.0
    lower = units.paired_bootstrap(c, b, higher_is_better=False, rng=np.random.default_rng(9), resamples=500, level=0.95)
    assert lower.drop == pytest.approx(0.1)  # for a lower-is-better statistic, rising is worse


@pytest.mark.parametrize("statistic", ["mean", "ratio"])
def test_sign_flip_p_equals_scipys_paired_permutation_test(statistic):
    """The p-value of an additive statistic is the paired randomisation test: exactly scipy's
    permutation_test over within-pair swaps when enumerated (few changed units), and within
    Monte Carlo error of it for many units."""
    from scipy.stats import permutation_test

    def total(x, y, axis):
        return np.sum(x - y, axis=axis)

    rng = np.random.default_rng(12)
    for n, changed in ((40, 12), (400, 150)):
        weight = rng.integers(1, 5, n).astype(float) if statistic == "ratio" else np.ones(n)
        base = np.floor(rng.random(n) * (weight + 1))
        now = base.copy()
        idx = rng.choice(n, changed, replace=False)
        now[idx] = np.floor(rng.random(changed) * (weight[idx] + 1))  # some rise, some fall, some stay
        arrays = (lambda v: {"numerator": v, "denominator": weight}) if statistic == "ratio" else (lambda v: {"value": v})
        b, c = units.UnitStats(statistic, "image", arrays(base)), units.UnitStats(statistic, "image", arrays(now))
        result = units.paired_bootstrap(b, c, higher_is_better=True, rng=np.random.default_rng(1), resamples=4000,
                                        level=0.95)
        moved = base != now
        assert result.test == "sign-flip"
        if moved.sum() <= units.EXACT_SIGN_FLIPS:
            reference = permutation_test((base[moved], now[moved]), total, permutation_type="samples",
                                         n_resamples=np.inf, vectorized=True).pvalue
            assert result.p_value == pytest.approx(reference)
        else:
            reference = permutation_test((base, now), total, permutation_type="samples", n_resamples=20000,
                                         vectorized=True, random_state=2).pvalue
            assert abs(result.p_value - reference) < 0.03 and 0.01 < reference < 0.99  # a p worth comparing


def test_statistics_that_are_not_additive_keep_the_bootstrap_p():
    """Crossed units, a ratio whose weights changed between runs, and non-additive statistics
    (mIoU) fall back to the bootstrap's percentile p."""
    rng = np.random.default_rng(3)
    outcomes = rng.random((50, 4)) < 0.6
    crossed = units.UnitStats("mean", "test image", {"value": outcomes}, columns="support set")
    assert units.paired_bootstrap(crossed, crossed, higher_is_better=True, rng=rng, resamples=50,
                                  level=0.95).test == "bootstrap"
    num = rng.integers(0, 3, 30).astype(float)
    a = units.UnitStats("ratio", "image", {"numerator": num, "denominator": np.full(30, 3.0)})
    b = units.UnitStats("ratio", "image", {"numerator": num, "denominator": np.full(30, 4.0)})
    assert units.unit_differences(a, b) is None
    assert units.paired_bootstrap(a, b, higher_is_better=True, rng=rng, resamples=50, level=0.95).test == "bootstrap"
    counts = {"intersection": rng.integers(0, 5, (20, 3)), "union": rng.integers(5, 9, (20, 3))}
    miou = units.UnitStats("miou", "test image", counts)
    assert units.unit_differences(miou, miou) is None


def test_crossed_bootstrap_resamples_rows_and_columns_together():
    """Few-shot outcomes are test images × support sets. On additive data x_ij = a_i + b_j a
    resample's mean is mean(a[rows]) + mean(b[cols]) exactly (known answer), so the crossed
    interval equals the percentile interval of that sum, and is wider than resampling rows alone
    by the support sets' share of the variance."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 60), rng.normal(0, 1, 8)
    stats = units.UnitStats("mean", "test image", {"value": a[:, None] + b[None, :]}, columns="support set")
    assert (stats.n, stats.n_columns) == (60, 8)
    crossed = units.interval(stats, np.random.default_rng(11), 2000, 0.95)
    draw = np.random.default_rng(11)
    rows, cols = draw.integers(0, 60, (2000, 60)), draw.integers(0, 8, (2000, 8))
    reference = _percentile([a[r].mean() + b[c].mean() for r, c in zip(rows, cols)])
    assert crossed == pytest.approx(reference)
    rows_only = units.interval(units.UnitStats("mean", "test image", {"value": a[:, None] + b[None, :]}),
                               np.random.default_rng(11), 2000, 0.95)
    width = np.sqrt(a.var() / 60 + b.var() / 8) / np.sqrt(a.var() / 60)
    assert (crossed[1] - crossed[0]) / (rows_only[1] - rows_only[0]) == pytest.approx(width, rel=0.15)


def test_crossed_paired_bootstrap_equals_a_direct_loop():
    rng = np.random.default_rng(6)
    base = rng.random((200, 5)) < 0.7
    now = base.copy()
    now[:, 2] = False  # one support set went wrong everywhere: a drop the columns must carry
    b = units.UnitStats("mean", "test image", {"value": base}, columns="support set")
    c = units.UnitStats("mean", "test image", {"value": now}, columns="support set")
    result = units.paired_bootstrap(b, c, higher_is_better=True, rng=np.random.default_rng(3), resamples=400,
                                    level=0.95)
    draw = np.random.default_rng(3)
    rows, cols = draw.integers(0, 200, (400, 200)), draw.integers(0, 5, (400, 5))
    diffs = np.array([base[r][:, k].mean() - now[r][:, k].mean() for r, k in zip(rows, cols)])
    assert result.drop == pytest.approx(base.mean() - now.mean())
    assert (result.low, result.high) == pytest.approx(_percentile(diffs))
    with pytest.raises(ValueError, match="same units"):
        units.paired_bootstrap(b, units.UnitStats("mean", "test image", {"value": base[:, :4]}, columns="support set"),
                               higher_is_better=True, rng=np.random.default_rng(0), resamples=10, level=0.95)
    with pytest.raises(ValueError, match="second axis"):
        units.UnitStats("mean", "test image", {"value": base[:, 0]}, columns="support set")


def test_arrays_round_trip_and_corrupt_data_is_refused():
    for array in (np.arange(12, dtype=np.int64).reshape(3, 4), np.linspace(0, 1, 5),
                  np.array([[True, False], [False, True]])):
        assert np.array_equal(units.decode_array(units.encode_array(array)), array)
    assert units.encode_array(np.ones((4, 10), bool))["dtype"] == "|u1"  # a byte per 0/1 outcome
    stored = units.encode_array(np.arange(6))
    with pytest.raises(ValueError, match="values stored for shape"):
        units.decode_array({**stored, "shape": [7]})
    with pytest.raises(ValueError):
        units.decode_array({**stored, "data": "not base64!"})


def test_compact_dtypes_round_trip_as_given_and_old_dtypes_still_decode():
    compact = [np.array([0.25, np.nan, 1e-3], dtype=np.float32), np.array([0, 255], dtype=np.uint8),
               np.array([-1, 127], dtype=np.int8), np.array([0, 1023], dtype=np.uint16),
               np.array([-1, 300], dtype=np.int16)]
    for array in compact:
        stored = units.encode_array(array)
        assert stored["dtype"] == array.dtype.str
        assert np.array_equal(units.decode_array(stored), array, equal_nan=True)
    old = {"dtype": "<f8", "shape": [2], "data": units.base64.b64encode(np.array([0.5, 2.0]).tobytes()).decode()}
    assert units.decode_array(old).tolist() == [0.5, 2.0]
    assert units.encode_array(np.array([True, False]))["dtype"] == "|u1"  # 0/1 outcomes: a byte each
    assert units.encode_array(np.array([3, 4], dtype=np.int64))["dtype"] == "<i4"  # other dtypes as before


def test_unknown_statistic_names_the_registered_ones():
    with pytest.raises(KeyError, match="miou"):
        units.UnitStats("mIoU", "image", {"x": np.ones(3)})


# --------------------------------------------------------------------------- comparability


def _record(**update) -> Record:
    fields = dict(encoder="e", probe="label_probe", dataset="d", metric="top1", value=0.5, higher_is_better=True,
                  passed=True, nodeid="n", settings_hash="aaa", probe_version=1)
    return Record(**{**fields, **update})


def test_setting_differences_are_named_field_by_field():
    base = ProbeInfo(version=1, settings={"recipe": "lbfgs", "head": {"epochs": 10}, "seed": 0}, settings_hash="aaa")
    now = ProbeInfo(version=1, settings={"recipe": "adam", "head": {"epochs": 20}, "seed": 0}, settings_hash="bbb")
    found = comparability.check(_record(), base, now, data_key=None)
    assert found.differences == ("label_probe.head.epochs: 10 → 20", "label_probe.recipe: lbfgs → adam")


def test_probe_version_and_derived_data_make_records_incomparable():
    info = ProbeInfo(version=2, settings={}, settings_hash="aaa")
    found = comparability.check(_record(data_key="views1"), info, info, data_key="views2")
    assert found.differences == ("label_probe definition: version 1 → 2",
                                 "label_probe derived data (e.g. transformed views): views1 → views2")
    assert comparability.check(_record(), ProbeInfo(version=1, settings={}, settings_hash="aaa"),
                               ProbeInfo(version=1, settings={}, settings_hash="aaa"), None).differences == ()


def test_a_baseline_without_settings_is_compared_with_a_warning():
    found = comparability.check(_record(settings_hash=None), None,
                                ProbeInfo(version=1, settings={}, settings_hash="x"), None)
    assert found.differences == () and "could not be checked" in found.warning


def test_contingency_nmi_and_ari_equal_sklearn_on_random_partitions():
    """The statistics are computed from the contingency table (sklearn's argument checks cost
    ~1 ms a call, times 1,000 resamples); they must equal sklearn's, degenerate cases included."""
    rng = np.random.default_rng(0)
    nmi, ari = units.STATISTICS.get("nmi"), units.STATISTICS.get("ari")
    for _ in range(300):
        n = int(rng.integers(2, 60))
        a, b = rng.integers(0, rng.integers(1, 6), n), rng.integers(0, rng.integers(1, 6), n)
        assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-10)
        assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-10)
