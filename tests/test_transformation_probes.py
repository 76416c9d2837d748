"""Transformation detection: transformed views, the probes against scikit-learn, known answers.

Known answers come from two toy encoders. ``PixelStats`` reads global pixel statistics
(per-channel mean, std, 32-bin histograms, mean chroma); on views of one fixed photo crop
those statistics are a function of the transformation and its parameters alone, and every
colour transformation is a global per-pixel map with its own histogram signature, so the colour
family must be recognised almost perfectly. ``Constant`` embeds every image to the same vector:
any probe can then only predict one class, so it sits at chance (that class's share).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pytest_visprobe.errors import UnknownNameError
import torch
from PIL import Image

from pytest_visprobe import Encoder
from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.datasets.base import ArrayImages, Dataset, DatasetError, Split
from pytest_visprobe.datasets.transformed import TransformedImages, transformed_views
from pytest_visprobe.features import FeatureStore
from pytest_visprobe.kernels.transformations import (
    TransformationProbeError,
    TransformationTask,
    fit_mlp,
    generalization_probe,
    linear_classifier,
    mlp_classifier,
    transformation_probes,
)
from pytest_visprobe.probes.heads import LinearProbeConfig, MLPProbeConfig
from pytest_visprobe.datasets.transformations import (
    apply_transformation,
    generalization_split,
    list_transformations,
    register_transformation,
    unregister_transformation,
)

SIZES = {"train": 12, "test": 6}  # views per transformation: 492 train, 246 test
LINEAR = LinearProbeConfig(weight_decays=(1e-3,))  # one decay: the sklearn comparison is exact
MLP = MLPProbeConfig(hidden=64, epochs=40, batch_size=64, lr=1e-3, weight_decay=1e-4)


class PixelStats(Encoder):
    name = "pixel_stats"

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        flat = images.reshape(n, 3, -1)
        bins = (flat * 32).long().clamp(0, 31)
        hist = torch.zeros(n, 3, 32).scatter_add_(2, bins, torch.ones_like(flat)) / flat.shape[-1]
        chroma = (images - images.mean(dim=1, keepdim=True)).abs().mean(dim=(1, 2, 3))
        return torch.cat([flat.mean(-1), flat.std(-1), hist.reshape(n, -1), chroma[:, None]], dim=1)


class Constant(Encoder):
    name = "constant"

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], 8)


def one_photo_dataset() -> Dataset:
    """One 48-px crop of the astronaut photo in every row: only the transformation varies."""
    from skimage import data

    crop = np.asarray(Image.fromarray(data.astronaut()[0:256, 100:356]).resize((48, 48), Image.Resampling.BICUBIC))
    split = Split(images=ArrayImages(np.repeat(crop[None], 200, axis=0)))
    return Dataset(name="one_photo", splits={"train": split, "test": split}, fingerprint="one_photo-v1")


@pytest.fixture(scope="module")
def views():
    return transformed_views(one_photo_dataset(), seed=0, per_image=3, per_transformation=SIZES)


@pytest.fixture(scope="module")
def stats(views):
    store = FeatureStore(cache_dir=None, device=torch.device("cpu"))
    encoder = PixelStats()
    return store.get(encoder, views, "train"), store.get(encoder, views, "test")


@pytest.fixture(scope="module")
def task(views):
    return TransformationTask.of(views, seed=0)


def run(views, task, features, fit, probe="transformation_linear"):
    train, test = views.split("train"), views.split("test")
    metrics = transformation_probes(probe, fit, features[0], train.labels, features[1], test.labels, task)
    return {m.metric: m for m in metrics}


def recording(fit):
    """The classifier ``fit``, keeping the predictions it makes (one array per task, in order)."""
    predictions = []

    def wrapped(x, y, n_classes):
        logits_fn = fit(x, y, n_classes)

        def logits(test_x):
            out = logits_fn(test_x)
            predictions.append(out.argmax(dim=1).numpy())
            return out

        return logits

    return wrapped, predictions


def standardized(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The probes' standardisation, written in numpy: train mean, unbiased std, 1 where constant."""
    a, b = train_x.double().numpy(), test_x.double().numpy()
    mean, std = a.mean(axis=0), a.std(axis=0, ddof=1)
    std = np.where(std > 1e-8, std, 1.0)
    return (a - mean) / std, (b - mean) / std


# ----------------------------------------------------------------------------- transformed views


def test_views_are_the_bank_applied_to_rows_of_the_same_split():
    source = load_dataset("photos", n_train=60, n_test=30, image_size=32)
    views = transformed_views(source, seed=3, per_image=4, per_transformation={"train": 5, "test": 2})
    names = [t.name for t in list_transformations()]
    assert views.class_names == names and views.targets == {"label", "source"}
    for split_name in ("train", "test"):
        split, original = views.split(split_name), source.split(split_name)
        rows = views.source_rows(split_name)
        # every image recomputed independently: the bank applied to that row with that seed
        for i in range(0, len(split), 7):
            expected = apply_transformation(names[split.labels[i]], original.images.get([rows[i]])[0],
                                            seed=int(split.images.seeds[i]))
            np.testing.assert_array_equal(split.images.get([i])[0], expected)
        # each source image gets per_image distinct transformations; counts balanced within one
        per_row = {}
        for row, label in zip(rows, split.labels):
            per_row.setdefault(row, []).append(label)
        assert all(len(v) == 4 and len(set(v)) == 4 for v in per_row.values())
        counts = np.bincount(split.labels, minlength=len(names))
        assert counts.max() - counts.min() <= 1
        np.testing.assert_array_equal(split.sources, original.sources[rows])
        assert list(views.family_labels(split_name)) == [
            views.families.index(list_transformations()[c].family) for c in split.labels]
    # just enough source crops: ceil(41 · 5 / 4) = 52 of the 60 train crops, ceil(41 · 2 / 4) = 21 of 30 test
    assert len(views.split("train")) == 52 * 4 and len(views.split("test")) == 21 * 4
    # split by source image, and for photos by source photo too
    assert not set(views.split("train").sources) & set(views.split("test").sources)


def test_views_of_an_imagefolder_decode_each_file_then_transform(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(5):
            pixels = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    source = load_dataset(f"imagefolder:{tmp_path}", image_size=32)
    views = transformed_views(source, seed=0, per_image=2, per_transformation={"train": 1, "test": 1})
    split, original = views.split("test"), source.split("test")
    images = split.images.get(range(len(split)))
    assert images.shape == (len(split), 32, 32, 3) and len(split) == 2 * len(original)
    for i in range(len(split)):
        decoded = original.images.get([views.source_rows("test")[i]])[0]
        expected = apply_transformation(views.class_names[split.labels[i]], decoded, seed=int(split.images.seeds[i]))
        np.testing.assert_array_equal(images[i], expected)


def test_fingerprint_is_stable_and_tracks_seed_list_and_behaviour():
    source = load_dataset("shapes", n_train=20, n_test=10, image_size=32)

    def fp(**kw):
        args = {"seed": 0, "per_image": 2, "per_transformation": {"train": 1, "test": 1}, **kw}
        return transformed_views(source, **args).fingerprint

    base = fp()
    assert fp() == base
    assert fp(seed=1) != base
    assert fp(transformations=["identity", "invert"]) != base
    assert fp(per_image=3) != base

    def darken(image, rng):
        return (image // 2).astype(np.uint8)

    register_transformation("tfm_test_edit", "colour", darken, description="halve values (no parameters)")
    try:
        before = fp(transformations=["identity", "tfm_test_edit"])
        unregister_transformation("tfm_test_edit")
        register_transformation("tfm_test_edit", "colour", lambda image, rng: (image // 3).astype(np.uint8),
                                description="divide by three (no parameters)")
        assert fp(transformations=["identity", "tfm_test_edit"]) != before  # same name, new behaviour
    finally:
        unregister_transformation("tfm_test_edit")


def test_features_are_cached_so_a_second_session_transforms_nothing(tmp_path, monkeypatch):
    source = load_dataset("shapes", n_train=20, n_test=10, image_size=32)
    views = transformed_views(source, seed=0, per_image=2, per_transformation={"train": 1, "test": 1})
    first = FeatureStore(cache_dir=tmp_path, device=torch.device("cpu"))
    expected = first.get(PixelStats(), views, "train")
    assert first.counters.computed == 1

    def refuse(self, indices):
        raise AssertionError("a cached view was transformed again")

    monkeypatch.setattr(TransformedImages, "get", refuse)
    rebuilt = transformed_views(source, seed=0, per_image=2, per_transformation={"train": 1, "test": 1})
    second = FeatureStore(cache_dir=tmp_path, device=torch.device("cpu"))
    torch.testing.assert_close(second.get(PixelStats(), rebuilt, "train"), expected)
    assert second.counters.from_disk == 1 and second.counters.computed == 0


def test_bad_transformation_lists_are_clear_errors():
    source = load_dataset("shapes", n_train=4, n_test=4, image_size=32)
    sizes = {"train": 1, "test": 1}
    with pytest.raises(UnknownNameError, match="Did you mean 'invert'"):
        transformed_views(source, seed=0, per_image=1, per_transformation=sizes, transformations=["invrt"])
    with pytest.raises(DatasetError, match="duplicates"):
        transformed_views(source, seed=0, per_image=1, per_transformation=sizes, transformations=["invert", "invert"])
    with pytest.raises(DatasetError, match="empty"):
        transformed_views(source, seed=0, per_image=1, per_transformation=sizes, transformations=[])


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_pixel_statistics_recognise_the_colour_family(views, stats, task, kind):
    fit = linear_classifier(LINEAR, seed=0) if kind == "linear" else mlp_classifier(MLP, seed=0)
    metrics = run(views, task, stats, fit)
    fine, grouped = metrics["fine_grained_top1"], metrics["grouped_top1"]
    # every colour member but palette_quantize (in colour since it leaked from quality): a
    # 4-16 colour palette barely moves these 32-bin histograms of one photo, and the linear
    # probe took it for a text overlay in 3 of its 6 test views when this was measured
    confusion = np.asarray(fine.details["confusion"])
    colour = [i for i, name in enumerate(task.names)
              if task.families[task.family_of[i]] == "colour" and name != "palette_quantize"]
    assert confusion[colour, colour].sum() / confusion[colour].sum() >= 0.95
    assert grouped.details["per_family_top1"]["colour"] >= 0.95
    assert fine.value > 10 * fine.details["chance"]  # and far above chance over the whole bank


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_constant_embedding_is_at_chance(views, task, kind):
    store = FeatureStore(cache_dir=None, device=torch.device("cpu"))
    features = store.get(Constant(), views, "train"), store.get(Constant(), views, "test")
    fit = linear_classifier(LINEAR, seed=0) if kind == "linear" else mlp_classifier(MLP, seed=0)
    metrics = run(views, task, features, fit)
    test_y = views.split("test").labels
    truths = {
        "fine_grained_top1": test_y,
        "grouped_top1": task.family_of[test_y],
        "generalization_top1": task.family_of[test_y[np.isin(np.array(task.names)[test_y], task.held_out)]],
    }
    for name, metric in metrics.items():
        truth = truths[name]
        # one class predicted for every view: correctness is exactly "truth == that class"
        matches = [c for c in np.unique(truth) if np.array_equal(metric.per_sample, (truth == c).astype(float))]
        assert matches or metric.value == 0.0, name
        assert metric.value <= metric.details["majority"] + 1e-12
    assert metrics["fine_grained_top1"].value <= 1.0 / len(task.names) + 1e-12  # balanced classes


# ----------------------------------------------------------------------------- against scikit-learn


def test_linear_probes_match_sklearn_logistic_regression(views, stats, task):
    """Both minimise the same strictly convex objective (``weight_decay = 1/(C·N)``); ours stops
    at a float32 L-BFGS tolerance. Classes the statistics cannot tell apart (identity and the
    flips leave every histogram unchanged) tie, and the two solvers break ties differently, so
    predictions are compared through scikit-learn's model: for every test view, its logit for
    our prediction must be within 1e-3 of its best logit (measured gaps are below 1e-5, logits
    are O(10)). Accuracies may then differ only through ties: we allow 2 %."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix

    fit, predictions = recording(linear_classifier(LINEAR, seed=0))
    metrics = run(views, task, stats, fit)
    train_y, test_y = views.split("train").labels, views.split("test").labels
    held = np.isin(np.array(task.names), task.held_out)
    cases = {
        "fine_grained_top1": (np.ones(len(train_y), bool), train_y, np.ones(len(test_y), bool), test_y),
        "grouped_top1": (np.ones(len(train_y), bool), task.family_of[train_y],
                         np.ones(len(test_y), bool), task.family_of[test_y]),
        "generalization_top1": (~held[train_y], task.family_of[train_y], held[test_y], task.family_of[test_y]),
    }
    for name, (keep_train, fit_y, keep_test, truth) in cases.items():
        a, b = standardized(stats[0][torch.as_tensor(np.flatnonzero(keep_train))],
                            stats[1][torch.as_tensor(np.flatnonzero(keep_test))])
        ref = LogisticRegression(C=1.0 / (LINEAR.weight_decays[0] * keep_train.sum()), tol=1e-10, max_iter=10_000)
        ref.fit(a, fit_y[keep_train])
        expected = (ref.predict(b) == truth[keep_test]).astype(float)
        metric = metrics[name]
        assert len(metric.per_sample) == keep_test.sum()
        predicted = predictions[list(cases).index(name)]
        assert np.all(np.isin(predicted, ref.classes_)), name
        ours, scores = ref.classes_.searchsorted(predicted), ref.decision_function(b)
        assert np.all(scores.max(axis=1) - scores[np.arange(len(ours)), ours] <= 1e-3), name
        assert abs(metric.value - expected.mean()) <= 0.02, name
        assert metric.value == pytest.approx(np.mean(metric.per_sample))
        if name != "generalization_top1":
            assert metric.details["n_test"] == len(test_y)
    # the recorded confusion matrix and per-family accuracy are those of the predictions
    fine = metrics["fine_grained_top1"]
    confusion = np.array(fine.details["confusion"])
    assert confusion.sum() == len(test_y) and np.trace(confusion) == fine.per_sample.sum()
    assert np.array_equal(confusion.sum(axis=1), np.bincount(test_y, minlength=len(task.names)))
    families = task.family_of[test_y]
    for f, family in enumerate(task.families):
        assert fine.details["per_family_top1"][family] == pytest.approx(fine.per_sample[families == f].mean(), abs=1e-4)
    grouped = metrics["grouped_top1"]
    predicted_family = np.array(grouped.details["confusion"])  # rows truth, columns prediction
    assert np.trace(predicted_family) == grouped.per_sample.sum()
    assert predicted_family.shape == (len(task.families),) * 2
    assert np.array_equal(predicted_family.sum(axis=1), np.bincount(families, minlength=len(task.families)))
    assert confusion_matrix(families, families, labels=range(len(task.families))).trace() == len(test_y)
    held_names = set(metrics["generalization_top1"].details["per_transformation_top1"])
    assert held_names == set(task.held_out) == set(generalization_split(0)[1])


def test_mlp_probe_matches_sklearn_mlp_classifier(views, stats):
    """Same recipe (one ReLU layer, Adam, mini-batches, L2 on weights: ``alpha = weight_decay ·
    batch_size``); the fits differ only in initialisation and batch order. Ours must land within
    the range scikit-learn itself spans over three seeds, widened by two binomial standard errors
    of an accuracy over the test views (the run-to-run noise three seeds under-sample)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    train_y, test_y = views.split("train").labels, views.split("test").labels
    head = fit_mlp(stats[0], torch.as_tensor(train_y), n_classes=41, config=MLP, seed=0)
    ours = float((head.logits(stats[1]).argmax(1).numpy() == test_y).mean())
    a, b = standardized(*stats)
    theirs = []
    for seed in range(3):
        ref = MLPClassifier(hidden_layer_sizes=(MLP.hidden,), alpha=MLP.weight_decay * MLP.batch_size,
                            batch_size=MLP.batch_size, learning_rate_init=MLP.lr, max_iter=MLP.epochs,
                            n_iter_no_change=MLP.epochs + 1, tol=0.0, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of epochs, by design
            theirs.append(float((ref.fit(a, train_y).predict(b) == test_y).mean()))
    margin = 2 * np.sqrt(np.mean(theirs) * (1 - np.mean(theirs)) / len(test_y))
    assert min(theirs) - margin <= ours <= max(theirs) + margin, (ours, theirs)
    assert ours > 10 / 41  # and the comparison is not between two chance-level fits


def test_mlp_probe_is_seeded_and_leaves_the_global_rng_alone(stats, views):
    y = torch.as_tensor(views.split("train").labels)
    state = torch.random.get_rng_state()
    first = fit_mlp(stats[0], y, n_classes=41, config=MLP, seed=5).logits(stats[1])
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(fit_mlp(stats[0], y, n_classes=41, config=MLP, seed=5).logits(stats[1]), first,
                               rtol=0, atol=0)
    assert not torch.equal(fit_mlp(stats[0], y, n_classes=41, config=MLP, seed=6).logits(stats[1]), first)


def test_generalization_without_held_out_views_is_a_clear_error(views, stats, task):
    test_y = views.split("test").labels
    keep = ~np.isin(np.array(task.names)[test_y], task.held_out)
    with pytest.raises(TransformationProbeError, match="test_per_transformation"):
        generalization_probe("transformation_linear", linear_classifier(LINEAR, seed=0), stats[0],
                             views.split("train").labels, stats[1][torch.as_tensor(np.flatnonzero(keep))],
                             test_y[keep], task)
