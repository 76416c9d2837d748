"""Profile settings and the text-model option of the generalization probes, checked at the boundary."""

from __future__ import annotations

import argparse

import pydantic
import pytest

from pytest_visprobe.runner.options import text_model
from pytest_visprobe.probes.clustering import ClusteringConfig
from pytest_visprobe.probes.fewshot import FewShotConfig, metric_name
from pytest_visprobe.probes.similarity import SimilarityConfig
from pytest_visprobe.probes.spec import metric_spec
from pytest_visprobe.profiles import get_profile


def test_quick_profile_defaults():
    quick = get_profile("quick")
    fewshot, clustering = quick.settings_for("fewshot"), quick.settings_for("clustering")
    similarity = quick.settings_for("similarity")
    assert (fewshot.trials, fewshot.ddof) == (10, 1)
    assert (clustering.affinity, clustering.n_neighbors) == ("auto", None)
    assert (similarity.split, similarity.prompt) == ("test", "a photo of {label}.")
    assert quick.settings_for("label_probe").recipe == "lbfgs"


def test_paper_profile_follows_the_study():
    paper = get_profile("paper")
    assert (paper.settings_for("fewshot").trials, paper.settings_for("fewshot").ddof) == (10, 0)
    assert paper.settings_for("label_probe").recipe == "adam"
    assert paper.settings_for("rpgd").head.recipe == "adam"  # the attacked head is the label probe's
    assert paper.settings_for("clustering").affinity == "dense"
    rpgd = paper.settings_for("rpgd")
    assert (rpgd.n_images, rpgd.steps, rpgd.rel_stepsize) == (1000, 100, 0.025)


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
    assert metric_name(20) == "top1_20shot" and metric_spec("fewshot", "top1_20shot").higher_is_better
    with pytest.raises(KeyError, match="no metric 'top1_fiveshot'"):
        metric_spec("fewshot", "top1_fiveshot")
    assert metric_spec("clustering", "ari").lower == -1.0
    assert metric_spec("similarity", "rsa_reference").lower == -1.0


def test_text_model_option_parses_specs():
    assert text_model(" open_clip:ViT-B-32/openai ") == "open_clip:ViT-B-32/openai"
    for bad in ("", "  ", ":x"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME or NAME:ARG"):
            text_model(bad)
