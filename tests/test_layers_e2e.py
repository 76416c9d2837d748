"""--visprobe-layers end to end: rows per layer, a depth plot, and a second run served by the cache."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.runner.options import DATASET_OPTION, ENCODER_OPTION, LAYERS_OPTION

REPO = Path(__file__).resolve().parents[1]


def _hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC written out, as a NumPy reference."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def _rbf_gram(x: np.ndarray) -> np.ndarray:
    """exp(-d² / (2σ²)), σ = the median of the pairwise distances (i < j), from scipy's pdist."""
    from scipy.spatial.distance import pdist, squareform

    d = pdist(x)
    return np.exp(-squareform(d) ** 2 / (2 * np.median(d) ** 2))


def _debiased_cka(x: np.ndarray, y: np.ndarray, kernel: str = "linear") -> float:
    k, l = (x @ x.T, y @ y.T) if kernel == "linear" else (_rbf_gram(x), _rbf_gram(y))
    return float(_hsic(k, l) / np.sqrt(_hsic(k, k) * _hsic(l, l)))


@torch.no_grad()
def _check_layer_cka(card: dict) -> None:
    """The layer_cka records equal the NumPy formula on features computed here with a plain forward."""
    spec = importlib.util.spec_from_file_location("tiny_cnn_e2e", REPO / "examples" / "tiny_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    encoder = module.create_encoder().eval()
    test = load_dataset("digits", seed=0, limit=150, image_size=32).split("test")
    images = torch.from_numpy(test.images.get(range(len(test)))).permute(0, 3, 1, 2).float() / 255
    x = (nn.functional.interpolate(images, size=(64, 64), mode="bilinear", antialias=True) - encoder.mean) / encoder.std
    features = {"body.1": encoder.body[:2](x), "body.3": encoder.body[:4](x), "body.5": encoder.body(x)}
    features = {k: v.mean(dim=(2, 3)).double().numpy() for k, v in features.items()}
    features["last"] = encoder.embed(images).double().numpy()
    records = {(r["layer"], r["metric"]): r for r in card["records"] if r["probe"] == "layer_cka"}
    assert sorted(records) == [(layer, f"{kernel}_cka_embedding") for layer in ("body.1", "body.3", "body.5")
                               for kernel in ("linear", "rbf")]
    details = records["body.1", "linear_cka_embedding"]["details"]
    assert details["layers"] == ["body.1", "body.3", "body.5", "last"] and details["n_images"] == len(test)
    for key, kernel in (("matrix", "linear"), ("rbf_matrix", "rbf")):
        for i, a in enumerate(details["layers"]):
            for j, b in enumerate(details["layers"]):
                want = 1.0 if a == b else _debiased_cka(features[a], features[b], kernel)
                assert details[key][i][j] == pytest.approx(want, abs=1e-4), (kernel, a, b)
    for (layer, metric), record in records.items():
        kernel = metric.split("_")[0]
        assert record["encoder"] == f"tiny_cnn@{layer}"
        assert record["value"] == pytest.approx(_debiased_cka(features[layer], features["last"], kernel), abs=1e-4)
        assert record["interval"]["low"] <= record["value"] <= record["interval"]["high"]


def test_all_layers_rows_plot_and_cache(suite):
    shutil.copy(REPO / "examples" / "tiny_cnn.py", suite.pytester.path / "tiny_cnn.py")
    args = (f"{ENCODER_OPTION}=tiny_cnn.py", f"{DATASET_OPTION}=digits", f"{LAYERS_OPTION}=all",
            "suites/test_knn.py", "suites/test_similarity.py::test_cka_between_layers", "-k", "k20] or layers")
    result = suite.run(*args)
    result.assert_outcomes(passed=4 + 1)  # k-NN (k = 20) on the embedding and each of 3 layers; CKA between them
    card = suite.scorecard()
    knn = {r["encoder"]: r for r in card["records"] if r["probe"] == "knn"}
    assert sorted(knn) == ["tiny_cnn", "tiny_cnn@body.1", "tiny_cnn@body.3", "tiny_cnn@body.5"]
    assert knn["tiny_cnn"]["layer"] is None and knn["tiny_cnn@body.3"]["layer"] == "body.3"
    assert "layers-tiny_cnn.png" in card["plots"] and "layer-cka-tiny_cnn-digits.png" in card["plots"]
    assert (suite.pytester.path / "visprobe-report" / "layers-tiny_cnn.png").stat().st_size > 0
    markdown = (suite.pytester.path / "visprobe-report" / "scorecard.md").read_text()
    assert "## Layers" in markdown and "[layers-tiny_cnn.png](layers-tiny_cnn.png)" in markdown
    assert "| body.1 " in markdown
    _check_layer_cka(card)
    first = card["provenance"]["features"]
    # train and test of digits: the embedding's pass, and one pass for all three layers
    assert first["computed"] == 2 * (1 + 3)
    digits = load_dataset("digits", seed=0, limit=150, image_size=32)
    batches = sum(-(-len(digits.split(split)) // 64) for split in ("train", "test"))  # the quick profile's 64
    assert first["forward_passes"] == 2 * batches

    again = suite.run(*args)
    again.assert_outcomes(passed=5)
    second = suite.scorecard()
    counters = second["provenance"]["features"]
    assert "layer-cka-tiny_cnn-digits.png" in second["plots"]
    assert counters["forward_passes"] == 0 and counters["computed"] == 0 and counters["from_disk"] == 2 * (1 + 3)
    assert {r["encoder"]: r["value"] for r in second["records"] if r["probe"] == "knn"} == \
        {name: r["value"] for name, r in knn.items()}


def test_unknown_layer_stops_the_run_naming_the_layers(suite):
    shutil.copy(REPO / "examples" / "tiny_cnn.py", suite.pytester.path / "tiny_cnn.py")
    result = suite.run(f"{ENCODER_OPTION}=tiny_cnn.py", f"{DATASET_OPTION}=digits", f"{LAYERS_OPTION}=7",
                       "suites/test_knn.py")
    assert result.ret == 4  # a usage error, before any test ran
    result.stderr.fnmatch_lines(["ERROR: --visprobe-layers=7: encoder 'tiny_cnn' has no layer 7*body.1, body.3, body.5*"])


def test_without_the_option_the_tests_are_those_of_before(suite):
    shutil.copy(REPO / "examples" / "tiny_cnn.py", suite.pytester.path / "tiny_cnn.py")
    plain = suite.run(f"{ENCODER_OPTION}=tiny_cnn.py", "suites/test_knn.py", "suites/test_similarity.py",
                      "--collect-only", "-q")
    ids = [line for line in plain.outlines if "::" in line]
    assert ids and not any("@" in line or "between_layers" in line for line in ids)  # layer CKA deselected
    layered = suite.run(f"{ENCODER_OPTION}=tiny_cnn.py", f"{LAYERS_OPTION}=last4", "suites/test_knn.py",
                        "suites/test_similarity.py", "--collect-only", "-q")
    more = [line for line in layered.outlines if "::" in line]
    assert set(ids) < set(more)
    assert {line for line in more if "@" in line} == {
        f"suites/test_knn.py::test_knn[tiny_cnn@{layer}-{dataset}-k{k}]"
        for layer in ("body.1", "body.3", "body.5") for dataset in ("shapes", "digits") for k in (10, 20, 200)}
