"""RPGD attack kernel: attack success of random-start PGD (foolbox 3) against ε.

Protocol (PROTOCOLS.md §A, Robustness): foolbox 3 ``LinfPGD`` / ``L2PGD`` with random start,
bounds (0, 1), cross-entropy loss, step = ``rel_stepsize · ε``, untargeted
(``Misclassification``) or targeted (``TargetedMisclassification``, target = ``(label + shift)
mod K``, the study's shift 800 for ImageNet's 1,000 classes, :func:`default_target_shift`).
The success rate at ε is the fraction of **all** images whose ε-clipped adversarial meets the
criterion, as the study divides by all 1,000 images: an image the clean model already gets
wrong is an untargeted success at every ε (it is not attacked), so untargeted success at ε = 0
is the clean error rate; for a targeted attack every image is attacked, and at ε = 0 success is
the share whose clean prediction is already the target. The rate over the clean-correct images
only (the previous definition) is kept as ``success_rate_clean_correct``. Lower success means
a more robust encoder.

Speed: foolbox's ``FixedEpsilonAttack.__call__`` runs one attack per ε on a batch of images.
Here every (image, ε) pair is one sample and a batch mixes ε values, so a batch is always full
whatever the number of attacked images per ε (``benchmarks/bench_attack.py`` measures the gain).
foolbox's PGD accepts only a scalar ε, so :func:`_pgd` replays foolbox's
``BaseGradientDescent.run`` step for step — foolbox's loss, gradient, gradient normalisation,
optimizer and random-start sampler — with ε, step size, projection and final clipping taken
per sample. At a single ε it reproduces ``LinfPGD``/``L2PGD`` from the same seed (tested).
The model's parameters are frozen during the attack: foolbox calls ``loss.backward()``, which
would otherwise also compute (and accumulate) every weight gradient, about 1.5× the work.

torch, eagerpy and foolbox are imported inside the functions so the plugin loads without them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from pytest_visprobe.errors import EncoderOutputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

NORMS = ("linf", "l2")

_FIX = (
    "embed() must be differentiable with respect to its input; remove .detach()/no_grad/numpy "
    "from embed (and any rounding or argmax on the input path)."
)


class NonDifferentiableEncoderError(EncoderOutputError):
    """The attacked model gives no usable input gradient, so PGD would report 0 % success."""


@dataclass(frozen=True)
class AttackResult:
    """Attack success per ε for one norm and criterion.

    ``success_rate[k]`` and ``n_success[k]`` count over all ``n_images`` (a clean mistake is an
    untargeted success at every ε; targeted, every image is attacked); ``success_rate_clean_correct``
    over the ``n_correct`` images the clean model gets right (``None`` when there are none);
    ``robust_accuracy[k]`` over all ``n_images`` (still classified as the true label after the
    attack at ε). ``success_rate`` and ``auc``: lower is more robust; ``robust_accuracy``:
    higher is more robust.

    ``auc`` is the trapezoid area under success rate plotted against the *position* of ε in
    ``epsilons`` (points equally spaced, x from 0 to 1), i.e.
    ``sum_k (s_k + s_{k+1}) / 2 / (K - 1)``; with one ε it is that ε's success rate. The ε
    lists of the protocol are roughly log-spaced and plotted on a log axis, so equal weight per
    listed ε lets every scale count. Integrating over ε / max ε instead would give the top
    interval (0.5 → 1.0 in the Linf list, where every undefended model is at 100 %) half the
    area and leave nearly nothing to tell encoders apart. The number is in [0, 1] and
    comparable between runs with the same ``epsilons`` (compare them before comparing ``auc``).
    """

    norm: str
    targeted: bool
    epsilons: tuple[float, ...]
    steps: int
    rel_stepsize: float
    seed: int
    target_shift: int | None  # target = (label + target_shift) mod n_classes; None when untargeted
    n_images: int
    n_correct: int
    clean_accuracy: float
    n_success: tuple[int, ...]
    success_rate: tuple[float, ...]
    robust_accuracy: tuple[float, ...]
    auc: float
    success_rate_clean_correct: tuple[float, ...] | None = None
    #: indices (into the images given) of the images PGD ran on: all of them when targeted, the
    #: clean-correct ones when untargeted (the others are successes without an attack)
    attacked: tuple[int, ...] = ()
    #: per-image outcomes (for bootstrap intervals), one row per image given:
    #: ``success_by_image[i][k]`` and ``robust_by_image[i][k]`` (a misclassified image is never robust)
    success_by_image: tuple[tuple[bool, ...], ...] = ()
    robust_by_image: tuple[tuple[bool, ...], ...] = ()


def default_target_shift(n_classes: int) -> int:
    """The targeted attack's label shift: the study's 800 for 1,000 classes, ``round(0.8·K)`` in
    general, kept in ``1 … K − 1`` (so 1 for two classes) so no target is the true label."""
    return min(max(int(round(0.8 * int(n_classes))), 1), int(n_classes) - 1)


def attack_success(
    model: "torch.nn.Module",
    images: Any,
    labels: Any,
    *,
    norm: str,
    epsilons: Sequence[float],
    steps: int,
    rel_stepsize: float,
    targeted: bool,
    n_classes: int,
    target_shift: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> AttackResult:
    """Run random-start PGD at every ε and return success rates over all images.

    ``model`` maps float images in [0, 1] ``[N, 3, H, W]`` to logits ``[N, n_classes]`` (encoder
    with its own preprocessing, then a classifier). ``images`` may live on any device; batches
    are moved to the model's device. ``batch_size`` counts (image, ε) pairs per forward pass,
    so peak memory is that of one PGD step on ``batch_size`` images. ``target_shift`` (targeted
    only) defaults to :func:`default_target_shift`. The same inputs, seed and ``batch_size`` give
    the same result on the same device (random starts are drawn batch by batch from one stream
    seeded with ``seed``; CUDA kernels that are themselves non-deterministic can still flip a
    gradient sign); the global torch RNG is left untouched.

    Raises :class:`NonDifferentiableEncoderError` before attacking when the input gradient is
    missing, zero everywhere or not finite, and ``ValueError`` for bad arguments.
    """
    import torch

    eps = _check_epsilons(epsilons)
    _check_args(norm, steps, rel_stepsize, n_classes, batch_size)
    x_all, y_all = _as_tensors(images, labels, n_classes)
    shift = _target_shift(targeted, target_shift, n_classes)
    device = _model_device(model, x_all)

    with _attack_mode(model), torch.inference_mode(False), torch.enable_grad():
        pred = _predict(model, x_all, n_classes, batch_size, device)
        correct = pred == y_all
        n_images, n_correct = int(y_all.numel()), int(correct.sum())
        # untargeted, a clean mistake is already a success at every ε (not attacked); targeted,
        # every image must reach its target
        idx = torch.arange(n_images) if shift is not None else torch.nonzero(correct.cpu()).flatten()
        # ε = 0: the clipped adversarial is the clean image (foolbox's PGD does not move)
        clean_hit = (pred == (y_all + shift) % n_classes) if shift is not None else ~correct
        hits = clean_hit.cpu().unsqueeze(0).repeat(len(eps), 1)
        robust = correct.cpu().unsqueeze(0).repeat(len(eps), 1)
        live = [k for k, e in enumerate(eps) if e > 0.0]
        if live and idx.numel():
            _check_differentiable(model, x_all[idx[:8].to(x_all.device)].to(device))
            hit_pairs, robust_pairs = _attack_pairs(
                model, x_all, y_all, idx.to(x_all.device), [eps[k] for k in live],
                norm=norm, steps=steps, rel_stepsize=rel_stepsize, shift=shift,
                n_classes=n_classes, seed=seed, batch_size=batch_size, device=device,
            )
            for j, k in enumerate(live):
                hits[k, idx], robust[k, idx] = hit_pairs[j], robust_pairs[j]

    n_success = tuple(int(v) for v in hits.sum(dim=1))
    success_rate = tuple(s / n_images for s in n_success)
    correct_cpu = correct.cpu()
    clean_correct = (tuple(float(v) / n_correct for v in hits[:, correct_cpu].sum(dim=1))
                     if n_correct else None)
    return AttackResult(
        norm=norm,
        targeted=bool(targeted),
        epsilons=tuple(eps),
        steps=int(steps),
        rel_stepsize=float(rel_stepsize),
        seed=int(seed),
        target_shift=shift,
        n_images=n_images,
        n_correct=n_correct,
        clean_accuracy=n_correct / n_images,
        n_success=n_success,
        success_rate=success_rate,
        robust_accuracy=tuple(int(r) / n_images for r in robust.sum(dim=1)),
        auc=success_auc(success_rate),
        success_rate_clean_correct=clean_correct,
        attacked=tuple(idx.tolist()),
        success_by_image=tuple(map(tuple, hits.T.tolist())),
        robust_by_image=tuple(map(tuple, robust.T.tolist())),
    )


def success_auc(success_rate: Sequence[float]) -> float:
    """Trapezoid area under success rate vs ε position, in [0, 1] (see :class:`AttackResult`)."""
    s = [float(v) for v in success_rate]
    if not s:
        raise ValueError("success_auc needs at least one success rate")
    if len(s) == 1:
        return s[0]
    return sum((a + b) / 2.0 for a, b in zip(s[:-1], s[1:])) / (len(s) - 1)


# --------------------------------------------------------------------------- the attack


def _attack_pairs(
    model: "torch.nn.Module",
    x_all: "torch.Tensor",
    y_all: "torch.Tensor",
    idx: "torch.Tensor",
    eps: list[float],
    *,
    norm: str,
    steps: int,
    rel_stepsize: float,
    shift: int | None,
    n_classes: int,
    seed: int,
    batch_size: int,
    device: "torch.device",
) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Attack every (image in ``idx``, ε > 0) pair in batches.

    Returns the per-pair outcomes as bool ``[len(eps), len(idx)]``: success, and still the true label.

    Pairs are ordered ε-major so most batches hold one ε; a batch may straddle two.
    """
    import torch

    fb = _import_foolbox()
    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=device)
    attack_cls = fb.attacks.LinfPGD if norm == "linf" else fb.attacks.L2PGD
    attack = attack_cls(rel_stepsize=float(rel_stepsize), steps=int(steps), random_start=True)

    n = int(idx.numel())
    pair_img = idx.repeat(len(eps))
    pair_eps = torch.arange(len(eps)).repeat_interleave(n)
    eps64 = torch.tensor(eps, dtype=torch.float64)
    hit_pairs = torch.zeros(pair_img.numel(), dtype=torch.bool)
    robust_pairs = torch.zeros(pair_img.numel(), dtype=torch.bool)

    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        for start in range(0, pair_img.numel(), batch_size):
            img = pair_img[start:start + batch_size]
            k = pair_eps[start:start + batch_size]
            x0 = x_all[img].to(device)
            y = y_all[img].to(device)
            classes = y if shift is None else (y + shift) % n_classes
            adv = _pgd(fmodel, attack, x0, eps64[k], classes, targeted=shift is not None, norm=norm)
            with torch.no_grad():
                pred = model(adv).argmax(dim=-1)
            hit = (pred == classes) if shift is not None else (pred != y)
            # robust = still the true label; for a targeted attack that is not "failed", since
            # the image can land on a third class
            hit_pairs[start:start + batch_size] = hit.cpu()
            robust_pairs[start:start + batch_size] = (pred == y).cpu()
    shape = (len(eps), n)
    return hit_pairs.view(shape), robust_pairs.view(shape)


def _pgd(
    fmodel: Any,
    attack: Any,
    x0_raw: "torch.Tensor",
    eps64: "torch.Tensor",
    classes: "torch.Tensor",
    *,
    targeted: bool,
    norm: str,
) -> "torch.Tensor":
    """foolbox's ``BaseGradientDescent.run`` with a per-sample ε; returns ε-clipped adversarials.

    Scalars are formed as foolbox forms them (ε and ``rel_stepsize · ε`` rounded from float64
    once) so that at a single ε the iterates match foolbox's bit for bit for Linf.
    """
    import eagerpy as ep
    import torch
    from foolbox.attacks.gradient_descent_base import uniform_l2_n_balls

    shape = (-1,) + (1,) * (x0_raw.ndim - 1)
    eps = eps64.to(device=x0_raw.device, dtype=x0_raw.dtype).view(shape)
    step = (attack.rel_stepsize * eps64).to(device=x0_raw.device, dtype=x0_raw.dtype).view(shape)
    x0 = ep.astensor(x0_raw)
    lower, upper = fmodel.bounds

    loss_fn = attack.get_loss_fn(fmodel, ep.astensor(classes))
    optimizer = attack.get_optimizer(x0, ep.astensor(step))
    sign = -1.0 if targeted else 1.0  # descend on the target's loss, ascend on the label's

    if norm == "linf":
        noise = torch.rand(x0_raw.shape, dtype=x0_raw.dtype, device=x0_raw.device)
        x = x0 + ep.astensor(noise * (2 * eps) + -eps)
    else:
        batch, n = x0_raw.flatten(1).shape
        r = uniform_l2_n_balls(x0, batch, n).reshape(x0.shape)
        x = x0 + ep.astensor(eps) * r
    x = ep.clip(x, lower, upper)

    for _ in range(attack.steps):
        _, gradients = attack.value_and_grad(loss_fn, x)
        gradients = attack.normalize(gradients, x=x, bounds=fmodel.bounds)
        x = x + sign * optimizer(gradients)
        x = ep.astensor(_project(x.raw, x0_raw, eps, norm))
        x = ep.clip(x, lower, upper)
    # foolbox clips the returned point to ε once more before judging it; so do we.
    return _project(x.raw, x0_raw, eps, norm).detach()


def _project(x: "torch.Tensor", x0: "torch.Tensor", eps: "torch.Tensor", norm: str) -> "torch.Tensor":
    """Per-sample projection onto the ε-ball around ``x0`` (foolbox's project / clip_perturbation)."""
    import torch

    delta = x - x0
    if norm == "linf":
        return x0 + torch.clamp(delta, min=-eps, max=eps)
    norms = delta.flatten(1).square().sum(dim=-1).sqrt()
    norms = torch.maximum(norms, torch.full_like(norms, 1e-12))
    factor = torch.minimum(norms.reciprocal() * eps.flatten(), torch.ones_like(norms))
    return x0 + factor.view(eps.shape) * delta


# --------------------------------------------------------------------------- checks and helpers


def _check_differentiable(model: "torch.nn.Module", x: "torch.Tensor") -> None:
    """Fail loudly when the input gradient is unusable, instead of reporting 0 % success.

    The probe loss is a fixed random projection of the logits, not the attack's cross-entropy:
    a confident model can saturate cross-entropy to an exactly zero gradient, and a head fitted
    from zero by gradient steps has columns summing to zero, so ``logits.sum()`` has no gradient.
    """
    import torch

    x = x.detach().clone().requires_grad_(True)
    try:
        logits = model(x)
    except RuntimeError as exc:  # e.g. .numpy() on a tensor that requires grad
        raise NonDifferentiableEncoderError(
            f"the model fails when its input requires a gradient ({exc}); the same images "
            f"passed without gradients. {_FIX}"
        ) from exc
    if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
        raise NonDifferentiableEncoderError(
            "the model's output is not connected to its input by autograd (a .detach(), "
            f"torch.no_grad()/inference_mode() or numpy round trip inside embed). {_FIX}"
        )
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(logits.shape, generator=gen).to(logits)
    (grad,) = torch.autograd.grad((logits * weights).sum(), x, allow_unused=True)
    if grad is None:
        raise NonDifferentiableEncoderError(
            "the model's output does not depend on its input through autograd (gradient is "
            f"None). {_FIX}"
        )
    if not bool(torch.isfinite(grad).all()):
        raise NonDifferentiableEncoderError(
            "the input gradient contains NaN or inf, so PGD steps would be meaningless; look for "
            "divisions by zero or log of zero on embed's input path. " + _FIX
        )
    if not bool((grad != 0).any()):
        raise NonDifferentiableEncoderError(
            "the input gradient is zero for every pixel of every probe image, so PGD cannot move "
            f"(0 % success would be an artefact). {_FIX}"
        )


def _predict(
    model: "torch.nn.Module", x_all: "torch.Tensor", n_classes: int, batch_size: int,
    device: "torch.device",
) -> "torch.Tensor":
    """Clean predictions on the images' device, with a clear error for a wrong logit shape."""
    import torch

    preds = []
    with torch.no_grad():
        for start in range(0, x_all.shape[0], batch_size):
            xb = x_all[start:start + batch_size].to(device)
            logits = model(xb)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (xb.shape[0], n_classes):
                got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(
                    f"the attacked model must return logits of shape [N, n_classes] = "
                    f"[{xb.shape[0]}, {n_classes}], got {got}. Pass the encoder followed by its "
                    "linear head and n_classes equal to the head's output size."
                )
            preds.append(logits.argmax(dim=-1).to(x_all.device))
    return torch.cat(preds)


class _attack_mode:
    """eval() and frozen parameters for the attack; the model's own state is restored after.

    Each module's own training flag is restored, not the root's: a wrapper built for the attack
    (e.g. encoder + linear head) is in training mode by default, and ``train(True)`` on it
    would put a BatchNorm encoder in training mode for every later forward pass.
    """

    def __init__(self, model: "torch.nn.Module") -> None:
        self.model = model

    def __enter__(self) -> None:
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in self.flags:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        for p, flag in self.flags:
            p.requires_grad_(flag)
        for module, training in self.modes:
            module.training = training


def _check_epsilons(epsilons: Sequence[float]) -> list[float]:
    eps = [float(e) for e in epsilons]
    if not eps:
        raise ValueError("epsilons must list at least one value")
    if any(not math.isfinite(e) or e < 0 for e in eps):
        raise ValueError(f"epsilons must be finite and >= 0, got {eps}")
    if any(b <= a for a, b in zip(eps[:-1], eps[1:])):
        raise ValueError(f"epsilons must be strictly increasing (the AUC follows their order), got {eps}")
    return eps


def _check_args(norm: str, steps: int, rel_stepsize: float, n_classes: int, batch_size: int) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not (math.isfinite(rel_stepsize) and rel_stepsize > 0):
        raise ValueError(f"rel_stepsize must be a positive number, got {rel_stepsize}")
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


def _as_tensors(images: Any, labels: Any, n_classes: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Float images in [0, 1] ``[N, 3, H, W]`` and int64 labels ``[N]`` in ``[0, n_classes)``."""
    import torch

    x = torch.as_tensor(images)
    y = torch.as_tensor(labels)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty float tensor [N, 3, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {x.dtype}; divide uint8 by 255")
    if y.shape != (x.shape[0],) or y.is_floating_point():
        raise ValueError(f"labels must be integers of shape [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0 or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"images must lie in [0, 1] (attacks use bounds (0, 1)), got range [{lo}, {hi}]")
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got range [{int(y.min())}, {int(y.max())}]")
    return x.detach(), y.to(x.device)


def _target_shift(targeted: bool, target_shift: int | None, n_classes: int) -> int | None:
    """The label shift for targets: given, or :func:`default_target_shift`; never 0 mod n_classes."""
    if not targeted:
        return None
    if target_shift is None:
        return default_target_shift(n_classes)
    shift = int(target_shift) % n_classes
    if shift == 0:
        raise ValueError(
            f"target_shift={target_shift} is 0 mod n_classes={n_classes}: every target would be "
            "the true label. Use a shift in 1 … n_classes - 1."
        )
    return shift


def _import_foolbox() -> Any:
    """foolbox 3 imports ``scipy.ndimage.filters``, deprecated in SciPy; hide that warning only."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*scipy.ndimage.filters.*")
        import foolbox

    return foolbox


def _model_device(model: "torch.nn.Module", x: "torch.Tensor") -> "torch.device":
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return x.device


def _rng_devices(device: "torch.device") -> list[int]:
    """CUDA devices whose RNG the attack forks (the CPU generator is always forked)."""
    if device.type != "cuda":
        return []
    import torch

    return [device.index if device.index is not None else torch.cuda.current_device()]
