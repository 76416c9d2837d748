"""Preflight checks: is the encoder fit to be probed at all? Each raises PreflightError naming the cause.

Every check takes the encoder and a batch of real images (float RGB in [0, 1], ``N×3×H×W`` at
the encoder's input size) and runs the encoder as the probes will: as it is, without gradients.
Two embeddings "agree" when ``max|a − b| <= AGREE · rms(a)`` (1 %): above the rounding that differs
between batch sizes (~1e-6 in float32; up to ~1e-3 with TF32 convolutions on GPU), far below what
batch statistics or dropout change (~1 × rms in the tests).

What the normalisation check can and cannot tell: it hooks the first layer that sees a 3-channel
image of the input size (the first conv / patch embedding) and fits, per channel, the affine map
from the raw pixels to what that layer sees. That map is compared with known normalisations
(ImageNet, OpenAI CLIP, Inception 0.5/0.5, and the encoder's own declared mean/std) applied once,
twice, or with constants meant for [0, 255] pixels. Reliable: double normalisation and [0, 255]
constants with any of those constants; "declared but not applied". Not detectable: normalisation
with unknown constants applied twice, normalisation folded into the first layer's weights, and
preprocessing that is not a per-pixel affine map before the first layer (then it says it cannot tell).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from pytest_visprobe.errors import PreflightError

if TYPE_CHECKING:
    from pytest_visprobe.encoders.base import Encoder

AGREE = 1e-2

#: name -> (mean, std) of well-known input normalisations
KNOWN_NORMALISATIONS = {
    "ImageNet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "OpenAI CLIP": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "Inception (0.5, 0.5)": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class PreflightWarning(UserWarning):
    """A preflight check fixed something (e.g. put the encoder in eval mode)."""


def _embed(encoder: "Encoder", images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = encoder.embed(images)
    if not isinstance(out, torch.Tensor):
        raise PreflightError(f"embed() returned {type(out).__name__}, not a Tensor [N, D].")
    return out.float()


def _disagreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| relative to the rms of a (0 when both are all zero), over entries finite in both:
    NaN and inf are the finite-output check's to report, not this one's."""
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not bool(finite.any()):
        return 0.0
    a, b = a[finite], b[finite]
    scale = a.pow(2).mean().sqrt().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _training_modules(encoder: nn.Module) -> list[str]:
    return [name or type(module).__name__ for name, module in encoder.named_modules() if module.training]


def _batch_statistics_modules(encoder: nn.Module) -> list[str]:
    """BatchNorm layers that normalise with the batch's statistics as things stand."""
    found = []
    for name, module in encoder.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or module.running_mean is None):
            why = "in training mode" if module.training else "track_running_stats=False"
            found.append(f"{name} ({type(module).__name__}, {why})")
    return found


# --------------------------------------------------------------------------- checks


def check_eval_mode(encoder: "Encoder", images: torch.Tensor) -> None:
    """In eval mode — or put there with a warning; a module that refuses ``.eval()`` fails."""
    training = _training_modules(encoder)
    if training:
        warnings.warn(f"visprobe preflight: {encoder.name!r} had modules in training mode "
                      f"({', '.join(training[:5])}); put it in eval mode.", PreflightWarning, stacklevel=2)
        encoder.eval()
    still = _training_modules(encoder)
    if still:
        raise PreflightError(
            f"modules stay in training mode after .eval(): {', '.join(still[:5])}. Dropout and BatchNorm "
            f"then act as in training. Does the encoder override train()? Let .eval() reach every module."
        )


def check_deterministic(encoder: "Encoder", images: torch.Tensor) -> None:
    """Two forward passes of the same batch agree (no dropout or other randomness left on)."""
    first, second = _embed(encoder, images), _embed(encoder, images)
    gap = _disagreement(first, second)
    if gap > AGREE:
        suspects = [n for n, m in encoder.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]
        hint = f" Modules in training mode: {', '.join(suspects)}." if suspects else ""
        raise PreflightError(
            f"two forward passes of the same batch differ (max difference {gap:.3g} × the embedding's rms): "
            f"dropout or other randomness is left on at inference (e.g. F.dropout(..., training=True), "
            f"stochastic depth, noise or random augmentation inside embed()).{hint} Make embed() "
            f"deterministic in eval mode."
        )


def check_batch_independent(encoder: "Encoder", images: torch.Tensor) -> None:
    """Each image's embedding depends on neither the batch size nor the other images in the batch."""
    n = images.shape[0]
    together = _embed(encoder, images)
    alone = torch.cat([_embed(encoder, images[i:i + 1]) for i in range(n)])
    # the same batch size, with the second half replaced by other images (the colour negatives)
    half = n // 2
    other_company = _embed(encoder, torch.cat([images[:half], 1 - images[half:]]))
    by_size = _disagreement(together, alone)
    by_company = _disagreement(together[:half], other_company[:half])
    if max(by_size, by_company) > AGREE:
        what = []
        if by_size > AGREE:
            what.append(f"batch size (alone vs in a batch of {n}: {by_size:.3g} × rms)")
        if by_company > AGREE:
            what.append(f"the other images in the batch ({by_company:.3g} × rms)")
        suspects = _batch_statistics_modules(encoder)
        cause = (f"BatchNorm using batch statistics: {', '.join(suspects[:5])}" if suspects else
                 "an operation that mixes samples across the batch (batch statistics, attention or "
                 "pooling over the batch dimension)")
        raise PreflightError(
            f"embeddings depend on {' and on '.join(what)}. Cause: {cause}. Features would change with "
            f"--visprobe-batch-size and with the dataset's order; put BatchNorm in eval mode with "
            f"running statistics, and keep samples independent in embed()."
        )


def check_output_contract(encoder: "Encoder", images: torch.Tensor) -> None:
    """Finite outputs of the declared shape: embed → [N, D] (D = embed_dim/num_features when declared),
    feature_map → [N, C, h, w] when the encoder has one."""
    n = images.shape[0]
    out = _embed(encoder, images)
    if out.ndim != 2 or out.shape[0] != n:
        raise PreflightError(f"embed() returned shape {tuple(out.shape)} for {n} images; expected [N, D] "
                             f"with N = {n}. Pool or flatten inside embed().")
    declared = _declared_dim(encoder)
    if declared is not None and out.shape[1] != declared[1]:
        raise PreflightError(f"embed() returned {out.shape[1]} features per image, but {declared[0]} declares "
                             f"{declared[1]}. Return the declared embedding (pooled pre-logits), or fix the declaration.")
    _finite(out, "embed()")
    if encoder.has_feature_map:
        with torch.no_grad():
            fmap = encoder.feature_map(images)
        if not isinstance(fmap, torch.Tensor) or fmap.ndim != 4 or fmap.shape[0] != n:
            shape = tuple(fmap.shape) if isinstance(fmap, torch.Tensor) else type(fmap).__name__
            raise PreflightError(f"feature_map() returned {shape} for {n} images; expected [N, C, h, w].")
        _finite(fmap.float(), "feature_map()")


def _declared_dim(encoder: nn.Module) -> tuple[str, int] | None:
    for owner, label in ((encoder, "the encoder"), (getattr(encoder, "module", None), "the wrapped module")):
        for attribute in ("embed_dim", "num_features"):
            value = getattr(owner, attribute, None) if owner is not None else None
            if isinstance(value, int) and not isinstance(value, bool):
                return f"{label}'s {attribute}", value
    return None


def _finite(out: torch.Tensor, where: str) -> None:
    bad = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        raise PreflightError(
            f"{where} returned NaN or inf for {int(bad.sum())} of {out.shape[0]} images. Check the weights "
            f"(a diverged checkpoint?) and the normalisation; inputs are float RGB in [0, 1]."
        )


def check_not_constant(encoder: "Encoder", images: torch.Tensor) -> None:
    """Different images give different embeddings."""
    out = _embed(encoder, images)
    spread = (out - out.mean(dim=0)).norm(dim=1).max().item()
    size = out.norm(dim=1).mean().item()
    if spread <= 1e-6 * max(size, 1e-12):
        raise PreflightError(
            f"embed() returns the same vector (norm {size:.3g}) for {out.shape[0]} different images: the "
            f"encoder ignores its input. Look for weights that did not load (all zero), a dead head, or a "
            f"normalisation that squeezes [0, 1] inputs to a constant."
        )


def check_normalised_once(encoder: "Encoder", images: torch.Tensor) -> str:
    """The encoder's normalisation reaches its first layer exactly once (see the module docstring).

    Returns what it found when that is not an error (including "cannot tell").
    """
    seen = _first_layer_input(encoder, images)
    if seen is None:
        return ("cannot tell: no layer saw a 3-channel image of the input size (preprocessing before the "
                "first layer changes the size)")
    name, layer_input = seen
    fit = _per_channel_affine(images, layer_input)
    if fit is None:
        return f"cannot tell: {name} does not see a per-channel affine map of the pixels"
    slope, offset = fit
    catalogue = dict(KNOWN_NORMALISATIONS)
    declared = _declared_normalisation(encoder)
    if declared is not None and not _is_identity(*declared):
        catalogue["the encoder's declared mean/std"] = declared
    for label, (mean, std) in catalogue.items():
        if _matches(slope, offset, [1 / s**2 for s in std], [-m * (1 + s) / s**2 for m, s in zip(mean, std)]):
            raise PreflightError(
                f"the input is normalised twice with {label} constants: {name} sees ((x − mean)/std − mean)/std "
                f"(per-channel scale {_fmt(slope)}, offset {_fmt(offset)}). The model normalises inside and its "
                f"config (mean/std, e.g. pretrained_cfg) normalises again; remove one of the two."
            )
        if _matches(slope, offset, [1 / (255 * s) for s in std], [-m / s for m, s in zip(mean, std)]):
            raise PreflightError(
                f"the encoder normalises with {label} constants for pixel values in [0, 255] (mean/std × 255), "
                f"but inputs are in [0, 1], so {name} sees a nearly constant image (scale {_fmt(slope)}). "
                f"Use mean/std for [0, 1] inputs."
            )
    if declared is not None and not _is_identity(*declared) and _matches(slope, offset, [1.0] * 3, [0.0] * 3):
        raise PreflightError(
            f"the encoder declares mean/std normalisation but {name} sees the raw [0, 1] pixels: it is "
            f"never applied. Apply it in embed() (pytest_visprobe.ModuleEncoder does)."
        )
    for label, (mean, std) in catalogue.items():
        if _matches(slope, offset, [1 / s for s in std], [-m / s for m, s in zip(mean, std)]):
            return f"normalised once with {label} constants before {name}"
    if _matches(slope, offset, [1.0] * 3, [0.0] * 3):
        return f"{name} sees the raw [0, 1] pixels (fine if the model was trained on them)"
    return (f"cannot tell: {name} sees pixels × {_fmt(slope)} + {_fmt(offset)}, which matches no known "
            f"normalisation")


def _first_layer_input(encoder: nn.Module, images: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    found: list[tuple[str, torch.Tensor]] = []
    shape = (3, *images.shape[-2:])

    def hook(name):
        def capture(module, args):
            if not found and args and isinstance(args[0], torch.Tensor) and tuple(args[0].shape[1:]) == shape:
                found.append((name, args[0].detach().float().clone()))
        return capture

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in encoder.named_modules()
               if n and any(True for _ in m.parameters(recurse=False))]
    try:
        _embed(encoder, images)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def _per_channel_affine(x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]] | None:
    """Least-squares ``y_c ≈ a_c · x_c + b_c`` per channel; None when it does not fit (R² < 0.999)."""
    slopes, offsets = [], []
    for c in range(3):
        xc, yc = x[:, c].reshape(-1).double(), y[:, c].reshape(-1).double()
        if xc.var() < 1e-8:
            return None
        a = ((xc - xc.mean()) * (yc - yc.mean())).mean() / xc.var(unbiased=False)
        b = yc.mean() - a * xc.mean()
        residual = (yc - (a * xc + b)).pow(2).mean()
        if residual > 1e-3 * yc.var(unbiased=False) + 1e-12:
            return None
        slopes.append(float(a))
        offsets.append(float(b))
    return slopes, offsets


def _matches(slope: list[float], offset: list[float], want_slope: list[float], want_offset: list[float]) -> bool:
    return all(abs(a - wa) <= 0.01 * abs(wa) and abs(b - wb) <= 0.01 * (1 + abs(wb))
               for a, b, wa, wb in zip(slope, offset, want_slope, want_offset))


def _declared_normalisation(encoder: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    config = encoder.config() if callable(getattr(encoder, "config", None)) else {}
    mean, std = config.get("mean"), config.get("std")
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _is_identity(mean, std) -> bool:
    return all(m == 0 for m in mean) and all(s == 1 for s in std)


def _fmt(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
