"""RPGD as the study counts it (PROTOCOLS.md A): every attacked image in the denominator, the
target rule, the study's image order, its preparation per model family, and the model's own
classifier when it has one. Hand-built encoders whose mistakes are known by construction, and
a randomly initialised timm / torchvision model for the own-classifier path; all fast.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("foolbox")

from torch import nn  # noqa: E402

from pytest_visprobe import Encoder  # noqa: E402
from pytest_visprobe.datasets.base import ArrayImages, Split  # noqa: E402
from pytest_visprobe.encoders.loading import as_encoder, load_encoder  # noqa: E402
from pytest_visprobe.encoders.refs import parse_encoder_ref  # noqa: E402
from pytest_visprobe.errors import ConfigError  # noqa: E402
from pytest_visprobe.kernels.linear import LinearHead  # noqa: E402
from pytest_visprobe.kernels.rpgd import (  # noqa: E402
    LINEAR_CLASSIFIER,
    OWN_CLASSIFIER,
    attack_images,
    preparation,
    rpgd_probe,
)
from pytest_visprobe.probes.rpgd import RobustnessConfig, uses_own_classifier  # noqa: E402

K, SIZE = 3, 8
FAST = dict(steps=2, rel_stepsize=1.25, linf_epsilons=(0.0,), linf_robust_epsilon=0.0)


class MeanColour(Encoder):
    """embed = the mean colour; its own classifier = the same three numbers as logits, so the
    prediction is the dominant channel."""

    name = "mean-colour"
    classifier_classes = K

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)


IDENTITY_HEAD = LinearHead(mean=torch.zeros(K), scale=torch.ones(K), weight=torch.eye(K), bias=torch.zeros(K),
                           weight_decay=0.0)


def _split(n: int = 30) -> tuple[Split, np.ndarray, np.ndarray]:
    """Image i has dominant colour label+1 for i in ``wrong`` (a clean mistake, not on the
    target), label+2 = the target (round(0.8·3) = 2) for i in ``on_target``, else its label."""
    labels = np.arange(n) % K
    wrong, on_target = np.array([1, 5, 8, 13, 21]), np.array([2, 17, 26])
    dominant = labels.copy()
    dominant[wrong] = (labels[wrong] + 1) % K
    dominant[on_target] = (labels[on_target] + 2) % K
    pixels = np.full((n, SIZE, SIZE, 3), 60, dtype=np.uint8)
    pixels[np.arange(n), :, :, dominant] = 200
    return Split(images=ArrayImages(pixels), labels=labels.astype(np.int64)), wrong, on_target


@pytest.mark.parametrize("classifier", ["linear", "own"])
def test_known_clean_error_is_the_untargeted_success_at_eps_zero(classifier):
    split, wrong, on_target = _split()
    config = RobustnessConfig(n_images=len(split), classifier=classifier, **FAST)
    head = IDENTITY_HEAD if classifier == "linear" else None
    auc, robust = rpgd_probe(MeanColour(), head, split, n_classes=K, norm="linf", targeted=False,
                             config=config, seed=0)
    n = len(split)
    assert auc.details["success_rate"] == [(len(wrong) + len(on_target)) / n]
    assert auc.details["clean_accuracy"] == robust.value == (n - len(wrong) - len(on_target)) / n
    assert auc.details["success_rate_clean_correct"] == [0.0]
    assert auc.details["classifier"] == (LINEAR_CLASSIFIER if head is not None else OWN_CLASSIFIER)
    targeted, _ = rpgd_probe(MeanColour(), head, split, n_classes=K, norm="linf", targeted=True,
                             config=config, seed=0)
    assert targeted.details["target_shift"] == 2 and targeted.details["success_rate"] == [len(on_target) / n]


def test_clean_mistakes_stay_successes_under_attack():
    """At ε > 0 a clean mistake is a success without being attacked; per-image AUC 1 for each."""
    split, wrong, on_target = _split()
    config = RobustnessConfig(n_images=len(split), steps=2, rel_stepsize=1.25, linf_epsilons=(0.0, 0.01),
                              linf_robust_epsilon=0.01)
    auc, _ = rpgd_probe(MeanColour(), IDENTITY_HEAD, split, n_classes=K, norm="linf", targeted=False,
                        config=config, seed=0)
    _, _, order = attack_images(split, n_images=len(split))
    mistakes = np.isin(order, np.concatenate([wrong, on_target]))
    assert np.all(auc.per_sample[mistakes] == 1.0)
    assert auc.details["n_attacked"] == len(split) - mistakes.sum()
    assert auc.details["n_success"][1] >= mistakes.sum()


def test_classifier_choice():
    encoder = MeanColour()
    assert not uses_own_classifier(encoder, K)  # auto: only an ImageNet-1k head on 1,000 classes
    assert uses_own_classifier(encoder, K, "own") and not uses_own_classifier(encoder, K, "linear")
    big = MeanColour()
    big.classifier_classes = 1000
    assert uses_own_classifier(big, 1000) and not uses_own_classifier(big, 10)
    with pytest.raises(ConfigError, match="classifier = 'own'"):
        uses_own_classifier(big, 10, "own")
    plain = Encoder()
    assert plain.classifier_classes is None and not uses_own_classifier(plain, 1000)


def test_study_preparation_crops_and_clip_resizes():
    split, _, _ = _split()
    encoder = MeanColour()
    encoder.input_size = (6, 6)
    size, crop, _ = preparation(encoder, "study")
    assert size == (6, 6) and crop
    x, _, order = attack_images(split, n_images=4, size=size, crop=True)
    full, _, _ = attack_images(split, n_images=4)
    assert torch.equal(x, full[..., 1:7, 1:7])  # CenterCrop(6) of 8×8
    encoder.ref = "open_clip:ViT-B-32/openai"
    assert preparation(encoder, "study")[:2] == ((6, 6), False)  # CLIP: Resize(224) + CenterCrop(224)
    assert preparation(encoder, "encoder")[:2] == ((6, 6), False)
    assert preparation(encoder, "dataset")[:2] == (None, False)


def _tiny_timm(num_classes: int):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return timm.create_model("resnet10t", pretrained=False, num_classes=num_classes).eval()


def test_timm_module_is_attacked_through_its_own_head():
    model = _tiny_timm(1000)
    encoder = as_encoder(model, name="resnet10t")
    assert encoder.classifier_classes == 1000
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(encoder.classify(x), model(encoder.preprocess(x)))
        pred = model(encoder.preprocess(x)).argmax(1).numpy()
    # two images labelled as the model predicts, two not: ε = 0 untargeted success is exactly 1/2
    labels = pred.copy()
    labels[[1, 3]] = (labels[[1, 3]] + 1) % 1000
    split = Split(images=ArrayImages((x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)), labels=labels)
    images, _, order = attack_images(split, n_images=4)
    with torch.no_grad():
        own = model(encoder.preprocess(images)).argmax(1).numpy()
    expected = float((own != labels[order]).mean())
    assert uses_own_classifier(encoder, 1000)
    auc, _ = rpgd_probe(encoder, None, split, n_classes=1000, norm="linf", targeted=False,
                        config=RobustnessConfig(n_images=4, **FAST), seed=0)
    assert auc.details["success_rate"] == [expected] and auc.details["classifier"] == OWN_CLASSIFIER


def test_timm_loader_keeps_the_head_and_the_embedding(tmp_path):
    """timm:NAME@FILE: classify is the full model, embed what the model without head returns."""
    from safetensors.torch import save_file

    model = _tiny_timm(1000)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    encoder = load_encoder(parse_encoder_ref(f"timm:resnet10t@{path}"))
    headless = _tiny_timm(0)
    headless.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")})
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        inputs = encoder.preprocess(x)
        torch.testing.assert_close(encoder.classify(x), model(inputs))
        torch.testing.assert_close(encoder.embed(x), headless(inputs))
    assert encoder.classifier_classes == 1000


def test_timm_checkpoint_with_another_head_loads_without_one(tmp_path):
    from safetensors.torch import save_file

    model = _tiny_timm(10)
    path = tmp_path / "ten.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    encoder = load_encoder(parse_encoder_ref(f"timm:resnet10t@{path}"))
    assert encoder.classifier_classes is None
    with pytest.raises(NotImplementedError):
        encoder.classify(torch.rand(1, 3, 32, 32))


def test_torchvision_keeps_its_imagenet_head(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    encoder = load_encoder(parse_encoder_ref(f"torchvision:resnet18@{path}"))
    assert encoder.classifier_classes == 1000
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(encoder.classify(x), model(encoder.preprocess(x)))
        assert encoder.embed(x).shape == (2, 512)


class _Plain(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_a_module_without_classifier_has_none():
    encoder = as_encoder(_Plain(), name="plain")
    assert encoder.classifier_classes is None
