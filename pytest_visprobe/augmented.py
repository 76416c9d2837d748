"""The study's training augmentation for the transfer probe, streamed through the frozen encoder.

Devillers et al. train the linear head on new views every epoch: ``Resize(276)`` (bilinear),
``RandomResizedCrop(256, bicubic)``, ``RandomHorizontalFlip`` (PROTOCOLS.md A). Here each
epoch's shuffled batches are decoded (the next one in the background), augmented with
torchvision v2 transforms on uint8 tensors (rounded and clipped at every step, as the study's
PIL pipeline), and run through ``encoder.embed`` in eval mode under ``no_grad``, with the
precision the feature cache uses; only one batch of views and features exists at a time,
nothing is cached. The transforms apply to the images as the dataset hands them out (32-pixel
CIFAR images go straight to ``Resize(276)``; the study resized them to 256 first), and the
encoder then resizes the 256-pixel crops to its input size and normalises, as for every
feature (encoders/base.py).

The random draws come from a CPU generator state of their own, seeded per ``(seed, epoch)``
(:func:`epoch_seed`), so a run is reproducible and nothing else that draws from torch's global
RNG (another probe, the encoder) changes the views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch

from pytest_visprobe.features import autocast_for, encode_batch, prefetched_rows, to_uint8_images
from pytest_visprobe.kernels.transfer import check_labels, shuffled_batches, train_adam_head

if TYPE_CHECKING:
    from pytest_visprobe.encoders.base import Encoder
    from pytest_visprobe.kernels.linear import LinearHead

STUDY_RESIZE = 276
STUDY_CROP = 256
STUDY_AUGMENTATION = (f"Resize({STUDY_RESIZE}), RandomResizedCrop({STUDY_CROP}, bicubic), RandomHorizontalFlip; "
                      "new views through the frozen encoder every epoch")


def study_augmentation(resize: int = STUDY_RESIZE, crop: int = STUDY_CROP) -> Any:
    """The study's training transform as torchvision v2 (one image ``[3, H, W]`` at a time)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(resize, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomResizedCrop(crop, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
    ])


def epoch_seed(seed: int, epoch: int) -> int:
    """The ``torch.manual_seed`` of one epoch's augmentation draws."""
    return int(np.random.SeedSequence([int(seed), int(epoch), 0xA06]).generate_state(1)[0])


def augmented_views(images: torch.Tensor, transform: Any, rng_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``transform`` applied to each image of uint8 ``[B, 3, H, W]`` in order, its random draws
    from ``rng_state`` (a CPU generator state); the float views in [0, 1] and the state after."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(rng_state)
        views = torch.stack([transform(image) for image in images])
        rng_state = torch.get_rng_state()
    return views.float().div_(255.0), rng_state


def augmented_epoch(
    encoder: "Encoder", images: Any, batches: Sequence[Any], *, seed: int, epoch: int,
    device: torch.device | str = "cpu", transform: Any = None, where: str = "dataset",
) -> Iterator[torch.Tensor]:
    """Float32 CPU embeddings ``[len(rows), D]`` of fresh views of each row batch, in order."""
    device = torch.device(device)
    transform = study_augmentation() if transform is None else transform
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(epoch_seed(seed, epoch))
        state = torch.get_rng_state()
    encoder.to(device).eval()
    for raw in prefetched_rows(images, list(batches)):
        views, state = augmented_views(to_uint8_images(raw, device), transform, state)
        with torch.no_grad(), autocast_for(device):
            out = encode_batch(encoder.embed, views, "embed", encoder.name, where,
                               f"train (augmented, epoch {epoch})")
        yield out.float().cpu()


def fit_adam_probe_augmented(
    encoder: "Encoder", images: Any, labels: Any, *, n_classes: int, lr: float = 1e-3,
    weight_decay: float = 5e-4, epochs: int = 20, batch_size: int = 60, seed: int = 0,
    device: torch.device | str = "cpu", transform: Any = None, where: str = "dataset",
    tick: Callable[[], Any] | None = None,
) -> "LinearHead":
    """The study's Adam head (kernels/transfer.py) trained on augmented views of ``images``.

    Batch order is the cached path's (one seeded permutation per epoch), so only the features
    differ between the two. ``tick()`` is called after each batch (a progress display)."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    check_labels(y, len(images), n_classes)
    next_epoch = shuffled_batches(len(images), batch_size, seed)

    def batches(epoch: int):
        rows = [r.numpy() for r in next_epoch()]
        features = augmented_epoch(encoder, images, rows, seed=seed, epoch=epoch, device=device,
                                   transform=transform, where=where)
        for x, r in zip(features, rows):
            yield x, y[torch.from_numpy(r)]
            if tick is not None:
                tick()

    return train_adam_head(batches, n_classes=n_classes, lr=lr, weight_decay=weight_decay, epochs=epochs, seed=seed)
