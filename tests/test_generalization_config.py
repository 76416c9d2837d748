"""Profile settings and the text-model option of the generalization probes, checked at the boundary."""

from __future__ import annotations

import argparse

import pydantic
import pytest

from pytest_visprobe.options import text_model
from pytest_visprobe.profiles import PROFILES, ClusteringConfig, FewShotConfig, SimilarityConfig
from pytest_visprobe.results import fewshot_metric, metric_spec


def test_quick_profile_defaults():
    quick = PROFILES["quick"]
    assert (quick.fewshot.trials, quick.fewshot.ddof) == (10, 1)
    assert (quick.clustering.affinity, quick.clustering.n_neighbors) == ("auto", None)
    assert (quick.similarity.split, quick.similarity.prompt) == ("test", "a photo of {label}.")
    assert quick.linear_probe.recipe == "lbfgs"


@pytest.mark.parametrize("make, match", [
    (lambda: FewShotConfig(trials=0), "trials"),
    (lambda: FewShotConfig(ddof=2), "ddof"),
    (lambda: ClusteringConfig(affinity="rbf"), "affinity"),
    (lambda: ClusteringConfig(n_neighbors=0), "n_neighbors"),
    (lambda: SimilarityConfig(prompt="a photo"), "must contain '{label}'"),
    (lambda: SimilarityConfig(promt="x"), "Extra inputs"),
])
def test_bad_settings_are_refused(make, match):
    with pytest.raises(pydantic.ValidationError, match=match):
        make()


def test_fewshot_metrics_are_registered_per_n():
    assert metric_spec("fewshot", "top1_5shot").higher_is_better
    assert fewshot_metric(20) == "top1_20shot" and metric_spec("fewshot", "top1_20shot")
    assert metric_spec("clustering", "ari").lower == -1.0
    assert metric_spec("similarity", "rsa_reference").lower == -1.0


def test_text_model_option_parses_specs():
    assert text_model(" open_clip:ViT-B-32/openai ") == "open_clip:ViT-B-32/openai"
    for bad in ("", "  ", ":x"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME or NAME:ARG"):
            text_model(bad)
