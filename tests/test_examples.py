"""The offline example encoders: both load through ``--encoder``; trained_cnn.py really learns
(checked with scikit-learn on scenes it never saw), trains once, caches, and recovers from a
corrupt cache. Training budgets here are tiny; the default run is measured in the report."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from pytest_visprobe.encoders.refs import parse_encoder_ref
from pytest_visprobe.encoders.base import Encoder
from pytest_visprobe.encoders.loading import load_encoder
from pytest_visprobe.errors import CacheCorruptWarning

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _import(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tc = _import("trained_cnn")

#: Enough to learn something, cheap enough for a unit test.
LEARN = tc.TrainConfig(steps=250, scenes_per_step=16, width=32, lr=3e-3)
#: The cache tests only need some weights: two steps.
QUICK = tc.TrainConfig(steps=2, scenes_per_step=2, width=8)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own visprobe cache dir, so nothing leaks into the user's cache."""
    monkeypatch.setenv("VISPROBE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def learned() -> "tc.TrainResult":
    return tc.train(LEARN)


def test_training_lowers_the_loss(learned) -> None:
    losses = np.asarray(learned.losses)
    assert len(losses) == LEARN.steps and np.isfinite(losses).all()
    first, last = losses[:20].mean(), losses[-20:].mean()
    assert last < first - 0.1, f"loss went from {first:.3f} to {last:.3f}"


def test_trained_embedding_separates_classes_better_than_untrained(learned) -> None:
    """scikit-learn's logistic regression on main-object windows of scenes from a stream training
    never used: the trained features classify shapes better than the same network untrained.
    (Whole scenes need the full budget to show it; the report measures that with the probes.)"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pytest_visprobe.datasets.shapes import generate_split

    untrained = tc.train(dataclasses.replace(LEARN, steps=0)).encoder
    crops, labels = tc.main_object_crops(generate_split(np.random.default_rng(12345), 400, LEARN.image_size),
                                    LEARN.crop_size)
    half = len(labels) // 2

    def held_out_accuracy(encoder: Encoder) -> float:
        with torch.no_grad():
            features = encoder.pool(encoder.features(crops)).numpy()
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        probe.fit(features[:half], labels[:half])
        return probe.score(features[half:], labels[half:])

    before, after = held_out_accuracy(untrained), held_out_accuracy(learned.encoder)
    assert after > before + 0.1, f"held-out top-1 {before:.3f} untrained vs {after:.3f} trained"


def test_training_is_deterministic_whatever_the_thread_count() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = tc.train(QUICK)
        torch.set_num_threads(2)
        b = tc.train(QUICK)
        assert torch.get_num_threads() == 2  # restored after training
    finally:
        torch.set_num_threads(threads)
    assert a.losses == b.losses and _states_equal(a.encoder, b.encoder)
    assert a.encoder.fingerprint() == b.encoder.fingerprint()


def test_second_call_loads_from_the_cache_without_training(_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_train = tc.train
    monkeypatch.setattr(tc, "train", lambda config: calls.append(config) or real_train(config))
    first = tc.load_or_train(QUICK)
    assert calls == [QUICK]
    path = tc.cache_path(QUICK)
    assert path.parent == _cache_dir / "examples" and path.name.startswith("trained_cnn-")
    assert path.is_file() and not list(path.parent.glob(".tmp-*"))

    def no_training(config):
        raise AssertionError("trained again although the weights are cached")

    monkeypatch.setattr(tc, "train", no_training)
    second = tc.load_or_train(QUICK)
    assert not second.training
    assert _states_equal(first, second) and first.fingerprint() == second.fingerprint()


def test_concurrent_callers_train_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The file lock: a second caller waits for the first one's file instead of training too."""
    calls = []
    real_train = tc.train
    monkeypatch.setattr(tc, "train", lambda config: calls.append(config) or real_train(config))
    results = [None, None]

    def call(i: int) -> None:
        results[i] = tc.load_or_train(QUICK)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert _states_equal(results[0], results[1])


def test_corrupt_cache_file_is_retrained_with_a_warning() -> None:
    path = tc.cache_path(QUICK)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(CacheCorruptWarning, match=r"cached weights .* are unreadable .* training again"):
        encoder = tc.load_or_train(QUICK)
    assert _states_equal(encoder, tc.train(QUICK).encoder)
    with torch.no_grad():  # the file was replaced by a readable one
        reloaded = tc.load_or_train(QUICK)
    assert _states_equal(encoder, reloaded)


def test_weights_of_another_shape_are_retrained() -> None:
    """A file that reads but does not fit (e.g. written by other code under the same name)."""
    path = tc.cache_path(QUICK)
    path.parent.mkdir(parents=True)
    tc._write(path, tc.train(dataclasses.replace(QUICK, width=4)).encoder, QUICK)
    with pytest.warns(CacheCorruptWarning, match="size mismatch"):
        encoder = tc.load_or_train(QUICK)
    assert encoder.body[0].out_channels == QUICK.width


def test_cache_file_is_keyed_by_the_config() -> None:
    assert tc.cache_path(QUICK) != tc.cache_path(dataclasses.replace(QUICK, seed=1))
    assert tc.cache_path(QUICK) == tc.cache_path(dataclasses.replace(QUICK))


def test_examples_load_through_encoder_refs(_cache_dir: Path) -> None:
    """Both examples load as ``--encoder=FILE``; trained_cnn from the cache dir the environment
    names (filled here with untrained weights, so nothing trains), and both keep the contract."""
    default = tc.TrainConfig()
    weights = tc.train(dataclasses.replace(default, steps=0)).encoder
    path = tc.cache_path(default)
    path.parent.mkdir(parents=True)
    tc._write(path, weights, default)

    images = torch.rand(2, 3, 48, 48)
    for name in ("tiny_cnn", "trained_cnn"):
        encoder = load_encoder(parse_encoder_ref(str(EXAMPLES / f"{name}.py")))
        assert isinstance(encoder, Encoder) and encoder.name == name and not encoder.training
        assert encoder.input_size == (64, 64)
        assert encoder.embed(images).shape == (2, 256)
        assert encoder.feature_map(images).shape == (2, 128, 8, 8)
    assert _states_equal(encoder, weights)
