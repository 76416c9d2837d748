"""The study's Adam transfer recipe against a plain-torch training loop written as in the study."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from pytest_visprobe.probes.label import label_top1 as label_probe
from pytest_visprobe.kernels.transfer import fit_adam_probe
from pytest_visprobe.probes.heads import LinearProbeConfig


def _data(seed, n_per_class=40, n_classes=4, dim=12, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = centres[y] + spread * rng.standard_normal((y.size, dim))
    perm = rng.permutation(y.size)
    return torch.tensor(x[perm], dtype=torch.float32), torch.tensor(y[perm])


def _study_loop(x, y, n_classes, seed, epochs=20, batch_size=60, lr=1e-3, weight_decay=5e-4):
    """An nn.Linear/CrossEntropyLoss/Adam loop as the study wrote it, one seeded permutation
    per epoch cut into batches (a DataLoader draws extra numbers from its generator, so its
    shuffles would differ). Returns the last-epoch model."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(x.shape[1], n_classes)
    shuffle = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=shuffle).split(batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    return model


def test_adam_recipe_matches_plain_torch_loop():
    x, y = _data(0, n_per_class=37)  # 148 samples: the last batch of each epoch is partial
    head = fit_adam_probe(x, y, n_classes=4, seed=3)
    ref = _study_loop(x, y, 4, seed=3)
    assert torch.allclose(head.weight, ref.weight.detach().T, atol=1e-6)
    assert torch.allclose(head.bias, ref.bias.detach(), atol=1e-6)
    assert torch.allclose(head.logits(x), ref(x).detach(), atol=1e-5)
    assert head.weight_decay == 5e-4


def test_adam_recipe_settings_reach_the_loop():
    x, y = _data(1)
    head = fit_adam_probe(x, y, n_classes=4, seed=0, lr=5e-3, weight_decay=0.0, epochs=3, batch_size=16)
    ref = _study_loop(x, y, 4, seed=0, epochs=3, batch_size=16, lr=5e-3, weight_decay=0.0)
    assert torch.allclose(head.weight, ref.weight.detach().T, atol=1e-6)


def test_label_probe_with_adam_recipe_is_the_loop_and_separates_clusters():
    # 1,200 samples: 20 batches x 20 epochs = 400 Adam steps, enough to separate the blobs.
    train_x, train_y = _data(2, n_per_class=300, spread=0.3)
    test_x, test_y = _data(2, spread=0.3)  # same centres (same seed), fewer samples
    config = LinearProbeConfig(recipe="adam", adam_epochs=20)
    metric, head = label_probe(train_x, train_y.numpy(), test_x, test_y.numpy(), n_classes=4,
                               config=config, seed=5)
    ref = _study_loop(train_x, train_y, 4, seed=5)
    want = float((ref(test_x).argmax(dim=1) == test_y).float().mean())
    assert metric.value == pytest.approx(want) and metric.value == 1.0
    assert metric.details.recipe == "adam"


def test_recipe_is_validated():
    with pytest.raises(pydantic.ValidationError, match="recipe"):
        LinearProbeConfig(recipe="sgd")
    with pytest.raises(ValueError, match="labels must lie"):
        fit_adam_probe(torch.zeros(3, 2), torch.tensor([0, 1, 5]), n_classes=2)
