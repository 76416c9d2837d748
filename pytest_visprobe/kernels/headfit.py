"""How well a fitted head fits its own training data: is the head underfit, or the representation weak?

Every trained head (linear, MLP, 1×1-conv) reports a :class:`HeadFit`, measured once at the end
of fitting on the full train split from what the fit already holds (cached features or maps,
never a new pass through the encoder):

* ``loss``: the data term of the objective the head minimised, averaged as the objective
  averages it; the weight-decay term is left out, so the number is comparable across the
  swept decays and equals scikit-learn's ``log_loss`` for a classifier (the decay itself is
  in the details where the probe has one);
* ``score``: the probe's own metric (top-1, mAP, mIoU) on the train split;
* ``chance``: that metric of the best constant guess on the train split, by the probe's rule;
* ``constant_loss``: the lowest loss of a head that ignores its input, for heads without a
  train score (detection).

The one exception: a head trained on augmented views streamed through the encoder
(augmented.py) has no cached train features, so its numbers are the last epoch's running
means over its mini-batches (``on`` says so).

A head with weak decay on weak features memorises (train ≫ test): the representation is weak.
A head whose train score stays near chance did not fit (held back, or the features separate
nothing even on train), which report/markdown.py flags. Segmentation's numbers are at the
training mask size (``train_mask_size``), the resolution its loss is taken at.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class HeadFit:
    """A head's fit to its own train split, at the end of fitting (the fields above)."""

    loss: float
    score: float | None = None
    chance: float | None = None
    constant_loss: float | None = None  # best constant head's loss (heads without a score)
    on: str | None = None  # what the numbers were measured on, when not all of train after fitting

    def details(self) -> dict[str, float | str]:
        """The details fields (``train_*``) of the probes' models, None left out."""
        values = {"train_loss": self.loss, "train_score": self.score, "train_chance": self.chance,
                  "train_constant_loss": self.constant_loss}
        out: dict[str, float | str] = {k: float(v) for k, v in values.items() if v is not None}
        if self.on is not None:
            out["train_fit_on"] = self.on
        return out


def data_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool = False) -> float:
    """The data term of kernels/linear.py's objective: mean cross-entropy, or for multi-label
    targets the binary cross-entropy summed over known entries (NaN: unknown) per row, averaged."""
    with torch.no_grad():
        if not multilabel:
            return float(F.cross_entropy(logits.float(), targets.long()))
        y = targets.float()
        known = ~torch.isnan(y)
        total = F.binary_cross_entropy_with_logits(logits.float(), torch.where(known, y, torch.zeros_like(y)),
                                                   weight=known.float(), reduction="sum")
        return float(total / logits.shape[0])


def classifier_fit(logits: torch.Tensor, labels: torch.Tensor) -> HeadFit:
    """Cross-entropy and top-1 of train logits, chance the majority share of the train labels."""
    from pytest_visprobe.kernels.chance import majority_share

    labels = labels.long()
    top1 = float((logits.argmax(dim=1) == labels).float().mean())
    return HeadFit(loss=data_loss(logits, labels), score=top1, chance=majority_share(labels.numpy()))
