"""The Encoder contract and the loaders behind ``--encoder``.

An encoder takes float RGB images in [0, 1] (``N×3×H×W``) and applies its own resize and
normalisation, so attacks can work in pixel space. ``embed`` must stay differentiable.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib.util
import inspect
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pytest_visprobe.encoders.refs import DEFAULT_FACTORY, EncoderRef
from pytest_visprobe.errors import EncoderLoadError
from pytest_visprobe.encoders.script_import import script_folder_importable


class Encoder(nn.Module):
    """Base class for encoders. Subclass and implement ``embed`` (and ``feature_map`` if you can).

    ``name`` labels the encoder; ``input_size`` is the ``(H, W)`` it prefers, or ``None`` for
    "as given"; ``fingerprint()`` keys the feature cache.
    """

    name: str = "encoder"
    input_size: tuple[int, int] | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[N, 3, H, W]`` in [0, 1] → ``[N, D]`` pooled embedding."""
        raise NotImplementedError

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] → ``[N, C, h, w]`` spatial features (optional)."""
        raise NotImplementedError(f"{type(self).__name__} has no feature_map()")

    @property
    def has_feature_map(self) -> bool:
        return type(self).feature_map is not Encoder.feature_map

    def config(self) -> dict[str, Any]:
        """Settings that change the features (beyond the weights); part of the fingerprint."""
        return {"input_size": self.input_size}

    def fingerprint(self) -> str:
        """Hash of weights, architecture and config: a changed checkpoint never reuses features.

        The hash is cached, and recomputed when the config, the architecture or any tensor
        changes (replaced, loaded, or modified in place: its storage or version counter moves).
        """
        token = (repr(self), repr(sorted(self.config().items())), getattr(self, "source_hash", ""),
                 tuple((k, t.data_ptr(), _version_of(t)) for k, t in self.state_dict().items()))
        cached_token, cached = getattr(self, "_fingerprint", None) or (None, None)
        if cached is None or cached_token != token or None in (v for *_, v in token[3]):
            digest = hashlib.blake2b(digest_size=16)
            digest.update(type(self).__qualname__.encode())
            digest.update(repr(self).encode())
            digest.update(repr(sorted(self.config().items())).encode())
            digest.update(getattr(self, "source_hash", "").encode())
            for key, tensor in self.state_dict().items():
                data = tensor.detach().cpu().contiguous().reshape(-1)
                digest.update(f"{key}|{data.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(data.view(torch.uint8).numpy().tobytes())
            cached = digest.hexdigest()
            self._fingerprint = (token, cached)
        return cached


def _version_of(tensor: torch.Tensor) -> int | None:
    """The in-place version counter; ``None`` (never cache) for inference tensors, which lack one."""
    try:
        return tensor._version
    except RuntimeError:
        return None


class ModuleEncoder(Encoder):
    """Wraps an ``nn.Module``: resize → normalise → module → pool to ``[N, D]``.

    4-D outputs are average-pooled, 3-D token outputs are averaged over tokens; the spatial
    map comes from ``map_fn``, else from ``default_map_fn(module)`` (timm/open_clip
    intermediates, ``forward_features``, or the last 4-D activation).
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        name: str,
        input_size: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str = "bilinear",
        embed_fn: Callable[[torch.Tensor], Any] | None = None,
        map_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.name = name
        self.input_size = tuple(int(v) for v in input_size) if input_size is not None else None
        self.interpolation = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
        self.register_buffer("mean", _channel_buffer(mean, 0.0), persistent=False)
        self.register_buffer("std", _channel_buffer(std, 1.0), persistent=False)
        # not `embed_fn or module`: assigning the module again would register it twice, doubling
        # the state dict (and the weights hashed by fingerprint())
        self._embed_fn = embed_fn
        self._map_fn = map_fn if map_fn is not None else default_map_fn(module)

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "interpolation": self.interpolation,
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
        }

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to ``input_size`` and normalise, differentiably (attacks pass through here)."""
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            antialias = self.interpolation in ("bilinear", "bicubic")
            kwargs = {"align_corners": False} if antialias else {}
            images = F.interpolate(images, size=self.input_size, mode=self.interpolation,
                                   antialias=antialias, **kwargs)
        return (images - self.mean) / self.std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        embed_fn = self.module if self._embed_fn is None else self._embed_fn
        out = _first_tensor(embed_fn(self.preprocess(images)), self.name)
        if out.ndim == 4:
            out = out.mean(dim=(2, 3))
        elif out.ndim == 3:
            out = out.mean(dim=1)
        return out

    @property
    def has_feature_map(self) -> bool:
        return self._map_fn is not None

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        if self._map_fn is None:
            raise NotImplementedError(f"{self.name} has no feature_map()")
        return _first_tensor(self._map_fn(self.preprocess(images)), self.name)


# --------------------------------------------------------------------------- feature maps


def default_map_fn(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """How to get ``[N, C, h, w]`` from a module, or ``None`` when it has no spatial activation.

    In order: timm's ``forward_intermediates`` (last block; ViT patch tokens as a grid, prefix
    tokens dropped, final norm applied), open_clip visual towers' ``forward_intermediates``
    (ModifiedResNet and ViT), ``forward_features`` (4-D, or tokens reshaped to a grid), and for
    any other module the last 4-D activation with more than one position (forward hooks).
    """
    kind = type(module).__module__.split(".")[0]
    if kind == "timm" and callable(getattr(module, "forward_intermediates", None)):
        return functools.partial(_timm_map, module)
    if kind == "open_clip" and callable(getattr(module, "forward_intermediates", None)):
        return functools.partial(_open_clip_map, module)
    if callable(getattr(module, "forward_features", None)):
        return functools.partial(_forward_features_map, module)
    spatial = (nn.Conv2d, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
    if any(isinstance(m, spatial) for m in module.modules()):
        return functools.partial(_last_4d_activation, module)
    return None


def _timm_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_intermediates(x, indices=1, norm=True, output_fmt="NCHW",
                                       intermediates_only=True)[-1]


def _open_clip_map(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = visual.forward_intermediates(x, indices=1, normalize_intermediates=True, output_fmt="NCHW",
                                       intermediates_only=True)
    return out["image_intermediates"][-1]


def _forward_features_map(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = _first_tensor(module.forward_features(x), type(module).__name__)
    if out.ndim == 3:  # tokens [N, T, D]: drop class/register tokens, lay patches out as a grid
        out = tokens_to_grid(out, getattr(module, "num_prefix_tokens", 0), x.shape[-2:])
    return out


def tokens_to_grid(tokens: torch.Tensor, num_prefix_tokens: int, image_size) -> torch.Tensor:
    """``[N, P + h·w, D]`` → ``[N, D, h, w]``, with ``h/w`` following the image's aspect ratio."""
    patches = tokens[:, num_prefix_tokens:]
    n, t, d = patches.shape
    img_h, img_w = int(image_size[0]), int(image_size[1])
    h = max(1, round((t * img_h / img_w) ** 0.5))
    w = t // h
    if h * w != t:
        from pytest_visprobe.errors import EncoderOutputError

        raise EncoderOutputError(
            f"cannot lay {t} patch tokens out on a grid for {img_h}×{img_w} images (after dropping "
            f"{num_prefix_tokens} prefix tokens); set `num_prefix_tokens` on the module or implement "
            f"feature_map() on an Encoder subclass."
        )
    return patches.transpose(1, 2).reshape(n, d, h, w)


def _last_4d_activation(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    found: list[torch.Tensor] = []

    def keep(_mod, _inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2] * output.shape[-1] > 1:
            found.append(output)

    handles = [m.register_forward_hook(keep) for m in module.modules()]
    try:
        module(x)
    finally:
        for handle in handles:
            handle.remove()
    if not found:
        from pytest_visprobe.errors import EncoderOutputError

        raise EncoderOutputError(
            f"{type(module).__name__} produced no 4-D activation with more than one position, so it "
            f"has no feature map; give it forward_features() returning [N, C, h, w], or implement "
            f"feature_map() on a pytest_visprobe.Encoder subclass."
        )
    return found[-1]


def _channel_buffer(values: Sequence[float] | None, fill: float) -> torch.Tensor:
    values = [fill] * 3 if values is None else [float(v) for v in values]
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def _first_tensor(out: Any, name: str) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    from pytest_visprobe.errors import EncoderOutputError

    raise EncoderOutputError(
        f"encoder {name!r} returned {type(out).__name__}, not a tensor. The wrapped module must "
        f"return a Tensor (or a tuple whose first item is one); otherwise subclass "
        f"pytest_visprobe.Encoder and implement embed()."
    )


# --------------------------------------------------------------------------- loaders


def load_encoder(ref: EncoderRef, hook: Any = None) -> Encoder:
    """Turn a parsed reference into an Encoder, in eval mode, named by ``ref.id``.

    ``hook`` (``config.hook``) lets a plugin's ``pytest_visprobe_load_encoder`` load it first.
    """
    found = hook.pytest_visprobe_load_encoder(ref=ref) if hook is not None else None
    if found is not None:
        encoder = as_encoder(found, name=ref.id)
    elif ref.kind == "file":
        encoder = _load_file(ref)
    else:
        from pytest_visprobe.encoders.kinds import ENCODER_KINDS

        kind = ENCODER_KINDS.get(ref.kind)
        load = kind.load
        if isinstance(load, str):
            from pytest_visprobe.registry import resolve

            load = resolve(load)
        if load is None:
            raise EncoderLoadError(f"--encoder={ref.raw}: no pytest_visprobe_load_encoder hook loaded this "
                                   f"{ref.kind!r} encoder; the plugin that registered the kind must implement it.")
        encoder = as_encoder(load(ref), name=ref.id)
    encoder.name = ref.id
    encoder.ref = ref.raw
    return encoder.eval()


def as_encoder(obj: Any, *, name: str) -> Encoder:
    """Accept an Encoder as is; wrap a bare ``nn.Module`` (timm-style data config if present)."""
    if isinstance(obj, Encoder):
        return obj
    if isinstance(obj, nn.Module):
        cfg = getattr(obj, "pretrained_cfg", None) or {}
        input_size = cfg.get("input_size")
        return ModuleEncoder(
            obj,
            name=name,
            input_size=tuple(input_size[1:]) if input_size else None,
            mean=cfg.get("mean"),
            std=cfg.get("std"),
            interpolation=cfg.get("interpolation", "bilinear"),
        )
    raise EncoderLoadError(
        f"encoder {name!r}: the factory returned {type(obj).__name__}; it must return a "
        f"pytest_visprobe.Encoder or a torch.nn.Module."
    )


def _load_file(ref: EncoderRef) -> Encoder:
    path = Path(ref.target).resolve()
    source = path.read_bytes()
    module_name = f"visprobe_encoder_{hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    with script_folder_importable(path, keep=module_name):  # as `python file.py`: siblings importable
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's file failed to import
            sys.modules.pop(module_name, None)
            raise EncoderLoadError(
                f"--encoder={ref.raw}: importing {path} failed: {_where(exc, path)}. Fix the file; "
                f"it is imported as `python {path}` would run it, with its folder on sys.path."
            ) from exc
        return _call_factory(ref, path, module, module_name, source)


def _call_factory(ref: EncoderRef, path: Path, module: Any, module_name: str, source: bytes) -> Encoder:
    factory_name = ref.factory or DEFAULT_FACTORY
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        candidates = [
            n for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module_name
            and not inspect.isclass(v)
        ]
        hint = f" Functions it defines: {', '.join(candidates)}." if candidates else ""
        raise EncoderLoadError(
            f"--encoder={ref.raw}: {path.name} has no function {factory_name}(). Define "
            f"`def {DEFAULT_FACTORY}(): return MyEncoder()` in it, or pick one with "
            f"--encoder={ref.target}::FACTORY.{hint}"
        )
    try:
        obj = factory()
    except Exception as exc:
        raise EncoderLoadError(
            f"--encoder={ref.raw}: {factory_name}() raised {_where(exc, path)}. Fix the factory; "
            f"it must return an Encoder or nn.Module."
        ) from exc
    encoder = as_encoder(obj, name=ref.id)
    encoder.source_hash = hashlib.blake2b(source, digest_size=16).hexdigest()
    return encoder


def _where(exc: BaseException, path: Path) -> str:
    """``ExcType: message (file.py:line)`` pointing at the user's file when it is on the stack."""
    line = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path:
            line = f" ({path.name}:{frame.lineno})"
            break
    return f"{type(exc).__name__}: {exc}{line}"


def _load_timm(ref: EncoderRef) -> Encoder:
    import timm

    if not timm.is_model(ref.target) and not ref.target.startswith("hf-hub:"):
        names = timm.list_models()
        base = ref.target.split(".")[0]
        guess = difflib.get_close_matches(base, names, n=3)
        hint = f" Did you mean {', '.join(guess)}?" if guess else ""
        raise EncoderLoadError(
            f"--encoder={ref.raw}: timm has no model {ref.target!r}.{hint} "
            f"See timm.list_models('*pattern*')."
        )
    kwargs: dict[str, Any] = {"pretrained": True, "num_classes": 0}
    if ref.weights:
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(ref.weights).resolve())}
    fix = (
        f"Check that {ref.weights} is a state dict saved from {ref.target}."
        if ref.weights else
        f"Without internet access, pass a local weights file: --encoder=timm:{ref.target}@/path/"
        f"to/model.safetensors (or set HF_HUB_OFFLINE=1 with the weights in your HF cache)."
    )
    report = _TimmLoadReport()
    try:
        with report.listening():
            model = timm.create_model(ref.target, **kwargs)
    except Exception as exc:
        raise EncoderLoadError(
            f"--encoder={ref.raw}: timm could not load pretrained weights ({type(exc).__name__}: "
            f"{_short(exc)}). {fix}"
        ) from exc
    if report.problems:
        # timm loads non-strictly once the classifier is dropped (num_classes=0), so a file of the
        # wrong architecture, or no weights at all, would otherwise give a silently random model
        raise EncoderLoadError(
            f"--encoder={ref.raw}: timm did not load {ref.target}'s weights: "
            f"{_short(' '.join(report.problems))} {fix}"
        )
    cfg = timm.data.resolve_model_data_config(model)
    return ModuleEncoder(
        model,
        name=ref.id,
        input_size=tuple(cfg["input_size"][1:]),
        mean=cfg["mean"],
        std=cfg["std"],
        interpolation=cfg.get("interpolation", "bicubic"),
    )


class _TimmLoadReport(logging.Handler):
    """Collects what timm's pretrained loader logs about keys it could not load."""

    PROBLEMS = ("Missing keys", "Unexpected keys", "No pretrained weights exist",
                "Invalid pretrained config", "Valid function to load pretrained weights is not available")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith(self.PROBLEMS):
            self.problems.append(text.split(" discovered while")[0].split(" found while")[0] + ".")

    @contextlib.contextmanager
    def listening(self):
        logger = logging.getLogger("timm.models._builder")
        level = logger.level
        logger.addHandler(self)
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


def _load_open_clip(ref: EncoderRef) -> Encoder:
    import open_clip

    arch = ref.target
    if not arch.startswith("hf-hub:") and arch not in open_clip.list_models():
        guess = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(guess)}?" if guess else ""
        raise EncoderLoadError(
            f"--encoder={ref.raw}: open_clip has no architecture {arch!r}.{hint} "
            f"See open_clip.list_models()."
        )
    try:
        model = open_clip.create_model(arch, pretrained=ref.weights, require_pretrained=True)
    except Exception as exc:
        raise EncoderLoadError(
            f"--encoder={ref.raw}: open_clip could not load {arch} with pretrained="
            f"{ref.weights!r} ({type(exc).__name__}: {_short(exc)}). Without internet access, "
            f"pass a local checkpoint: --encoder=open_clip:{arch}//path/to/open_clip_model.safetensors; "
            f"see open_clip.list_pretrained() for tags."
        ) from exc
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(visual, "image_size", 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ModuleEncoder(
        visual,
        name=ref.id,
        input_size=size,
        mean=cfg.get("mean", getattr(visual, "image_mean", None)),
        std=cfg.get("std", getattr(visual, "image_std", None)),
        interpolation=cfg.get("interpolation", "bicubic"),
    )


def _load_hf(ref: EncoderRef) -> Encoder:
    from pytest_visprobe.encoders.hf import load_hf

    return load_hf(ref)


def _load_torchvision(ref: EncoderRef) -> Encoder:
    from pytest_visprobe.encoders.torchvision import load_torchvision

    return load_torchvision(ref)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " …"
