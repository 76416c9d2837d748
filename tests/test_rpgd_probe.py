"""The RPGD probe (encoder + classifier under attack) and the robustness suite end to end.

The attack kernel is checked against foolbox and a plain-torch PGD loop in
test_robustness_kernel.py (not named test_robustness.py: the pytester runs below import the
shipped suites/test_robustness.py in this process, and one basename cannot be two modules).
Here: what the probe attacks (which images, which classifier, which pixel space), the known
answers at ε = 0 and at an ε that covers the whole pixel box, broken encoders, and the suite
through pytester. Everything uses a tiny encoder on 16×16 colour images, so it takes seconds.
"""

from __future__ import annotations

import copy
import math
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("foolbox")

import torch.nn.functional as F  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from torch import nn  # noqa: E402

from pytest_visprobe import Encoder  # noqa: E402
from pytest_visprobe.datasets.base import ArrayImages, Split  # noqa: E402
from pytest_visprobe.features import to_float_images  # noqa: E402
from pytest_visprobe.runner.options import ENCODER_OPTION, DATASET_OPTION, NO_CACHE_OPTION  # noqa: E402
from pytest_visprobe.kernels.pgd import NonDifferentiableEncoderError  # noqa: E402
from pytest_visprobe.kernels.rpgd import EncoderClassifier, attack_images, rpgd_probe  # noqa: E402
from pytest_visprobe.probes.rpgd import RobustnessConfig  # noqa: E402
from pytest_visprobe.probes.label import label_top1 as label_probe  # noqa: E402
from pytest_visprobe.probes.heads import LinearProbeConfig  # noqa: E402
from pytest_visprobe.profiles import get_profile  # noqa: E402
from pytest_visprobe.probes.spec import metric_spec  # noqa: E402

N_CLASSES, SIZE = 3, 16
FAST = dict(n_images=24, steps=10, rel_stepsize=0.25)


class ToyEncoder(Encoder):
    """Resize 16 → 12 and normalise inside (as the contract asks), a tanh conv, mean pooling."""

    name = "toy"
    input_size = (12, 12)

    def __init__(self, detach: bool = False) -> None:
        super().__init__()
        self.detach = detach
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Tanh())
        self.register_buffer("mean", torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.3, 0.25]).view(1, 3, 1, 1))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=self.input_size, mode="bilinear", antialias=True, align_corners=False)
        out = self.body((x - self.mean) / self.std).mean(dim=(2, 3))
        return out.detach() if self.detach else out


def _split(n: int, seed: int) -> Split:
    """Class c: a reddish, greenish or bluish image with pixel noise (separable by colour)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % N_CLASSES
    base = 0.3 + 0.4 * np.eye(3)[labels]  # [n, 3]
    pixels = base[:, None, None, :] + rng.normal(0.0, 0.08, (n, SIZE, SIZE, 3))
    return Split(images=ArrayImages((np.clip(pixels, 0, 1) * 255).astype(np.uint8)), labels=labels.astype(np.int64))


def _features(encoder: Encoder, split: Split) -> torch.Tensor:
    with torch.no_grad():
        return encoder.embed(to_float_images(split.images.get(range(len(split))), torch.device("cpu")))


@pytest.fixture(scope="module")
def toy():
    encoder = ToyEncoder().eval()
    train, test = _split(90, seed=0), _split(30, seed=1)
    metric, head = label_probe(_features(encoder, train), train.labels, _features(encoder, test), test.labels,
                               n_classes=N_CLASSES, config=LinearProbeConfig(), seed=0)
    assert metric.value >= 0.9  # the toy must be learnt, or attack numbers mean nothing
    return encoder, head, test


def _probe(toy, *, norm="linf", targeted=False, encoder=None, **config):
    base_encoder, head, test = toy
    return rpgd_probe(encoder or base_encoder, head, test, n_classes=N_CLASSES, norm=norm, targeted=targeted,
                      config=RobustnessConfig(**(FAST | config)), seed=0)


# --------------------------------------------------------------------------- what is attacked


def test_classifier_is_the_head_on_the_encoders_embedding(toy):
    """The attacked module gives the fitted head's logits on the cached-feature path, exactly."""
    encoder, head, test = toy
    images = to_float_images(test.images.get(range(len(test))), torch.device("cpu"))
    with torch.no_grad():
        expected = head.logits(encoder.embed(images))
        got = EncoderClassifier(encoder, head)(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_attacked_images_are_a_seeded_subset_with_their_labels(toy):
    _, _, test = toy
    x, y, order = attack_images(test, n_images=10, seed=3)
    again, _, order_again = attack_images(test, n_images=10, seed=3)
    _, _, other = attack_images(test, n_images=10, seed=4)
    assert np.array_equal(order, order_again) and torch.equal(x, again)
    assert not np.array_equal(order, other)
    assert len(set(order.tolist())) == 10 and y.tolist() == test.labels[order].tolist()
    assert x.shape == (10, 3, SIZE, SIZE) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    torch.testing.assert_close(x * 255, torch.from_numpy(test.images.get(order)).permute(0, 3, 1, 2).float())
    # more images asked for than the split holds: all of them, once each
    _, _, everything = attack_images(test, n_images=1000, seed=0)
    assert sorted(everything.tolist()) == list(range(len(test)))


def test_default_images_are_the_studys_permutation(toy):
    """``np.random.seed(42); np.random.permutation(n)[:N]``, replayed on the global RNG."""
    _, _, test = toy
    state = np.random.get_state()
    try:
        np.random.seed(42)
        expected = np.random.permutation(len(test))[:10]
    finally:
        np.random.set_state(state)
    _, _, order = attack_images(test, n_images=10)
    assert order.tolist() == expected.tolist()
    (auc, _) = _probe(toy, n_images=10, linf_epsilons=(0.0,), linf_robust_epsilon=0.0)
    assert auc.details["n_images"] == 10


def test_attack_size_encoder_resizes_before_attacking(toy):
    (auc, robust) = _probe(toy, attack_size="encoder")
    assert auc.details["image_size"] == [12, 12]
    (auc, _) = _probe(toy)  # default: the dataset's own resolution
    assert auc.details["image_size"] == [SIZE, SIZE]


def test_gradients_flow_through_the_encoders_preprocessing(toy):
    """Autograd's pixel gradient of encoder + head equals central finite differences.

    The function differentiated is pixels in [0, 1] → resize → normalise → conv → head, so a
    match shows the attack's gradient covers the encoder's own preprocessing (a detached resize
    or normalisation would give a gradient that is None, zero or wrong).
    """
    encoder, head, test = toy
    model = EncoderClassifier(copy.deepcopy(encoder), head).double()  # float64: exact enough for FD
    x = to_float_images(test.images.get([0, 1]), torch.device("cpu")).double().requires_grad_(True)
    weights = torch.randn(2, N_CLASSES, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (grad,) = torch.autograd.grad((model(x) * weights).sum(), x)
    gen = torch.Generator().manual_seed(1)
    h = 1e-6
    for flat in torch.randint(0, x.numel(), (12,), generator=gen).tolist():
        bump = torch.zeros(x.numel(), dtype=torch.float64)
        bump[flat] = h
        bump = bump.view_as(x)
        with torch.no_grad():
            numeric = ((model(x + bump) * weights).sum() - (model(x - bump) * weights).sum()) / (2 * h)
        assert math.isclose(float(grad.flatten()[flat]), float(numeric), rel_tol=1e-5, abs_tol=1e-9)
    assert float(grad.abs().sum()) > 0


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_eps_zero_gives_the_clean_outcome(toy, targeted):
    """ε = 0: untargeted success = clean error; targeted = share already predicted as the target."""
    encoder, head, test = toy
    auc, robust = _probe(toy, targeted=targeted, linf_epsilons=(0.0,), linf_robust_epsilon=0.0)
    x, y, _ = attack_images(test, n_images=FAST["n_images"])
    with torch.no_grad():
        pred = head.logits(encoder.embed(x)).argmax(1)
    hit = pred == (y + 2) % N_CLASSES if targeted else pred != y  # round(0.8 · 3) = 2
    assert auc.value == float(hit.double().mean()) and auc.details["success_rate"] == [auc.value]
    assert auc.details["n_success"] == [int(hit.sum())]
    assert robust.value == auc.details["clean_accuracy"] == robust.details["clean_accuracy"]


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
def test_eps_covering_the_pixel_box_gives_near_full_success(toy, norm, targeted):
    """Linf ε = 1 and L2 ε = √d contain all of [0, 1]^d: every class is reachable.

    An undefended classifier then loses (nearly) every image; PGD judged at its last iterate
    may end on an overshooting step, so we allow 1 image in 20 (as the kernel's test does).
    """
    big = 1.0 if norm == "linf" else math.sqrt(3 * SIZE * SIZE)
    config = {f"{norm}_epsilons": (0.0, big), f"{norm}_robust_epsilon": big}
    auc, robust = _probe(toy, norm=norm, targeted=targeted, steps=100, rel_stepsize=0.025, **config)
    d = auc.details
    assert d["n_attacked"] >= 0.9 * d["n_images"]
    assert d["success_rate"][1] >= 0.95
    if not targeted:
        assert d["success_rate"][0] == pytest.approx(1 - d["clean_accuracy"])
    assert robust.value <= 0.05 + (1 - d["clean_accuracy"])
    assert auc.value == pytest.approx(d["success_rate"][1] / 2)  # trapezoid over two ε positions


def test_metrics_carry_curve_counts_and_direction(toy):
    """Success and AUC are lower-is-better, robust accuracy higher; details hold the curve."""
    auc, robust = _probe(toy, norm="l2", targeted=True)
    config = RobustnessConfig(**FAST)
    assert (auc.probe, auc.metric) == ("rpgd", "l2_targeted_success_auc")
    assert (robust.probe, robust.metric) == ("rpgd", "l2_targeted_robust_accuracy")
    assert auc.spec.higher_is_better is False and robust.spec.higher_is_better is True
    d = auc.details
    assert d["epsilons"] == list(config.l2_epsilons) and len(d["success_rate"]) == len(d["epsilons"])
    assert d["success_rate"] == [s / d["n_images"] for s in d["n_success"]]
    assert d["n_attacked"] == d["n_images"] == FAST["n_images"]  # targeted: every image is attacked
    assert d["norm"] == "l2" and d["targeted"] is True and d["target_shift"] == 2
    assert "linear head" in d["classifier"] and len(d["success_rate_clean_correct"]) == len(d["epsilons"])
    k = d["epsilons"].index(config.l2_robust_epsilon)
    assert robust.details["epsilon"] == config.l2_robust_epsilon and robust.value == d["robust_accuracy"][k]
    assert all(b >= a for a, b in zip(d["success_rate"], d["success_rate"][1:]))  # a toy this easy: monotone
    # per-sample scores (for bootstrap intervals): one per image, mean = the value
    assert auc.per_sample.shape == robust.per_sample.shape == (d["n_images"],)
    assert auc.per_sample.mean() == pytest.approx(auc.value, abs=1e-12)
    assert robust.per_sample.mean() == pytest.approx(robust.value, abs=1e-12)
    assert set(np.unique(robust.per_sample)) <= {0.0, 1.0}


def test_non_differentiable_encoder_is_a_clear_error_not_zero_success(toy):
    with pytest.raises(NonDifferentiableEncoderError, match=r"embed\(\) must be differentiable"):
        _probe(toy, encoder=ToyEncoder(detach=True).eval())


# --------------------------------------------------------------------------- profile config


@pytest.mark.parametrize(
    "change,match",
    [
        ({"linf_robust_epsilon": 0.3}, "linf_robust_epsilon must be one of"),
        ({"l2_epsilons": (0.0, 1.0, 0.5), "l2_robust_epsilon": 0.5}, "strictly increasing"),
        ({"linf_epsilons": ()}, "non-empty"),
        ({"steps": 0}, "greater than 0"),
        ({"attack_size": "model"}, "'dataset', 'encoder' or 'study'"),
        ({"classifier": "mlp"}, "'auto', 'own' or 'linear'"),
        ({"epsilon": 0.1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_robustness_config_is_rejected(change, match):
    with pytest.raises(ValidationError, match=match):
        RobustnessConfig(**change)


def test_quick_profile_keeps_the_papers_step_budget():
    config = get_profile("quick").settings_for("rpgd")
    assert config.steps * config.rel_stepsize == pytest.approx(100 * 0.025)
    assert config.linf_epsilons[0] == 0.0 and config.l2_epsilons[0] == 0.0
    assert metric_spec("rpgd", "linf_untargeted_success_auc").higher_is_better is False


# --------------------------------------------------------------------------- end to end


NOT_DIFFERENTIABLE = """
    from torch import nn

    class Detached(nn.Module):
        def forward(self, x):
            return nn.functional.adaptive_avg_pool2d(x, 4).flatten(1).detach()

    def create_encoder():
        return Detached()
"""


def test_suite_records_curves_directions_and_plot(suite):
    """conv.py on digits: 8 records, the head fitted once from 2 cached feature sets, a PNG."""
    (suite.pytester.path / "suites" / "visprobe_thresholds.toml").write_text(textwrap.dedent("""
        [[threshold]]
        probe = "rpgd"
        metric = "linf_untargeted_success_auc"
        value = 0.0                 # lower is better: any success above 0 fails
        [[threshold]]
        probe = "rpgd"
        metric = "l2_untargeted_success_auc"
        value = 1.0                 # the largest possible AUC: always passes
    """))
    result = suite.run(f"{ENCODER_OPTION}=conv.py", f"{DATASET_OPTION}=digits", NO_CACHE_OPTION,
                       "suites/test_robustness.py", "-v", limit=60)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*test_rpgd?conv-digits-linf-untargeted? FAILED*",
        "*conv · rpgd.linf_untargeted_success_auc on digits: obtained 0.*, expected <= 0.0000 "
        "(lower is better)*",
    ])
    card = suite.scorecard()
    records = {r["metric"]: r for r in card["records"]}
    quick = get_profile("quick").settings_for("rpgd")
    assert len(card["records"]) == 8 and {r["probe"] for r in card["records"]} == {"rpgd"}
    for norm in ("linf", "l2"):
        for criterion in ("untargeted", "targeted"):
            auc = records[f"{norm}_{criterion}_success_auc"]
            robust = records[f"{norm}_{criterion}_robust_accuracy"]
            assert auc["higher_is_better"] is False and robust["higher_is_better"] is True
            d = auc["details"]
            assert d["epsilons"] == list(quick.epsilons(norm)) and d["n_images"] == quick.n_images
            if criterion == "untargeted":  # ε = 0: the clean error rate
                assert d["success_rate"][0] == pytest.approx(1 - d["clean_accuracy"])
                assert d["n_attacked"] == round(d["clean_accuracy"] * d["n_images"])
            else:
                assert d["n_attacked"] == d["n_images"]
            assert 0.0 <= auc["value"] <= 1.0 and robust["details"]["epsilon"] == quick.robust_epsilon(norm)
    assert records["l2_untargeted_success_auc"]["passed"] is True
    # the label head came from the two cached feature sets (train, test), fetched once
    features = card["provenance"]["features"]
    assert features["computed"] == 2 and features["from_memory"] == 0
    assert card["plots"] == ["rpgd_success_digits.png"]
    assert (suite.pytester.path / "visprobe-report" / "rpgd_success_digits.png").stat().st_size > 0


def test_suite_non_differentiable_encoder_fails_clearly(suite):
    suite.encoder("detached.py", NOT_DIFFERENTIABLE)
    result = suite.run(f"{ENCODER_OPTION}=detached.py", f"{DATASET_OPTION}=digits", NO_CACHE_OPTION,
                       "suites/test_robustness.py", limit=60)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(["*NonDifferentiableEncoderError: the model's output is not connected to its "
                                 "input by autograd*embed() must be differentiable*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert suite.scorecard()["records"] == []  # no silent 0 % success
