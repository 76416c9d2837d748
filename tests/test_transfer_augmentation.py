"""The transfer probe's augmented path (augmented.py) against plain-torch loops written out here:
the same seeded torchvision v2 transforms and encoder, the same shuffles and Adam steps."""

from __future__ import annotations

import contextlib

import numpy as np
import pydantic
import pytest
import torch
from torchvision.transforms import v2

from pytest_visprobe.augmented import (
    STUDY_AUGMENTATION, augmented_epoch, epoch_seed, fit_adam_probe_augmented, study_augmentation,
)
from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split
from pytest_visprobe.encoders.base import Encoder
from pytest_visprobe.encoders.controls import random_init_copy
from pytest_visprobe.encoders.kinds import encoder_kind
from pytest_visprobe.kernels.transfer import fit_adam_probe
from pytest_visprobe.probes.heads import LinearProbeConfig
from pytest_visprobe.probes.label import CACHED_VIEWS, CLIP_VIEWS, dataset_label_top1
from pytest_visprobe.profiles import get_profile
from pytest_visprobe.runner.context import ProbeContext


class Moments(Encoder):
    """A known function of the pixels: per channel the mean, left-half minus right-half mean and
    top-half minus bottom-half mean, through a fixed linear map (a parameter, for the control).
    Flipping an image negates the left-minus-right entries. It records the sizes it is fed."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(9, 9, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(9))
        self.sizes = []

    def embed(self, images):
        self.sizes.append(tuple(images.shape[-2:]))
        w, h = images.shape[-1] // 2, images.shape[-2] // 2
        mean = images.mean(dim=(2, 3))
        left_right = images[..., :w].mean(dim=(2, 3)) - images[..., -w:].mean(dim=(2, 3))
        top_bottom = images[..., :h, :].mean(dim=(2, 3)) - images[..., -h:, :].mean(dim=(2, 3))
        return self.proj(torch.cat([mean, left_right, top_bottom], dim=1))


def _images(n, h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _ramps(n, h=20, w=24):
    """Brightness rising left to right: any crop of it still rises, so only a flip makes the
    left half brighter than the right."""
    ramp = np.linspace(0, 255, w).round().astype(np.uint8)
    return np.broadcast_to(ramp[None, None, :, None], (n, h, w, 3)).copy()


def _plain_views(array, rows, seed, epoch, resize, crop):
    """The study's transform per image in batch order, from torch.manual_seed(seed of the epoch)."""
    transform = v2.Compose([v2.Resize(resize), v2.RandomResizedCrop(crop, interpolation=v2.InterpolationMode.BICUBIC),
                            v2.RandomHorizontalFlip()])
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(epoch_seed(seed, epoch))
        for batch in rows:
            views = [transform(torch.from_numpy(array[r]).permute(2, 0, 1)) for r in batch]
            out.append(torch.stack(views).float() / 255)
    return out


def _plain_features(encoder, array, rows, seed, epoch, resize=14, crop=12):
    with torch.no_grad():
        return [encoder.embed(v) for v in _plain_views(array, rows, seed, epoch, resize, crop)]


def _plain_orders(n, batch_size, seed, epochs):
    generator = torch.Generator().manual_seed(seed)
    return [[b.numpy() for b in torch.randperm(n, generator=generator).split(batch_size)] for _ in range(epochs)]


def _plain_adam(batches, labels, n_classes, seed, lr=1e-3, weight_decay=5e-4):
    """nn.Linear, CrossEntropyLoss, Adam; one step per (features, rows) batch in order."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(batches[0][0].shape[1], n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for x, rows in batches:
        optimizer.zero_grad()
        torch.nn.CrossEntropyLoss()(model(x), torch.as_tensor(labels[rows])).backward()
        optimizer.step()
    return model


def test_augmented_epoch_is_the_plain_transform_and_encoder_loop():
    array, encoder = _images(11), Moments()
    rows = [np.array([3, 0, 7, 1]), np.array([10, 2, 5, 9]), np.array([4, 6, 8])]
    transform = study_augmentation(resize=14, crop=12)
    for epoch in (0, 1):
        torch.manual_seed(epoch + 100)  # the global RNG's state must not matter
        got = list(augmented_epoch(encoder, ArrayImages(array), rows, seed=7, epoch=epoch, transform=transform))
        want = _plain_features(encoder, array, rows, seed=7, epoch=epoch)
        assert len(got) == 3
        for g, w in zip(got, want):
            assert g.shape == w.shape and torch.allclose(g, w, atol=1e-6, rtol=0)
    # a new epoch draws new views; the same (seed, epoch) the same ones
    first = torch.cat(list(augmented_epoch(encoder, ArrayImages(array), rows, seed=7, epoch=0, transform=transform)))
    again = torch.cat(list(augmented_epoch(encoder, ArrayImages(array), rows, seed=7, epoch=0, transform=transform)))
    second = torch.cat(list(augmented_epoch(encoder, ArrayImages(array), rows, seed=7, epoch=1, transform=transform)))
    assert torch.equal(first, again) and not torch.allclose(first, second)
    assert set(encoder.sizes) == {(12, 12)}  # the crops reach the encoder, which resizes inside if it must


def test_study_transform_defaults_are_the_studys():
    resize, crop, flip = study_augmentation().transforms
    assert resize.size == [276] and resize.interpolation == v2.InterpolationMode.BILINEAR
    assert crop.size == (256, 256) and crop.interpolation == v2.InterpolationMode.BICUBIC
    assert crop.scale == (0.08, 1.0) and isinstance(flip, v2.RandomHorizontalFlip) and flip.p == 0.5


def test_flip_sensitive_encoder_sees_the_flips():
    array, encoder = _ramps(16), Moments()
    rows = [np.arange(16)]
    transform = study_augmentation(resize=14, crop=12)
    cached = encoder.embed(torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255)
    assert (cached[:, 3:6] < 0).all()  # un-augmented: the right half is always brighter
    signs = []
    for epoch in (0, 1):
        (features,) = augmented_epoch(encoder, ArrayImages(array), rows, seed=0, epoch=epoch, transform=transform)
        assert (features[:, 3:6] != 0).all()
        flipped = (features[:, 3:6] > 0).all(dim=1)
        assert bool(((features[:, 3:6] > 0).all(dim=1) | (features[:, 3:6] < 0).all(dim=1)).all())
        signs.append(flipped)
    flips = torch.cat(signs)
    assert 0 < int(flips.sum()) < flips.numel()  # some views flipped, some not


def test_head_is_the_plain_adam_loop_on_the_streamed_batches():
    array = _images(26, seed=1)
    labels = np.random.default_rng(2).integers(0, 3, 26)
    encoder, seed, epochs, batch = Moments(), 4, 2, 6  # 26 = 4 × 6 + 2: a short last batch
    head = fit_adam_probe_augmented(encoder, ArrayImages(array), labels, n_classes=3, epochs=epochs,
                                    batch_size=batch, seed=seed, transform=study_augmentation(resize=14, crop=12))
    streamed = []
    for epoch, rows in enumerate(_plain_orders(26, batch, seed, epochs)):
        streamed += list(zip(_plain_features(encoder, array, rows, seed, epoch), rows))
    ref = _plain_adam(streamed, labels, 3, seed)
    assert torch.allclose(head.weight, ref.weight.detach().T, atol=1e-6, rtol=0)
    assert torch.allclose(head.bias, ref.bias.detach(), atol=1e-6, rtol=0)


class _Recorder:
    """Features by a plain forward pass of the un-augmented images; fits computed once."""

    def features(self, encoder, dataset, split, view):
        images = dataset.split(split).images.get(range(len(dataset.split(split))))
        with torch.no_grad():
            return encoder.embed(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)

    def shared(self, key, compute):
        return compute()

    def progress(self, desc, total, items):
        self.ticks = {"desc": desc, "total": total, "items": items, "ticked": 0}

        @contextlib.contextmanager
        def track():
            def tick():
                self.ticks["ticked"] += 1
            yield tick
        return track()


def _context(encoder, **settings):
    labels = np.arange(12) % 2
    dataset = Dataset("toy", {"train": Split(ArrayImages(_images(12, 16, 16, seed=3)), labels=labels),
                              "test": Split(ArrayImages(_images(6, 16, 16, seed=4)), labels=labels[:6])},
                      class_names=["a", "b"], targets=frozenset({"label"}))
    config = LinearProbeConfig(recipe="adam", adam_epochs=2, adam_batch_size=5, **settings)
    return ProbeContext(recorder=_Recorder(), probe="label_probe", encoder=encoder, dataset=dataset,
                        settings=config, seed=1, resamples=10, device=torch.device("cpu")), config


def _cached_head(ctx, config):
    return fit_adam_probe(ctx.features("train"), torch.as_tensor(ctx.dataset.split("train").labels), n_classes=2,
                          epochs=config.adam_epochs, batch_size=config.adam_batch_size, seed=ctx.seed)


def test_augment_off_is_the_cached_feature_path_exactly():
    ctx, config = _context(Moments(), augment=False)
    metric, head = dataset_label_top1(ctx, config, ctx.dataset.split("train").labels)
    ref = _cached_head(ctx, config)
    assert torch.equal(head.weight, ref.weight) and torch.equal(head.bias, ref.bias)
    assert metric.details.train_views == CACHED_VIEWS
    assert set(ctx.encoder.sizes) == {(16, 16)}  # no augmented forward pass


def test_augment_on_trains_on_study_views_and_scores_cached_test_features():
    encoder = Moments()
    ctx, config = _context(encoder, augment=True)
    metric, head = dataset_label_top1(ctx, config, ctx.dataset.split("train").labels)
    assert metric.details.train_views == "augmented: " + STUDY_AUGMENTATION
    assert ctx.recorder.ticks == {"desc": "encoder · toy/train (augmented, 2 epochs)", "total": 6, "items": 24,
                                  "ticked": 6}  # progress: 2 epochs × 3 batches
    assert (256, 256) in encoder.sizes  # the study's crops went through the encoder
    train = ctx.dataset.split("train")
    ref = fit_adam_probe_augmented(Moments(), train.images, train.labels, n_classes=2, epochs=2, batch_size=5, seed=1)
    assert torch.equal(head.weight, ref.weight) and torch.equal(head.bias, ref.bias)
    test_y = torch.as_tensor(ctx.dataset.split("test").labels)
    want = float((ref.logits(ctx.features("test")).argmax(dim=1) == test_y).float().mean())
    assert metric.value == want


def test_the_control_task_trains_on_augmented_views_too():
    from pytest_visprobe.probes.label import permuted_targets, run

    encoder = Moments()
    ctx, config = _context(encoder, augment=True)
    top1, selectivity = run(ctx)
    assert encoder.sizes.count((256, 256)) == 2 * 2 * 3  # two fits × 2 epochs × 3 batches of ≤ 5 of 12 images
    train = ctx.dataset.split("train")
    control = fit_adam_probe_augmented(Moments(), train.images, permuted_targets(train.labels, ctx.seed), n_classes=2,
                                       epochs=2, batch_size=5, seed=1)
    test_y = torch.as_tensor(ctx.dataset.split("test").labels)
    control_top1 = float((control.logits(ctx.features("test")).argmax(dim=1) == test_y).float().mean())
    assert selectivity.details.control == control_top1
    assert selectivity.value == pytest.approx(top1.value - control_top1)


def test_open_clip_encoder_and_its_control_keep_the_cached_path():
    encoder = Moments()
    encoder.ref = "open_clip:ViT-B-32/openai"
    control = random_init_copy(encoder, seed=0)
    assert encoder_kind(encoder) == encoder_kind(control) == "open_clip"
    for model in (encoder, control):
        ctx, config = _context(model, augment=True)
        model.sizes.clear()
        metric, head = dataset_label_top1(ctx, config, ctx.dataset.split("train").labels)
        ref = _cached_head(ctx, config)
        assert torch.equal(head.weight, ref.weight) and torch.equal(head.bias, ref.bias)
        assert metric.details.train_views == CLIP_VIEWS
        assert set(model.sizes) == {(16, 16)}
    plain = Moments()
    plain.ref = "examples/tiny_cnn.py"
    assert encoder_kind(plain) is None and encoder_kind(Moments()) is None


def test_augment_setting_is_papers_only_and_needs_adam():
    assert get_profile("paper").settings_for("label_probe").augment is True
    for name in ("quick", "standard"):
        assert get_profile(name).settings_for("label_probe").augment is False
    assert get_profile("paper").settings_for("rpgd").head.augment is False
    with pytest.raises(pydantic.ValidationError, match="augment"):
        LinearProbeConfig(augment=True)


def test_region_heads_refuse_augment():
    from pytest_visprobe.probes.regions import RegionSettings

    with pytest.raises(pydantic.ValidationError, match="linear.augment = false"):
        RegionSettings(linear={"recipe": "adam", "augment": True})
    assert RegionSettings(linear={"recipe": "adam"}).linear.augment is False
