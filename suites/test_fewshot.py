"""Few-shot prototypes: can N labelled images per class name the rest?

Per trial, N training images per class are drawn (seeded from the session seed and the trial),
their L2-normalised features are averaged into class prototypes, and every test image goes to
the prototype with the largest dot product. The record holds the mean top-1 over the profile's
trials, with the std over trials as its spread. Features come from the cache: no forward pass
beyond the two splits the other probes use.
"""

import numpy as np
import pytest

from pytest_visprobe.probes.fewshot import fewshot_accuracy
from pytest_visprobe.results import FEWSHOT_SHOTS, Metric, fewshot_metric


@pytest.mark.visprobe_datasets("fewshot")
@pytest.mark.parametrize("n_shot", FEWSHOT_SHOTS, ids=lambda n: f"{n}shot")
def test_fewshot(visprobe, visprobe_encoder, visprobe_dataset, n_shot):
    visprobe.require(visprobe_dataset, "label")
    config = visprobe.profile.fewshot
    train, test = visprobe_dataset.split("train"), visprobe_dataset.split("test")
    fewest = int(np.unique(train.labels, return_counts=True)[1].min())
    if fewest < n_shot:
        pytest.skip(f"{n_shot}-shot needs {n_shot} training images per class, but {visprobe_dataset.name!r} "
                    f"has a class with {fewest} in its train split; raise --visprobe-limit or use a larger dataset.")
    result = fewshot_accuracy(
        visprobe.features(visprobe_encoder, visprobe_dataset, "train").numpy(), train.labels,
        visprobe.features(visprobe_encoder, visprobe_dataset, "test").numpy(), test.labels,
        n_shot=n_shot, trials=config.trials, seed=visprobe.seed, ddof=config.ddof,
    )
    details = {"n_shot": n_shot, "trials": config.trials, "per_trial": [round(a, 6) for a in result.per_trial],
               "chance": 1.0 / len(visprobe_dataset.class_names), "n_test": int(len(test.labels))}
    visprobe.check(
        Metric("fewshot", fewshot_metric(n_shot), result.mean, spread=result.std, details=details,
               per_sample=result.per_sample),
        encoder=visprobe_encoder, dataset=visprobe_dataset,
    )
