"""VAW's partial labels: unknown attributes are out of the loss and out of the scoring.

References: scikit-learn's average_precision_score per attribute on the labelled rows, its
LogisticRegression fitted per attribute on the labelled rows, and plain loops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from real_formats import VAW_ATTRIBUTES, write_vaw


def partial_labels(seed, n=120, a=6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, a)) < 0.3).astype(np.uint8)
    labelled = rng.random((n, a)) < 0.6
    labelled[:3] = True  # every column has a labelled positive and negative
    y[0], y[1] = 1, 0
    scores = rng.normal(size=(n, a)) + 1.5 * y  # informative, with ties from rounding
    return y, labelled, np.round(scores, 1)


def test_map_is_sklearn_ap_per_attribute_on_its_labelled_rows():
    from sklearn.metrics import average_precision_score

    from pytest_visprobe.kernels.ranking import mean_average_precision

    y, labelled, scores = partial_labels(0)
    value, per_column = mean_average_precision(y, scores, labelled)
    reference = [average_precision_score(y[labelled[:, j], j], scores[labelled[:, j], j]) for j in range(y.shape[1])]
    np.testing.assert_allclose(per_column, reference, atol=1e-12)
    assert value == pytest.approx(np.mean(reference), abs=1e-12)
    # unknown entries scored as negatives (the old behaviour) give another number
    assert abs(mean_average_precision(y, scores)[0] - value) > 1e-3


def test_bootstrap_resamples_with_partial_labels_equal_map_on_the_resampled_rows():
    from pytest_visprobe.kernels.ranking import mean_average_precision
    from pytest_visprobe.report.statistics import map_of_resamples

    y, labelled, scores = partial_labels(1, n=40)
    rows = np.random.default_rng(2).integers(0, 40, (5, 40))
    fast = map_of_resamples(y, scores, rows, labelled)
    for b in range(5):
        r = rows[b]
        expected = mean_average_precision(y[r], scores[r], labelled[r])[0]
        assert fast[b] == pytest.approx(expected, abs=1e-9)


def test_mean_recall_at_15_matches_a_plain_loop():
    from pytest_visprobe.kernels.ranking import mean_recall_at_k

    rng = np.random.default_rng(3)
    y = (rng.random((30, 40)) < 0.2).astype(np.uint8)
    labelled = rng.random((30, 40)) < 0.7
    probabilities = rng.random((30, 40))
    recalls = []
    for j in range(40):
        hits = positives = 0
        for i in range(30):
            if y[i, j] and labelled[i, j]:
                positives += 1
                rank = sorted(range(40), key=lambda c: -probabilities[i, c]).index(j)
                hits += rank < 15 and probabilities[i, j] > 0.5
        if positives:
            recalls.append(hits / positives)
    assert mean_recall_at_k(y, probabilities, labelled, k=15) == pytest.approx(np.mean(recalls), abs=1e-12)


def test_unknown_labels_are_out_of_the_loss():
    """Multi-label BCE with L2 separates by column, so each column's fit must equal sklearn's
    logistic regression on that column's labelled rows (C = 1 / (N · weight decay))."""
    from sklearn.linear_model import LogisticRegression

    from pytest_visprobe.kernels.linear import fit_linear

    rng = np.random.default_rng(4)
    n, d, a, decay = 150, 5, 3, 0.05
    x = rng.normal(size=(n, d))
    y = (x @ rng.normal(size=(d, a)) + rng.normal(size=(n, a)) > 0).astype(np.float64)
    labelled = rng.random((n, a)) < 0.5
    targets = torch.as_tensor(np.where(labelled, y, np.nan), dtype=torch.float32)
    weight, bias = fit_linear(torch.as_tensor(x, dtype=torch.float32), targets, n_outputs=a,
                              weight_decay=decay, multilabel=True, max_iter=500)
    for j in range(a):
        rows = labelled[:, j]
        reference = LogisticRegression(C=1.0 / (n * decay), tol=1e-10, max_iter=10_000).fit(x[rows], y[rows, j])
        np.testing.assert_allclose(weight[:, j].numpy(), reference.coef_[0], atol=2e-3)
        assert float(bias[j]) == pytest.approx(float(reference.intercept_[0]), abs=2e-3)


def test_vaw_loader_marks_explicit_positives_and_negatives(tmp_path):
    from pytest_visprobe.datasets import load_dataset

    instances = write_vaw(tmp_path)
    ds = load_dataset("vaw", root=tmp_path, image_size=8)
    for split, records in (("train", instances["train_part1.json"] + instances["train_part2.json"]),
                           ("test", instances["test.json"])):
        mask = ds.split(split).attribute_mask
        assert mask.dtype == bool and mask.shape == (len(records), len(VAW_ATTRIBUTES))
        for row, record in zip(mask, records):
            expected = {VAW_ATTRIBUTES.index(a) for a in record["positive_attributes"] + record["negative_attributes"]}
            assert set(np.flatnonzero(row)) == expected
    assert ds.split("test").subset([1]).attribute_mask.shape == (1, len(VAW_ATTRIBUTES))


def test_attribute_probe_scores_explicit_labels_only():
    from sklearn.metrics import average_precision_score

    from pytest_visprobe.probes.attributes import attribute_map
    from pytest_visprobe.probes.heads import LinearProbeConfig

    y, labelled, _ = partial_labels(5, n=200)
    rng = np.random.default_rng(6)
    x = torch.as_tensor(y + rng.normal(scale=0.8, size=y.shape), dtype=torch.float32)
    names = [f"a{j}" for j in range(y.shape[1])]
    metric = attribute_map(x[:120], y[:120], x[120:], y[120:], attribute_names=names,
                           config=LinearProbeConfig(weight_decays=(1e-3,)), seed=0, resamples=50,
                           train_mask=labelled[:120], test_mask=labelled[120:])
    # the head is refitted here to get its test scores; the AP is sklearn's on labelled rows
    from pytest_visprobe.kernels.linear import fit_probe

    train_t = torch.as_tensor(np.where(labelled[:120], y[:120], np.nan), dtype=torch.float32)
    head = fit_probe(x[:120], train_t, n_outputs=y.shape[1], weight_decays=(1e-3,), val_fraction=0.2,
                     score=lambda *_: 0.0, seed=0, multilabel=True)
    scores, test_y, known = head.logits(x[120:]).numpy(), y[120:], labelled[120:]
    reference = [average_precision_score(test_y[known[:, j], j], scores[known[:, j], j]) for j in range(y.shape[1])]
    assert metric.value == pytest.approx(np.mean(reference), abs=1e-6)
    assert metric.details.labels_used == "explicit positives and negatives only"
    assert 0.0 <= metric.details.mean_recall_at_15 <= 1.0
    low, high = metric.interval
    assert low <= metric.value <= high
    rates = [test_y[known[:, j], j].mean() for j in range(y.shape[1])]
    assert metric.chance == pytest.approx(np.mean(rates))
