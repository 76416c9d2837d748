"""Generalization suites end to end: few-shot, clustering and RSA through pytester."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.runner.options import DATASET_OPTION, ENCODER_OPTION, NO_CACHE_OPTION, TEXT_MODEL_OPTION
from pytest_visprobe.kernels.clustering import clustering_scores
from pytest_visprobe.kernels.fewshot import fewshot_accuracy
from pytest_visprobe.kernels.rsa import euclidean_rdm, rdm_correlation, welch_rdm
from pytest_visprobe.encoders.text import embed_labels

SUITES = ("suites/test_fewshot.py", "suites/test_clustering.py", "suites/test_similarity.py")
LIMIT = 100


def _pooled_features(dataset, split):
    """The pooled.py encoder applied directly (6x6 average pool of the [0, 1] pixels)."""
    part = dataset.split(split)
    images = torch.from_numpy(part.images.get(range(len(part)))).permute(0, 3, 1, 2).float() / 255
    return torch.nn.functional.adaptive_avg_pool2d(images, 6).flatten(1).numpy(), part.labels


def test_two_encoders_and_the_language_model(suite, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # MiniLM ships in a package: no hub access needed
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=pooled.py", f"{DATASET_OPTION}=digits",
                       *SUITES, subprocess=True, limit=150)  # 150: at least 12 train images per digit
    # few-shot: 3 N x 2 encoders; clustering: 2; similarity: 1 between encoders + 1 with language;
    # CKA: 1 between encoders (its values: test_knn_cka_e2e.py)
    result.assert_outcomes(passed=11)
    card = suite.scorecard()
    records = {(r["encoder"], r["probe"], r["dataset"], r["metric"]): r for r in card["records"]}

    # Values equal the kernels applied to independently computed features of the same splits.
    digits = load_dataset("digits", seed=0, limit=150, image_size=32)
    train_x, train_y = _pooled_features(digits, "train")
    test_x, test_y = _pooled_features(digits, "test")
    fewshot = records[("pooled", "fewshot", "digits", "top1_5shot")]
    want = fewshot_accuracy(train_x, train_y, test_x, test_y, n_shot=5, trials=10, seed=0)
    assert fewshot["value"] == pytest.approx(want.mean, abs=1e-6)
    assert fewshot["spread"] == pytest.approx(want.std, abs=1e-6)
    assert fewshot["details"]["per_trial"] == pytest.approx(list(want.per_trial), abs=1e-5)
    clusters = clustering_scores(test_x, test_y, seed=0)
    for metric in ("greedy_accuracy", "hungarian_accuracy", "nmi", "ari"):
        assert records[("pooled", "clustering", "digits", metric)]["value"] == pytest.approx(
            getattr(clusters, metric), abs=1e-6)
    language = records[("pooled", "similarity", "digits", "rsa_language")]
    text_rdm = euclidean_rdm(embed_labels(digits.class_names))
    assert language["value"] == pytest.approx(rdm_correlation(welch_rdm(test_x, test_y, 10), text_rdm), abs=1e-5)
    assert language["details"]["names"] == ["conv", "pooled", "text:minilm"]
    assert language["details"]["text_definition"] == ("all-MiniLM-L6-v2 sentence embedding (mean over all tokens "
                                                      "of the last layer), L2-normalised")
    assert language["details"]["split"] == "test" and language["details"]["class_names"] == "dataset"

    # The reference is the first --encoder: only the other one gets rsa_reference.
    reference = records[("pooled", "similarity", "digits", "rsa_reference")]
    assert ("conv", "similarity", "digits", "rsa_reference") not in records
    assert reference["details"]["reference"] == "conv"
    matrix = np.array(reference["details"]["matrix"])
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert reference["value"] == pytest.approx(matrix[1, 0], abs=1e-6)  # details are rounded
    assert np.array(language["details"]["matrix"])[:2, :2] == pytest.approx(matrix, abs=1e-6)

    assert sorted(card["plots"]) == ["fewshot.png", "similarity-digits.png"]
    report = suite.pytester.path / "visprobe-report"
    assert all((report / name).stat().st_size > 1000 for name in card["plots"])
    assert "![fewshot](fewshot.png)" in (report / "scorecard.md").read_text()


def test_fewshot_and_clustering_reuse_the_cached_features(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", NO_CACHE_OPTION, f"{DATASET_OPTION}=digits",
                       "suites/test_semantics.py", "suites/test_fewshot.py", "suites/test_clustering.py",
                       "-k", "label_probe or fewshot or clustering", "-rs", limit=LIMIT)
    # digits' smallest class has fewer than 10 training images at this limit: 10-shot skips
    result.assert_outcomes(passed=1 + 2 + 1, skipped=1)
    result.stdout.fnmatch_lines(["*10-shot needs 10 training images per class*raise --visprobe-limit*"])
    card = suite.scorecard()
    features = card["provenance"]["features"]
    # The label probe needs digits' train and test features; few-shot and clustering add none.
    (digits,) = card["datasets"]
    batches = sum(math.ceil(n / 64) for n in digits["splits"].values())
    assert features["computed"] == 2 and features["forward_passes"] == batches
    # from memory: the label probe's control task (train, test) and its contact sheet (test), two
    # few-shot tests (train, test), clustering
    assert features["from_memory"] == 2 + 1 + 2 * 2 + 1


BROKEN_TEXT_MODEL = """
    from pytest_visprobe.encoders.text import TextModelUnavailable, register_text_embedder

    def offline(arg):
        raise TextModelUnavailable("weights not in the cache here. Fix: run once with network access.")

    register_text_embedder("needs_network", offline, replace=True)
"""


def test_language_comparison_skips_with_the_reason_when_the_text_model_cannot_load(suite):
    suite.pytester.makeconftest(textwrap.dedent(BROKEN_TEXT_MODEL))
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=pooled.py",
                       f"{TEXT_MODEL_OPTION}=needs_network", "suites/test_similarity.py", "-k", "not cka", "-rs",
                       limit=LIMIT)
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*text model 'needs_network' unavailable: weights not in the cache here. "
                                 "Fix: run once with network access.*"])
    assert {r["metric"] for r in suite.scorecard()["records"]} == {"rsa_reference"}


def test_one_encoder_skips_the_encoder_comparison(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", "suites/test_similarity.py", "-k", "similarity_between", "-rs",
                       limit=LIMIT)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*needs at least two --encoder options*"])


def test_unknown_text_model_stops_the_run(suite):
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{TEXT_MODEL_OPTION}=bert", "suites/test_similarity.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--visprobe-text-model: unknown text model 'bert'. Registered: minilm*"])


def test_rsa_reference_threshold_gates_drift_from_the_parent(suite):
    (suite.pytester.path / "suites" / "visprobe_thresholds.toml").write_text(textwrap.dedent("""
        [[threshold]]
        probe = "similarity"
        metric = "rsa_reference"
        encoder = "pooled"   # the fine-tune; its parent is the first --encoder
        value = 0.99
    """))
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{ENCODER_OPTION}=pooled.py", "suites/test_similarity.py",
                       "-k", "similarity_between", limit=LIMIT)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*pooled · similarity.rsa_reference on digits: obtained *, expected >= 0.9900*"])
    assert all(r["threshold"] == 0.99 and not r["passed"] for r in suite.scorecard()["records"])


def test_similarity_skips_with_the_fix_when_a_class_is_missing_from_the_split(suite):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            folder = suite.pytester.path / "pets" / split / name
            folder.mkdir(parents=True)
            for k in range(4):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    # a cap of 2 samples per split cannot keep all 3 classes
    result = suite.run(f"{ENCODER_OPTION}=pooled.py", f"{ENCODER_OPTION}=conv.py", f"{DATASET_OPTION}=imagefolder:pets",
                       "suites/test_similarity.py::test_similarity_between_encoders", "-rs", limit=2)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*RSA needs every class in the test split*raise --visprobe-limit*"])
