"""Preflight kernels: each broken encoder is caught by the check it breaks, with a message naming the cause.

The broken encoders are tiny and their faults are known by construction, so each check is tested
both ways: the faulty encoder fails it, the same encoder without the fault passes every check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_visprobe.encoders import preflight
from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.encoders.preflight import KNOWN_NORMALISATIONS, PreflightError, PreflightWarning

IMAGENET_MEAN, IMAGENET_STD = KNOWN_NORMALISATIONS["ImageNet"]
ALL_CHECKS = [preflight.check_eval_mode, preflight.check_deterministic, preflight.check_batch_independent,
              preflight.check_output_contract, preflight.check_not_constant, preflight.check_normalised_once]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Eight smooth random colour images in [0, 1] (every channel varies)."""
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(8, 3, 4, 4, generator=generator)
    return F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)


class Net(nn.Module):
    """conv → BatchNorm → ReLU → pool; options switch on one fault each."""

    def __init__(self, *, batch_stats=False, dropout=False, nan=False, constant=False, normalise_inside=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8, track_running_stats=not batch_stats)
        self.dropout, self.nan, self.constant, self.normalise_inside = dropout, nan, constant, normalise_inside
        self.num_features = 8
        with torch.no_grad():
            if not batch_stats:
                self.bn.running_mean.uniform_(-0.1, 0.1)
                self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        if self.normalise_inside:
            x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        h = F.relu(self.bn(self.conv(x)))
        if self.dropout:
            h = F.dropout(h, p=0.5, training=True)  # hard-coded: eval() cannot switch it off
        out = h.mean(dim=(2, 3))
        if self.nan:
            out = out / (out - out)  # 0/0
        if self.constant:
            out = out * 0 + 1
        return out


def wrap(module: nn.Module, **kwargs) -> ModuleEncoder:
    return ModuleEncoder(module, name="net", mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs).eval()


def test_a_healthy_encoder_passes_every_check(images):
    encoder = wrap(Net())
    for check in ALL_CHECKS:
        check(encoder, images)
    assert preflight.check_normalised_once(encoder, images) == "normalised once with ImageNet constants before module.conv"


def test_train_mode_batchnorm_is_caught_and_named(images):
    encoder = wrap(Net(batch_stats=True))  # track_running_stats=False: batch statistics even in eval()
    with pytest.raises(PreflightError, match=r"embeddings depend on batch size.*on the other images in the batch.*"
                                             r"BatchNorm using batch statistics: module\.bn \(BatchNorm2d, track_running_stats=False\)"):
        preflight.check_batch_independent(encoder, images)
    training = wrap(Net()).train()
    with pytest.raises(PreflightError, match=r"module\.bn \(BatchNorm2d, in training mode\)"):
        preflight.check_batch_independent(training, images)


def test_eval_mode_is_restored_with_a_warning_and_refusal_fails(images):
    encoder = wrap(Net()).train()
    with pytest.warns(PreflightWarning, match=r"had modules in training mode.*put it in eval mode"):
        preflight.check_eval_mode(encoder, images)
    assert not encoder.training and not encoder.module.bn.training

    class Stubborn(ModuleEncoder):
        def train(self, mode: bool = True):
            return super().train(True)

    stubborn = Stubborn(Net(), name="stubborn")
    with pytest.warns(PreflightWarning), pytest.raises(PreflightError, match=r"stay in training mode after \.eval\(\)"):
        preflight.check_eval_mode(stubborn, images)


def test_dropout_left_on_is_caught(images):
    with pytest.raises(PreflightError, match=r"two forward passes of the same batch differ.*dropout"):
        preflight.check_deterministic(wrap(Net(dropout=True)), images)


def test_nan_is_caught(images):
    with pytest.raises(PreflightError, match=r"embed\(\) returned NaN or inf for 8 of 8 images"):
        preflight.check_output_contract(wrap(Net(nan=True)), images)


def test_wrong_declared_width_is_caught(images):
    module = Net()
    module.num_features = 16
    with pytest.raises(PreflightError, match=r"returned 8 features per image, but the wrapped module's num_features declares 16"):
        preflight.check_output_contract(wrap(module), images)


def test_constant_output_is_caught(images):
    with pytest.raises(PreflightError, match=r"returns the same vector .* for 8 different images: the encoder ignores its input"):
        preflight.check_not_constant(wrap(Net(constant=True)), images)


def test_double_normalisation_is_caught(images):
    encoder = wrap(Net(normalise_inside=True))  # the module normalises, and so does its config
    with pytest.raises(PreflightError, match=r"normalised twice with ImageNet constants: module\.conv sees"):
        preflight.check_normalised_once(encoder, images)


def test_constants_for_0_255_pixels_are_caught(images):
    mean = [255 * m for m in IMAGENET_MEAN]
    std = [255 * s for s in IMAGENET_STD]
    encoder = ModuleEncoder(Net(), name="net", mean=mean, std=std).eval()
    with pytest.raises(PreflightError, match=r"constants for pixel values in \[0, 255\]"):
        preflight.check_normalised_once(encoder, images)


def test_what_normalisation_cannot_tell(images):
    raw = ModuleEncoder(Net(), name="raw").eval()  # no normalisation: legitimate for [0, 1]-trained models
    assert "sees the raw [0, 1] pixels" in preflight.check_normalised_once(raw, images)
    odd = ModuleEncoder(Net(), name="odd", mean=[0.3] * 3, std=[0.7] * 3).eval()
    assert preflight.check_normalised_once(odd, images) == "normalised once with the encoder's declared mean/std constants before module.conv"
    pooled = ModuleEncoder(nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten()), name="pooled").eval()
    assert preflight.check_normalised_once(pooled, images).startswith("cannot tell: no layer saw")


def test_double_normalisation_with_clip_constants_via_timm_style_config(images):
    clip_mean, clip_std = KNOWN_NORMALISATIONS["OpenAI CLIP"]

    class Clipish(Net):
        pretrained_cfg = {"mean": clip_mean, "std": clip_std}

        def forward(self, x):
            x = (x - torch.tensor(clip_mean).view(1, 3, 1, 1)) / torch.tensor(clip_std).view(1, 3, 1, 1)
            return super().forward(x)

    from pytest_visprobe.encoders.loading import as_encoder

    encoder = as_encoder(Clipish(), name="clipish").eval()
    with pytest.raises(PreflightError, match=r"normalised twice with OpenAI CLIP constants"):
        preflight.check_normalised_once(encoder, images)
    assert np.isfinite(encoder.embed(images).detach().numpy()).all()
