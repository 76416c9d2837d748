"""Head diagnostics: each trained head's train loss and train score against an independent
recomputation (scikit-learn, plain torch) from its returned weights, on data with a known
answer; and the Markdown's flag for a head that did not fit its training data."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, average_precision_score, jaccard_score, log_loss

from pytest_visprobe.kernels.linear import fit_probe, top1
from pytest_visprobe.kernels.transfer import fit_adam_probe
from pytest_visprobe.kernels.transformations import fit_mlp
from pytest_visprobe.probes.heads import LinearProbeConfig, LocalizationConfig, MLPProbeConfig


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def head_logits(head, x: torch.Tensor) -> np.ndarray:
    """The linear head's logits by hand, in float64 NumPy, from its returned parameters."""
    x = (x.double().numpy() - head.mean.double().numpy()) / head.scale.double().numpy()
    return x @ head.weight.double().numpy() + head.bias.double().numpy()


def separable(n=300, d=6, k=3, seed=0):
    """Three well-separated blobs: any fitted linear head classifies all of train."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = 6.0 * np.eye(k, d)
    x = centres[y] + rng.normal(size=(n, d))
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)


def noise(n=3000, d=4, shares=(0.5, 0.3, 0.2), seed=0):
    """Features independent of imbalanced labels (majority share 0.5)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(shares), size=n, p=shares)
    return torch.as_tensor(rng.normal(size=(n, d)), dtype=torch.float32), torch.as_tensor(y)


def check_classifier_fit(fit, logits: np.ndarray, y: torch.Tensor) -> None:
    labels = y.numpy()
    assert fit.loss == pytest.approx(log_loss(labels, softmax(logits), labels=np.arange(logits.shape[1])),
                                  rel=1e-4, abs=1e-7)
    assert fit.score == pytest.approx(accuracy_score(labels, logits.argmax(axis=1)), abs=1e-9)
    assert fit.chance == pytest.approx(np.bincount(labels).max() / len(labels), abs=1e-12)


# ------------------------------------------------------------------ linear heads


def test_lbfgs_head_on_separable_data_fits_train_exactly_and_matches_sklearn():
    x, y = separable()
    head = fit_probe(x, y, n_outputs=3, weight_decays=(1e-4,), val_fraction=0.2, score=top1, seed=0)
    check_classifier_fit(head.fit, head_logits(head, x), y)
    assert head.fit.score == 1.0


def test_lbfgs_head_memorises_random_labels_with_tiny_decay():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(20, 50)), dtype=torch.float32)  # more dimensions than samples
    y = torch.as_tensor(rng.integers(0, 4, 20))
    head = fit_probe(x, y, n_outputs=4, weight_decays=(1e-6,), val_fraction=0.2, score=top1, seed=0)
    check_classifier_fit(head.fit, head_logits(head, x), y)
    assert head.fit.score == 1.0 and head.fit.loss < 0.05  # memorised: the representation, not the head, is weak


def test_lbfgs_loss_leaves_the_weight_decay_term_out():
    from pytest_visprobe.kernels.linear import objective

    x, y = noise(n=400)
    head = fit_probe(x, y, n_outputs=3, weight_decays=(1.0,), val_fraction=0.2, score=top1, seed=0)
    xs = (x - head.mean) / head.scale
    penalised = float(objective(xs, y, head.weight, head.bias, 1.0, False))
    assert penalised - head.fit.loss == pytest.approx(0.5 * float(head.weight.pow(2).sum()), rel=1e-4)


def test_multilabel_head_loss_and_map_match_sklearn_with_unknown_entries():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    a = (x[:, :3] + 0.5 * rng.normal(size=(200, 3)) > 0).astype(np.float32)
    known = rng.random(a.shape) > 0.2
    targets = torch.as_tensor(np.where(known, a, np.nan), dtype=torch.float32)

    def score(logits, t):
        from pytest_visprobe.kernels.ranking import mean_average_precision
        k = ~torch.isnan(t)
        return mean_average_precision(t.nan_to_num(0.0).numpy(), logits.numpy(), k.numpy())[0]

    head = fit_probe(torch.as_tensor(x, dtype=torch.float32), targets, n_outputs=3, weight_decays=(1e-3,),
                     val_fraction=0.2, score=score, seed=0, multilabel=True)
    logits = head_logits(head, torch.as_tensor(x, dtype=torch.float32))
    prob = 1 / (1 + np.exp(-logits))
    loss = sum(log_loss(a[known[:, j], j], prob[known[:, j], j], normalize=False, labels=[0, 1]) for j in range(3))
    assert head.fit.loss == pytest.approx(loss / len(x), rel=1e-4)
    ap = np.mean([average_precision_score(a[known[:, j], j], logits[known[:, j], j]) for j in range(3)])
    assert head.fit.score == pytest.approx(ap, abs=1e-6)


def test_attribute_probe_details_carry_train_fit_with_its_chance_rule():
    from pytest_visprobe.probes.attributes import AttributeDetails, attribute_map

    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.normal(size=(240, 4)), dtype=torch.float32)
    a = (x[:, :2].numpy() > 0).astype(np.float32)
    metric = attribute_map(x[:160], a[:160], x[160:], a[160:], attribute_names=["p", "q"],
                           config=LinearProbeConfig(weight_decays=(1e-3,)), seed=0, resamples=0)
    d = metric.details
    assert isinstance(d, AttributeDetails)
    assert d.train_chance == pytest.approx(a[:160].mean(axis=0).mean(), abs=1e-12)
    assert d.train_score > 0.99 and d.train_loss is not None


def test_adam_head_fit_is_the_last_epoch_head_on_all_of_train():
    x, y = separable(n=240)
    head = fit_adam_probe(x, y, n_classes=3, epochs=30, lr=1e-2, seed=0)
    check_classifier_fit(head.fit, head_logits(head, x), y)
    assert head.fit.score == 1.0


def test_adam_head_on_streamed_views_reports_the_last_epochs_running_means():
    """Augmented views are not cached, so the numbers are the last epoch's batches before each
    step; with a zero learning rate the head never moves, so they are the returned head's on
    all of train."""
    from pytest_visprobe.kernels.transfer import RUNNING, shuffled_batches, train_adam_head

    x, y = separable(n=130)
    next_epoch = shuffled_batches(len(y), 40, seed=0)
    head = train_adam_head(lambda _e: ((x[r], y[r]) for r in next_epoch()), n_classes=3, lr=0.0,
                           weight_decay=0.0, epochs=2, seed=0)
    check_classifier_fit(head.fit, head_logits(head, x), y)
    assert head.fit.on == RUNNING and head.fit.details()["train_fit_on"] == RUNNING


def test_label_probe_details_report_train_fit_next_to_test_top1():
    from pytest_visprobe.probes.label import LabelDetails, label_top1

    x, y = separable(n=300)
    metric, head = label_top1(x[:200], y[:200].numpy(), x[200:], y[200:].numpy(), n_classes=3,
                              config=LinearProbeConfig(weight_decays=(1e-4,)), seed=0)
    assert isinstance(metric.details, LabelDetails)
    assert metric.details.train_score == head.fit.score == 1.0
    assert metric.details.train_loss == pytest.approx(head.fit.loss)


# ------------------------------------------------------------------ MLP head


def test_mlp_head_fit_matches_sklearn_on_its_own_weights():
    x, y = separable(n=200)
    config = MLPProbeConfig(hidden=16, epochs=40, batch_size=32, lr=1e-2, weight_decay=1e-4)
    head = fit_mlp(x, y, n_classes=3, config=config, seed=0)
    hidden, out = head.model[0], head.model[2]
    xs = ((x - head.mean) / head.scale).double().numpy()
    h = np.maximum(xs @ hidden.weight.detach().double().numpy().T + hidden.bias.detach().double().numpy(), 0)
    logits = h @ out.weight.detach().double().numpy().T + out.bias.detach().double().numpy()
    check_classifier_fit(head.fit, logits, y)
    assert head.fit.score == 1.0


def test_transformation_details_carry_the_classifier_head_fit():
    from pytest_visprobe.kernels.transformations import linear_classifier, mlp_classifier
    from pytest_visprobe.probes.transformations import TransformationDetails
    from pytest_visprobe.kernels.transformations import TransformationTask, fine_grained_probe

    x, y = separable(n=240)
    task = TransformationTask(names=("a", "b", "c"), families=("f", "g"), family_of=np.array([0, 0, 1]),
                              held_out=("b",))
    for classifier in (linear_classifier(LinearProbeConfig(weight_decays=(1e-4,)), seed=0),
                       mlp_classifier(MLPProbeConfig(hidden=16, epochs=40, batch_size=32, lr=1e-2), seed=0)):
        metric = fine_grained_probe("p", classifier, x[:160], y[:160].numpy(), x[160:], y[160:].numpy(), task)
        details = dict(metric.details)
        details.pop("chance")
        typed = TransformationDetails(**details)
        assert typed.train_score == 1.0 and typed.train_chance == pytest.approx(
            np.bincount(y[:160].numpy()).max() / 160)


# ------------------------------------------------------------------ conv heads


@pytest.fixture(scope="module")
def shapes():
    from pytest_visprobe.datasets import load_dataset

    return load_dataset("shapes", n_train=60, n_test=20, image_size=64)


def test_segmentation_head_fit_matches_a_plain_torch_recomputation(shapes):
    from pytest_visprobe.kernels.segmentation import fit_segmentation_head

    train = shapes.split("train")
    masks = torch.as_tensor(train.semantic_masks).long()
    maps = F.one_hot(masks, 6).permute(0, 3, 1, 2).float()  # the map is the mask: a linear head reads it off
    config = LocalizationConfig(train_mask_size=64)
    head = fit_segmentation_head(maps, train.semantic_masks, n_classes=5, config=config, seed=0)
    with torch.no_grad():
        x = (maps - head.mean[:, None, None]) / head.scale[:, None, None]
        logits = torch.einsum("nchw,kc->nkhw", x, head.weight) + head.bias[:, None, None]
    assert head.fit.loss == pytest.approx(float(F.cross_entropy(logits, masks)), rel=1e-4)
    truth, pred = masks.numpy().ravel(), logits.argmax(dim=1).numpy().ravel()
    labels = np.unique(np.concatenate([truth, pred]))
    assert head.fit.score == pytest.approx(jaccard_score(truth, pred, labels=labels, average="macro"), abs=1e-9)
    assert head.fit.score == pytest.approx(1.0, abs=1e-3)
    assert head.fit.chance == pytest.approx((truth == 0).mean() / len(np.unique(truth)), rel=1e-6)


def reference_detection_loss(out: torch.Tensor, targets) -> float:
    """CenterNet's focal loss (α 2, β 4) plus L1 at centres, over all images, per object: written
    out again here from the paper's formula."""
    k = targets.heatmap.shape[1]
    p = torch.sigmoid(out[:, :k].double()).clamp(1e-12, 1 - 1e-12)
    y = targets.heatmap.double()
    pos = (y == 1).double()
    focal = -(pos * (1 - p) ** 2 * torch.log(p) + (1 - pos) * (1 - y) ** 4 * p ** 2 * torch.log(1 - p)).sum()
    c = targets.centres[:, None].expand(-1, 4, -1, -1)
    l1 = (out[:, k:].double()[c] - targets.regression.double()[c]).abs().sum()
    return float((focal + l1) / max(float(targets.n_objects.sum()), 1.0))


def reference_best_constant_loss(targets) -> float:
    """Per channel, the loss of the best single logit: scipy's bounded scalar search on the focal
    formula over the raw heat-map, and for regression channels a search too (not the median)."""
    from scipy.optimize import minimize_scalar

    k = targets.heatmap.shape[1]
    total = 0.0
    for c in range(k):
        y = targets.heatmap[:, c].double().numpy().ravel()

        def focal(b, y=y):
            p = 1 / (1 + np.exp(-b))
            pos = y == 1
            return float(-((1 - p) ** 2 * np.log(p) * pos).sum() - ((1 - y) ** 4 * p ** 2 * np.log(1 - p) * ~pos).sum())

        total += minimize_scalar(focal, bounds=(-20, 20), method="bounded", options={"xatol": 1e-10}).fun
    for j in range(4):
        r = targets.regression[:, j][targets.centres].double().numpy()
        total += minimize_scalar(lambda b: float(np.abs(r - b).sum()), bounds=(r.min(), r.max()), method="bounded",
                                 options={"xatol": 1e-12}).fun
    return total / max(float(targets.n_objects.sum()), 1.0)


@pytest.mark.parametrize("kind", ["oracle", "noise"])
def test_detection_head_fit_matches_the_formula_and_its_constant_head(shapes, kind):
    from pytest_visprobe.kernels.detection import centre_targets, fit_detection_head
    from pytest_visprobe.report.markdown import did_not_fit

    train = shapes.split("train")
    targets = centre_targets(train.boxes, train.box_labels, n_classes=5, map_size=(16, 16), image_size=(64, 64))
    if kind == "oracle":
        maps, config = torch.cat([targets.heatmap, targets.regression], dim=1), LocalizationConfig(epochs=8)
    else:  # noise features and a decay that zeroes the weights (and the prior bias) every AdamW step
        maps = torch.randn(len(train.boxes), 8, 16, 16, generator=torch.Generator().manual_seed(0))
        config = LocalizationConfig(epochs=3, weight_decay=100.0)
    head = fit_detection_head(maps, targets, config=config, seed=0)
    with torch.no_grad():
        x = (maps - head.mean[:, None, None]) / head.scale[:, None, None]
        out = torch.einsum("nchw,kc->nkhw", x, head.weight) + head.bias[:, None, None]
    assert head.fit.loss == pytest.approx(reference_detection_loss(out, targets), rel=1e-4)
    assert head.fit.constant_loss == pytest.approx(reference_best_constant_loss(targets), rel=1e-5)
    assert head.fit.score is None
    flagged = did_not_fit(head.fit.details())
    assert (flagged is not None) == (kind == "noise"), flagged


# ------------------------------------------------------------------ Markdown flag


def card_of(records):
    from pytest_visprobe.report.scorecard import Outcome, Provenance, Scorecard

    provenance = Provenance(created=datetime(2026, 1, 1, tzinfo=timezone.utc), profile="quick", seed=0,
                            device="cpu", python="3.11", platform="linux", packages={}, command=["pytest"],
                            features={})
    return Scorecard(provenance=provenance, records=records, outcome=Outcome(passed=len(records)))


def label_record(encoder: str, x, y, weight_decay: float):
    from pytest_visprobe.probes.label import label_top1
    from pytest_visprobe.report.scorecard import Record

    n = len(y) * 2 // 3
    metric, _ = label_top1(x[:n], y[:n].numpy(), x[n:], y[n:].numpy(), n_classes=3,
                           config=LinearProbeConfig(weight_decays=(weight_decay,)), seed=0)
    return Record(encoder=encoder, probe="label_probe", dataset="toy", metric="top1", value=metric.value,
                  higher_is_better=True, nodeid="n", passed=True, details=metric.details_dict(),
                  chance=metric.chance)


def test_markdown_flags_a_head_on_noise_with_strong_decay_and_not_a_fitted_one():
    from pytest_visprobe.report.markdown import did_not_fit, to_markdown

    underfit = label_record("noise_enc", *noise(), weight_decay=10.0)
    fitted = label_record("good_enc", *separable(n=300), weight_decay=1e-4)
    assert did_not_fit(underfit.details) is not None and did_not_fit(fitted.details) is None
    markdown = to_markdown(card_of([underfit, fitted]))
    section = markdown.split("## Heads that did not fit their training data")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(lines) == 1 and lines[0].startswith("- `noise_enc` label_probe on toy: train ")
    d = underfit.details
    assert f"train {d['train_score']:.3f} vs chance {d['train_chance']:.3f}" in lines[0]
    assert f"test top1 {underfit.value:.3f}" in lines[0]
    assert "good_enc" not in section


def test_markdown_has_no_heads_section_when_every_head_fits():
    from pytest_visprobe.report.markdown import to_markdown

    fitted = label_record("good_enc", *separable(n=300), weight_decay=1e-4)
    assert "did not fit" not in to_markdown(card_of([fitted]))


@pytest.mark.parametrize(("details", "flagged"), [
    ({"train_score": 0.54, "train_chance": 0.5, "train_loss": 1.0}, True),  # below 0.5 + 0.1·0.5
    ({"train_score": 0.56, "train_chance": 0.5}, False),
    ({"train_loss": 0.95, "train_constant_loss": 1.0}, True),  # a loss-only head: above 0.9 × constant
    ({"train_loss": 0.85, "train_constant_loss": 1.0}, False),
    ({"weight_decay": 1e-3}, False),  # a record from before head diagnostics: nothing to judge
])
def test_flag_rule(details, flagged):
    from pytest_visprobe.report.markdown import did_not_fit

    assert (did_not_fit(details) is not None) == flagged
