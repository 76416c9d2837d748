"""An offline example encoder that trains itself: tiny_cnn.py's network, taught to see shapes.

Put it beside the random one to see what the probes are for — the same architecture, once with
seeded random weights and once trained:

    pytest --encoder=examples/tiny_cnn.py --encoder=examples/trained_cnn.py suites/

Training happens on the first run only (about 25 s of one CPU core, measured; later runs load
the weights from the visprobe cache dir in under a second). It is supervised, on freshly
generated ``shapes`` scenes: each of 600 Adam steps (fixed seed) draws 32 new scenes with the
shapes generator and classifies a 32-pixel window centred on each scene's main object, the
target being the scene's label. The scenes come from a random stream of their own,
``rng_for(seed, "examples", "trained_cnn", "train")``, not the ``("shapes", "train")`` and
``("shapes", "test")`` streams the probes' splits are drawn from: the encoder never sees a
probe's train or test image. Why windows rather than whole scenes: whole scenes are the same
task but cost four times the compute per label and did not get past chance within this budget.

The weights are cached as safetensors under ``default_cache_dir() / "examples"``, named by a hash
of the training config and of the code below that determines them, written atomically under a
file lock (so ``pytest -n 2`` trains once); an unreadable file is retrained with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pytest_visprobe import Encoder


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (with the code: both key the cache file)."""

    steps: int = 600  # Adam steps
    scenes_per_step: int = 32  # fresh scenes per step, one training window each
    image_size: int = 64  # side of the generated scenes (the quick profile's shapes size)
    crop_size: int = 32  # side of the window around the main object (holds the largest)
    width: int = 64  # channels of the first two convolutions, as in tiny_cnn.py
    lr: float = 1e-3
    seed: int = 0


class TrainedCNN(Encoder):
    """tiny_cnn.py's architecture with a BatchNorm after each convolution (it makes training fit
    the budget; in eval mode it is a fixed per-channel affine map and adds no capacity)."""

    input_size = (64, 64)

    def __init__(self, width: int = 64, input_size: tuple[int, int] = (64, 64)) -> None:
        super().__init__()
        self.input_size = tuple(input_size)

        def block(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
            conv = nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2, bias=False)
            return [conv, nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(*block(3, width, 5), *block(width, width, 3), *block(width, 2 * width, 3))
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)

    def config(self) -> dict:
        return {"input_size": self.input_size}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The network on images already at the size it should see them (training crops)."""
        return self.body((images - self.mean) / self.std)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(images, size=self.input_size, mode="bilinear", antialias=True)
        return self.features(images)

    @staticmethod
    def pool(fmap: torch.Tensor) -> torch.Tensor:
        return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(images))


@dataclasses.dataclass
class TrainResult:
    encoder: TrainedCNN
    losses: list[float]  # training loss per step


def train(config: TrainConfig) -> TrainResult:
    """Train a TrainedCNN from scratch. One thread: float sums depend on how work is split
    between threads, so this way the same config gives the same weights whatever the thread
    count (on one kind of CPU), and the cost is small: half the time goes to drawing scenes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(config)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig) -> TrainResult:
    """The training loop proper (its source, not train()'s, is hashed into the cache key)."""
    from pytest_visprobe.datasets.base import rng_for
    from pytest_visprobe.datasets.shapes import CLASS_NAMES, generate_split

    rng = rng_for(config.seed, "examples", "trained_cnn", "train")
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        encoder = TrainedCNN(config.width, (config.image_size, config.image_size))
        head = nn.Linear(4 * config.width, len(CLASS_NAMES))
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    encoder.train()
    losses = []
    for _ in range(config.steps):
        scenes = generate_split(rng, config.scenes_per_step, config.image_size)
        crops, labels = main_object_crops(scenes, config.crop_size)
        loss = F.cross_entropy(head(encoder.pool(encoder.features(crops))), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return TrainResult(encoder.eval(), losses)


def main_object_crops(split, crop_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``crop_size`` window centred on each scene's main object (shifted to stay inside the
    image), as float ``[N, 3, crop, crop]`` in [0, 1], with the scenes' labels ``[N]``.

    The main object is the last box (drawn last, never occluded). Distractors make worse
    examples: partly hidden, and their windows are often filled by the main object.
    """
    images = split.images.array
    side = images.shape[1]
    crops = np.empty((len(images), crop_size, crop_size, 3), dtype=np.uint8)
    for i, (image, boxes) in enumerate(zip(images, split.boxes)):
        x1, y1, x2, y2 = boxes[-1]
        x0 = int(np.clip(round((x1 + x2) / 2) - crop_size // 2, 0, side - crop_size))
        y0 = int(np.clip(round((y1 + y2) / 2) - crop_size // 2, 0, side - crop_size))
        crops[i] = image[y0:y0 + crop_size, x0:x0 + crop_size]
    pixels = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
    return pixels, torch.from_numpy(split.labels)


#: The code that turns a config into weights: its source is part of the cache file's name.
TRAINING_CODE = (TrainedCNN, _train, main_object_crops)


def training_key(config: TrainConfig) -> str:
    """Hash of the config, the code that turns it into weights, and the scene generator's version."""
    from pytest_visprobe.datasets import shapes

    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(dataclasses.asdict(config)).encode())
    digest.update(str(shapes.GENERATOR_VERSION).encode())
    for code in TRAINING_CODE:
        digest.update(inspect.getsource(code).encode())
    return digest.hexdigest()


def cache_path(config: TrainConfig, cache_dir: Path | None = None) -> Path:
    from pytest_visprobe.runner.options import default_cache_dir

    directory = (default_cache_dir() if cache_dir is None else Path(cache_dir)) / "examples"
    return directory / f"trained_cnn-{training_key(config)}.safetensors"


def load_or_train(config: TrainConfig = TrainConfig(), cache_dir: Path | None = None) -> TrainedCNN:
    """The trained encoder: from the cache file when it is there and readable, else trained now
    and cached. A lock makes concurrent processes (pytest-xdist workers) train only once."""
    from filelock import FileLock

    path = cache_path(config, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            encoder = _read(path, config)
            if encoder is not None:
                return encoder
        _say(f"visprobe: training examples/trained_cnn.py once (about half a minute on a CPU); "
             f"the weights are then cached in {path}")
        encoder = train(config).encoder
        _write(path, encoder, config)
    return encoder


def _say(message: str) -> None:
    """A line on the real terminal (pytest captures sys.stderr while collecting fixtures)."""
    import sys

    stream = sys.__stderr__
    if stream is not None:
        print(message, file=stream, flush=True)


def _read(path: Path, config: TrainConfig) -> TrainedCNN | None:
    from safetensors.torch import load_file

    from pytest_visprobe.errors import CacheCorruptWarning

    try:
        state = load_file(str(path))
        encoder = TrainedCNN(config.width, (config.image_size, config.image_size))
        encoder.load_state_dict(state, strict=True)
        if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
            raise ValueError("non-finite weights")
    except Exception as exc:  # any unreadable file is retrained, never fatal
        warnings.warn(
            f"trained_cnn: cached weights {path} are unreadable ({type(exc).__name__}: {exc}); "
            f"training again (about half a minute) and replacing the file.",
            CacheCorruptWarning,
            stacklevel=3,
        )
        return None
    return encoder.eval()


def _write(path: Path, encoder: TrainedCNN, config: TrainConfig) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        state = {k: v.detach().contiguous() for k, v in encoder.state_dict().items()}
        save_file(state, tmp, metadata={"config": repr(dataclasses.asdict(config))})
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs a retrain next time, nothing else
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        warnings.warn(f"trained_cnn: could not cache the weights at {path}: {exc}", stacklevel=3)


def create_encoder() -> TrainedCNN:
    return load_or_train(TrainConfig())
