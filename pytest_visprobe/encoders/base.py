"""The Encoder contract, and ModuleEncoder, which wraps any ``nn.Module``; loaders are in loading.py.

An encoder takes float RGB images in [0, 1] (``N×3×H×W``) and applies its own resize and
normalisation, so attacks can work in pixel space. ``embed`` must stay differentiable.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn



class Encoder(nn.Module):
    """Base class for encoders. Subclass and implement ``embed`` (and ``feature_map`` if you can).

    ``name`` labels the encoder; ``input_size`` is the ``(H, W)`` it prefers, or ``None`` for
    "as given"; ``fingerprint()`` keys the feature cache. A model that has a classifier of its
    own (an ImageNet-1k head) may implement ``classify`` and set ``classifier_classes``: the RPGD
    probe attacks it, as the study attacked supervised models through their own heads.
    """

    name: str = "encoder"
    input_size: tuple[int, int] | None = None
    #: the number of logits ``classify`` returns; ``None``: no classifier of its own
    classifier_classes: int | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[N, 3, H, W]`` in [0, 1] → ``[N, D]`` pooled embedding."""
        raise NotImplementedError

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] → ``[N, C, h, w]`` spatial features (optional)."""
        raise NotImplementedError(f"{type(self).__name__} has no feature_map()")

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] → ``[N, classifier_classes]`` logits of the model's own
        classifier (optional; differentiable, like ``embed``)."""
        raise NotImplementedError(f"{type(self).__name__} has no classifier of its own")

    @property
    def has_feature_map(self) -> bool:
        return type(self).feature_map is not Encoder.feature_map

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``T`` strings → ``[T, D]`` in the space of ``embed`` (image-text encoders such as CLIP).

        Only encoders with a text tower implement it; the zero-shot and retrieval probes compare
        these rows with ``embed`` by cosine, so both must live in the joint image-text space.
        """
        raise NotImplementedError(f"{type(self).__name__} has no text tower (encode_text)")

    @property
    def has_text_tower(self) -> bool:
        return type(self).encode_text is not Encoder.encode_text

    def layers(self) -> list[str]:
        """Names of the blocks ``layer_outputs`` can read, in depth order (``--visprobe-layers``).

        Default: a timm/open_clip model's intermediates, else the blocks found in the module
        tree (encoders/layers.py says how); override to choose your own.
        """
        from pytest_visprobe.encoders.layers import _root, default_layers, intermediate_layers

        return intermediate_layers(self) or default_layers(_root(self))

    def layer_outputs(self, images: torch.Tensor, names: Sequence[str]) -> dict[str, Any]:
        """``{name: LayerOutput(cls, patches)}`` for the named layers, from one forward pass
        (encoders/layers.py ``read_layers``; any module name of the encoder works)."""
        from pytest_visprobe.encoders.layers import read_layers

        return read_layers(self, images, names)

    def embed_layers(self, images: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{name: [N, D]}``: each named layer pooled (its class token, else its mean over
        positions), all from one forward pass."""
        return {name: out.pooled for name, out in self.layer_outputs(images, names).items()}

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

    ``text_fn`` (texts → ``[T, D]`` in the embedding's space) gives it a text tower.

    4-D outputs are average-pooled, 3-D token outputs are averaged over tokens; the spatial
    map comes from ``map_fn``, else from ``default_map_fn(module)`` (timm/open_clip
    intermediates, ``forward_features``, or the last 4-D activation). The model's own logits, when
    it has a classifier, come from ``classify_fn`` (on normalised images), or from ``classifier``
    applied to the raw ``embed_fn``/module output (a head detached from the module, e.g.
    torchvision's last ``Linear``); a timm module with a classifier gets ``classify_fn = module``.
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
        text_fn: Callable[[list[str]], torch.Tensor] | None = None,
        classify_fn: Callable[[torch.Tensor], Any] | None = None,
        classifier: nn.Module | None = None,
        classifier_classes: int | None = None,
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
        # a plain callable, not a submodule: the fingerprint keys the cached *image* features, so
        # the text tower's weights stay out of the state dict
        self._text_fn = text_fn
        self.classifier = classifier
        if classify_fn is None and classifier is None and embed_fn is None:
            classify_fn, classifier_classes = default_classify_fn(module) or (None, None)
        self._classify_fn = classify_fn
        self.classifier_classes = (int(classifier_classes) if classifier_classes is not None
                                   and (classify_fn is not None or classifier is not None) else None)

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

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        if self.classifier_classes is None:
            raise NotImplementedError(f"{self.name} has no classifier of its own")
        x = self.preprocess(images)
        if self._classify_fn is not None:
            return _first_tensor(self._classify_fn(x), self.name)
        embed_fn = self.module if self._embed_fn is None else self._embed_fn
        return self.classifier(_first_tensor(embed_fn(x), self.name))

    @property
    def has_feature_map(self) -> bool:
        return self._map_fn is not None

    @property
    def has_text_tower(self) -> bool:
        return self._text_fn is not None

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self._text_fn is None:
            raise NotImplementedError(f"{self.name} has no text tower (encode_text)")
        return self._text_fn(list(texts))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        if self._map_fn is None:
            raise NotImplementedError(f"{self.name} has no feature_map()")
        return _first_tensor(self._map_fn(self.preprocess(images)), self.name)


def default_classify_fn(module: nn.Module) -> tuple[Callable[[torch.Tensor], Any], int] | None:
    """``(module, its class count)`` for a timm model whose classifier is intact (its forward
    returns the logits), else ``None``."""
    kind = type(module).__module__.split(".")[0]
    n_classes = getattr(module, "num_classes", 0)
    if kind == "timm" and callable(getattr(module, "forward_head", None)) and isinstance(n_classes, int) and n_classes > 0:
        return module, n_classes
    return None


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
