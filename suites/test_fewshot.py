"""Few-shot prototypes: can N labelled images per class name the rest?

Per trial, N training images per class are drawn (seeded from the session seed and the trial),
their L2-normalised features are averaged into class prototypes, and every test image goes to
the prototype with the largest dot product. The record holds the mean top-1 over the profile's
trials, with the std over trials as its spread. Features come from the cache: no forward pass
beyond the two splits the other probes use.
"""

import pytest

from pytest_visprobe.probes.fewshot import SHOTS


@pytest.mark.visprobe_probe("fewshot")
@pytest.mark.parametrize("n_shot", SHOTS, ids=lambda n: f"{n}shot")
def test_fewshot(visprobe, visprobe_encoder, visprobe_dataset, n_shot):
    visprobe.run("fewshot", visprobe_encoder, visprobe_dataset, n_shot=n_shot)
