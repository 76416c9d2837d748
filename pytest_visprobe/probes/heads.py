"""Settings of the trainable heads that several probes share (linear and MLP classifiers), and
the details fields every trained head reports about its fit.

Each probe names the head settings it uses inside its own settings model, so two probes share a
fitted head only when their head settings are equal.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LinearProbeConfig(BaseModel):
    """Multinomial logistic regression on cached features (PROTOCOLS.md A, our default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_decays: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # swept on a held-out part of train
    val_fraction: float = Field(0.2, gt=0, lt=1)  # share of train held out for the sweep
    max_iter: int = Field(200, gt=0)  # L-BFGS iterations per fit
    # The study's transfer recipe (PROTOCOLS.md A), used by the label probe when recipe="adam":
    # Linear(D, classes) on the raw features, cross-entropy, Adam, last-epoch test accuracy.
    recipe: Literal["lbfgs", "adam"] = "lbfgs"  # "lbfgs": the sweep above; "adam": the study's loop
    adam_lr: float = Field(1e-3, gt=0)
    adam_weight_decay: float = Field(5e-4, ge=0)  # torch.optim.Adam's L2 term (weights and bias)
    adam_epochs: int = Field(20, gt=0)
    adam_batch_size: int = Field(60, gt=0)
    #: the study's training augmentation (augmented.py: Resize(276), RandomResizedCrop(256,
    #: bicubic), flip), new forward passes every epoch, for heads trained on a dataset's whole
    #: images (label_probe, the RPGD head); open_clip encoders keep cached features, as the study
    #: trained CLIP. Needs recipe="adam". False: cached features of the un-augmented images.
    augment: bool = False

    @model_validator(mode="after")
    def _augment_needs_adam(self) -> "LinearProbeConfig":
        if self.augment and self.recipe != "adam":
            raise ValueError('augment = true trains on new views every epoch, which only the "adam" recipe '
                             'does; set recipe = "adam" or augment = false')
        return self


class MLPProbeConfig(BaseModel):
    """A one-hidden-layer MLP probe on cached features (Adam, seeded). The L2 penalty is
    ``weight_decay / 2 · ‖W‖²`` on the weights (not biases), scikit-learn's
    ``MLPClassifier(alpha=weight_decay · batch_size)``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: int = Field(256, gt=0)  # hidden units (ReLU)
    epochs: int = Field(60, gt=0)  # passes over the training features
    batch_size: int = Field(128, gt=0)
    lr: float = Field(1e-3, gt=0)  # Adam learning rate
    weight_decay: float = Field(1e-4, ge=0)


class LocalizationConfig(BaseModel):
    """Dense probes on cached feature maps (PROTOCOLS.md B): linear 1×1 conv heads, AdamW."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(30, gt=0)  # passes over the cached train maps, per head
    batch_size: int = Field(64, gt=0)  # images per AdamW step
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    train_mask_size: int = Field(32, gt=0)  # segmentation loss at most this side; scored at full size
    max_detections: int = Field(20, gt=0)  # boxes kept per image (top heat-map peaks)


class HeadFitDetails(BaseModel):
    """What a trained head reports about its own training data (kernels/headfit.py), next to the
    test metric: a details model of a probe with a trained head derives from this one."""

    model_config = ConfigDict(extra="forbid")

    train_loss: float | None = None  # the data term of the minimised loss on all of train (no decay term)
    train_score: float | None = None  # this metric on the train split, same head
    train_chance: float | None = None  # this metric of the best constant guess on the train split
    train_constant_loss: float | None = None  # the best constant head's loss (heads without a train score)
    train_fit_on: str | None = None  # what the train_* numbers were measured on, when not all of train
