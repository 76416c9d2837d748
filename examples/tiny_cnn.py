"""An offline example encoder: a small convolutional network with fixed, seeded random weights.

Random convolutional features are a classic baseline: a linear probe on them already beats
chance by far on simple data, so this file shows the whole pipeline without any download.

    pytest --encoder=examples/tiny_cnn.py suites/
"""

import torch
from torch import nn

from pytest_visprobe import Encoder


class TinyCNN(Encoder):
    input_size = (64, 64)

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        )
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        images = nn.functional.interpolate(images, size=self.input_size, mode="bilinear", antialias=True)
        return self.body((images - self.mean) / self.std)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        fmap = self.feature_map(images)
        return torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)


def create_encoder() -> TinyCNN:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return TinyCNN()
