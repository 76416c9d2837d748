"""The k-NN and CKA suites end to end: records equal the kernels on independently computed features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.kernels.cka import cka, gram_linear, gram_rbf
from pytest_visprobe.kernels.knn import knn_predict
from pytest_visprobe.runner.options import DATASET_OPTION, ENCODER_OPTION

POOLED_4 = """
    from torch import nn

    def create_encoder():
        return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten())
"""


def _pooled(dataset, split, size):
    """What pooled.py (size 6) and pooled4.py compute: average-pooled [0, 1] pixels."""
    part = dataset.split(split)
    images = torch.from_numpy(part.images.get(range(len(part)))).permute(0, 3, 1, 2).float() / 255
    return torch.nn.functional.adaptive_avg_pool2d(images, size).flatten(1).numpy(), part.labels


def test_knn_and_cka_records(suite):
    suite.encoder("pooled4.py", POOLED_4)
    result = suite.run(f"{ENCODER_OPTION}=pooled4.py", f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=digits",
                       "suites/test_knn.py", "suites/test_similarity.py::test_cka_between_encoders")
    result.assert_outcomes(passed=3 * 2 + 1)  # k = 10, 20, 200 per encoder; CKA once for the pair
    records = {(r["encoder"], r["probe"], r["metric"]): r for r in suite.scorecard()["records"]}
    digits = load_dataset("digits", seed=0, limit=150, image_size=32)
    train_x, train_y = _pooled(digits, "train", 6)
    test_x, test_y = _pooled(digits, "test", 6)

    want = knn_predict(train_x, train_y, test_x, ks=[10, 20, 200], n_classes=10)
    for k in (10, 20, 200):
        record = records[("pooled", "knn", f"top1_k{k}")]
        assert record["value"] == pytest.approx(float((want[k] == test_y).mean()), abs=1e-9)
        assert record["interval"]["method"] == "bootstrap" and record["samples"]["n"] == len(test_y)
        assert record["interval"]["low"] <= record["value"] <= record["interval"]["high"]
        assert record["chance"] == pytest.approx(np.bincount(test_y).max() / len(test_y))
    capped = records[("pooled", "knn", "top1_k200")]["details"]
    assert capped["k_used"] == len(train_y) < 200 and "every train image votes" in capped["note"]

    assert ("pooled4", "cka", "linear_cka") not in records  # the reference gets no record of its own
    ref_x, _ = _pooled(digits, "test", 4)
    linear = records[("pooled", "cka", "linear_cka")]
    assert linear["value"] == pytest.approx(cka(gram_linear(test_x), gram_linear(ref_x), debiased=True), abs=1e-6)
    assert linear["details"]["reference"] == "pooled4" and linear["details"]["n_images"] == len(test_y)
    rbf = records[("pooled", "cka", "rbf_cka")]
    assert rbf["value"] == pytest.approx(cka(gram_rbf(test_x)[0], gram_rbf(ref_x)[0], debiased=True), abs=1e-6)
    for record in (linear, rbf):
        assert record["interval"]["method"] == "probe"
        assert record["interval"]["low"] < record["value"] < record["interval"]["high"]
        assert record["chance"] == 0.0
