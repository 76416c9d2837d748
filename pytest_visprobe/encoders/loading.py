"""The loaders behind ``--encoder``: files (a factory function), timm, open_clip, hf, torchvision,
and the kinds plugins register (encoders/kinds.py)."""

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
from typing import Any

from torch import nn

from pytest_visprobe.encoders.base import Encoder, ModuleEncoder
from pytest_visprobe.encoders.refs import DEFAULT_FACTORY, EncoderRef
from pytest_visprobe.encoders.script_import import script_folder_importable
from pytest_visprobe.errors import EncoderLoadError



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
    kwargs: dict[str, Any] = {"pretrained": True}
    if ref.weights:
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(ref.weights).resolve())}
    fix = (
        f"Check that {ref.weights} is a state dict saved from {ref.target}."
        if ref.weights else
        f"Without internet access, pass a local weights file: --encoder=timm:{ref.target}@/path/"
        f"to/model.safetensors (or set HF_HUB_OFFLINE=1 with the weights in your HF cache)."
    )
    # first with the classifier (the RPGD probe attacks the model's own head); when that fails
    # (a checkpoint without classifier or with another class count) again without it, which
    # reports the problem if there is one
    model = _create_timm(ref, kwargs, fix, quiet=True)
    if model is None:
        model = _create_timm(ref, kwargs | {"num_classes": 0}, fix, quiet=False)
    cfg = timm.data.resolve_model_data_config(model)
    has_head = isinstance(getattr(model, "num_classes", 0), int) and model.num_classes > 0
    return ModuleEncoder(
        model,
        name=ref.id,
        input_size=tuple(cfg["input_size"][1:]),
        mean=cfg["mean"],
        std=cfg["std"],
        interpolation=cfg.get("interpolation", "bicubic"),
        embed_fn=functools.partial(_timm_pre_logits, model) if has_head else None,
        classify_fn=model if has_head else None,
        classifier_classes=model.num_classes if has_head else None,
    )


def _create_timm(ref: EncoderRef, kwargs: dict[str, Any], fix: str, *, quiet: bool) -> nn.Module | None:
    """``timm.create_model`` with its weights checked; ``quiet``: ``None`` instead of an error."""
    import timm

    report = _TimmLoadReport()
    try:
        with report.listening():
            model = timm.create_model(ref.target, **kwargs)
    except Exception as exc:
        if quiet:  # e.g. a checkpoint without classifier, or with another class count
            return None
        raise EncoderLoadError(
            f"--encoder={ref.raw}: timm could not load pretrained weights ({type(exc).__name__}: "
            f"{_short(exc)}). {fix}"
        ) from exc
    if report.problems:
        if quiet:
            return None
        # timm loads non-strictly once the classifier is dropped (num_classes=0), so a file of the
        # wrong architecture, or no weights at all, would otherwise give a silently random model
        raise EncoderLoadError(
            f"--encoder={ref.raw}: timm did not load {ref.target}'s weights: "
            f"{_short(' '.join(report.problems))} {fix}"
        )
    return model


def _timm_pre_logits(model: nn.Module, x):
    """The embedding of a timm model with its classifier: the classifier's input (what the same
    model built with ``num_classes=0`` returns)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


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
    return open_clip_encoder(model, arch, name=ref.id)


def open_clip_encoder(model: nn.Module, tokenizer: Any, *, name: str) -> Encoder:
    """An open_clip ``CLIP`` model as an Encoder: its image tower embeds, its text tower reads text.

    ``tokenizer`` is open_clip's tokenizer, or the architecture name to get it from
    (``open_clip.get_tokenizer``) when text is first read.

    ``embed`` is ``model.visual``'s output, which is ``model.encode_image`` before its L2
    normalisation: the joint image-text space, so zero-shot and retrieval compare it with
    ``encode_text`` directly.
    """
    visual = model.visual
    cfg = getattr(visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", getattr(visual, "image_size", 224))
    size = (size, size) if isinstance(size, int) else tuple(size)
    return ModuleEncoder(
        visual,
        name=name,
        input_size=size,
        mean=cfg.get("mean", getattr(visual, "image_mean", None)),
        std=cfg.get("std", getattr(visual, "image_std", None)),
        interpolation=cfg.get("interpolation", "bicubic"),
        text_fn=OpenClipText(model, tokenizer),
    )


class OpenClipText:
    """The text half of an open_clip model, called with a list of strings.

    A plain object, not a module: the encoder's fingerprint keys its cached image features, so
    the text weights stay out of its state dict. It runs on the device of the image tower (the
    encoder's), in eval mode, without gradients. A tokenizer given by architecture name is
    loaded on first use, so an image-only run never needs it (some come from the HF hub).
    """

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]):
        import torch

        if isinstance(self.tokenizer, str):
            import open_clip

            try:
                self.tokenizer = open_clip.get_tokenizer(self.tokenizer)
            except Exception as exc:
                from pytest_visprobe.errors import TextTowerUnavailable

                raise TextTowerUnavailable(
                    f"open_clip could not load the tokenizer of {self.tokenizer!r} ({type(exc).__name__}: "
                    f"{_short(exc)}); run once with network access so it lands in the Hugging Face cache, "
                    f"then set HF_HUB_OFFLINE=1."
                ) from exc
        device = next(self.model.visual.parameters()).device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(list(texts)).to(device)).float()


def _load_hf(ref: EncoderRef) -> Encoder:
    from pytest_visprobe.encoders.hf import load_hf

    return load_hf(ref)


def _load_torchvision(ref: EncoderRef) -> Encoder:
    from pytest_visprobe.encoders.torchvision import load_torchvision

    return load_torchvision(ref)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + " …"
