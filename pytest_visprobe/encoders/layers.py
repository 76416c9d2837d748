"""Intermediate layers: which blocks an encoder has, their pooled features from one forward pass,
and per-layer views (``LayerView``) on which every embedding probe runs unchanged.

Reading (``read_layers``): timm models with ``forward_intermediates`` are read through it (the
final norm applied, as DINOv2's linear evaluation does; the layers are ``feature_info``'s
modules), open_clip ViT towers likewise (``transformer.resblocks.N``), anything else — a file
encoder, a torchvision model, a timm module name outside ``feature_info`` such as
``head.global_pool`` — with forward hooks during one ``embed`` call. Pooling: a class token
when the model has one, else the mean over patch tokens; 4-D maps are global-average-pooled.

Default blocks of a plain module (``default_layers``): modules named ``layerN`` (ResNets),
else the items of the shallowest ``blocks``/``stages``/``layers``/``resblocks``/``features``
container, else the children of the first module with several children, grouped into runs
that each start at a weight-bearing child (not a norm layer) and are read after the run's
last child (so ``conv, bn, relu`` is one block, read after the ReLU, named after it).

A view's fingerprint is its source's plus the layer, so the FeatureStore caches per layer
without new cache code; views made together share a ``LayerGroup``, which the store uses to
compute every sibling layer of a split in the same forward pass.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from pytest_visprobe.encoders.base import Encoder
from pytest_visprobe.errors import ConfigError, EncoderOutputError
from pytest_visprobe.runner.options import ALL, CLS_AVGPOOL, LAST, LAST4, layer_tokens

SEPARATOR = "@"  # a view's name: <encoder>@<layer>
_CONTAINERS = ("blocks", "stages", "layers", "resblocks", "features")
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


class LayerOutput(NamedTuple):
    """One layer for a batch: its class token (``None`` without one) and its mean over patch
    tokens (a 4-D map's global average), both ``[N, D]``."""

    cls: torch.Tensor | None
    patches: torch.Tensor

    @property
    def pooled(self) -> torch.Tensor:
        return self.cls if self.cls is not None else self.patches


# --------------------------------------------------------------------------- the option


def resolve_layers(encoder: Encoder, raw: str) -> list[str]:
    """The layer ids ``raw`` names for ``encoder``, in order, without repeats: ``last`` (the
    encoder itself), block names, or ``last4_cls_avgpool``. Unknown ones are a ConfigError
    naming the encoder's layers."""
    tokens = layer_tokens(raw)
    if tokens == [LAST]:
        return [LAST]
    available = list(encoder.layers())
    where = f"--visprobe-layers={raw}: encoder {encoder.name!r}"
    listing = (f"its layers (in depth order, indices 0..{len(available) - 1} or -{len(available)}..-1): "
               f"{', '.join(available) or 'none found'}")
    out: list[str] = []
    for token in tokens:
        if token in (ALL, LAST4, CLS_AVGPOOL) and not available:
            raise ConfigError(f"{where} has no readable layers; give module names of it, or implement "
                              f"layers() on its Encoder subclass.")
        if token == ALL:
            out += available
        elif token == LAST4:
            out += available[-4:]
        elif token in (LAST, CLS_AVGPOOL):
            out.append(str(token))
        elif isinstance(token, int):
            if not -len(available) <= token < len(available):
                raise ConfigError(f"{where} has no layer {token}; {listing}.")
            out.append(available[token])
        elif token not in available and token not in module_names(encoder):
            guess = difflib.get_close_matches(token, list(dict.fromkeys([*available, *module_names(encoder)])), n=3)
            hint = f" Did you mean {', '.join(guess)}?" if guess else ""
            raise ConfigError(f"{where} has no module {token!r}.{hint} Any module name works; {listing}.")
        else:
            out.append(str(token))
    return list(dict.fromkeys(out))


def module_names(encoder: Encoder) -> list[str]:
    """Every module of the encoder that a forward hook can read, by name (its root excluded)."""
    return [name for name, _ in _root(encoder).named_modules() if name]


# --------------------------------------------------------------------------- which blocks


def default_layers(root: nn.Module) -> list[str]:
    """The readable blocks of a plain module, in depth order (the rule is in the module docstring)."""
    modules = dict(root.named_modules())
    stages = [name for name in modules if re.fullmatch(r"(.*\.)?layer\d+", name)]
    if stages:
        return stages
    for name, module in modules.items():
        if name.rsplit(".", 1)[-1] in _CONTAINERS and isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module):
            return [f"{name}.{child}" for child, _ in module.named_children()]
    prefix, module = "", root
    while len(children := list(module.named_children())) == 1:
        prefix, module = f"{prefix}{children[0][0]}.", children[0][1]
    out: list[str] = []
    start = 0  # the current run: children[start:i + 1], from just after the last block found
    for i, (name, child) in enumerate(children):
        nxt = children[i + 1][1] if i + 1 < len(children) else None
        if (nxt is None or _weighted(nxt)) and any(_weighted(c) for _, c in children[start:i + 1]):
            out.append(f"{prefix}{name}")
            start = i + 1
    return out


def _weighted(module: nn.Module) -> bool:
    """Starts a block: owns parameters and is not a normalisation layer."""
    return not isinstance(module, _NORMS) and any(True for _ in module.parameters())


def _root(encoder: Encoder) -> nn.Module:
    """The module whose names the layers are: a ModuleEncoder's wrapped module, else the encoder."""
    module = getattr(encoder, "module", None)
    return module if isinstance(module, nn.Module) else encoder


def intermediate_layers(encoder: Encoder) -> list[str] | None:
    """Layers read through the model's own ``forward_intermediates`` (timm, open_clip ViT), or None."""
    module = _root(encoder)
    kind = type(module).__module__.split(".")[0]
    if not callable(getattr(module, "forward_intermediates", None)) or not callable(getattr(encoder, "preprocess", None)):
        return None
    if kind == "timm" and getattr(module, "feature_info", None):
        return [str(info["module"]) for info in module.feature_info]
    blocks = getattr(getattr(module, "transformer", None), "resblocks", None)
    if kind == "open_clip" and blocks is not None:
        return [f"transformer.resblocks.{i}" for i in range(len(blocks))]
    return None


# --------------------------------------------------------------------------- reading


def read_layers(encoder: Encoder, images: torch.Tensor, names: Sequence[str]) -> dict[str, LayerOutput]:
    """Each named layer of ``encoder`` for ``images`` (``[N, 3, H, W]`` in [0, 1]): one forward
    pass through the model's intermediates, plus one hooked ``embed`` pass only when names outside
    them are asked for too."""
    through = intermediate_layers(encoder) or []
    inner = [n for n in names if n in through]
    hooked = [n for n in names if n not in through]
    out: dict[str, LayerOutput] = {}
    if inner:
        out.update(_intermediates(encoder, images, [through.index(n) for n in inner], inner))
    if hooked:
        out.update(_hooked(encoder, images, hooked))
    return {name: out[name] for name in names}


def _intermediates(encoder: Encoder, images: torch.Tensor, indices: list[int], names: list[str]) -> dict[str, LayerOutput]:
    module = _root(encoder)
    x = encoder.preprocess(images)
    order = sorted(range(len(indices)), key=lambda i: indices[i])
    picked = [indices[i] for i in order]
    if type(module).__module__.split(".")[0] == "open_clip":
        got = module.forward_intermediates(x, indices=picked, normalize_intermediates=True, output_fmt="NLC",
                                           intermediates_only=True, output_extra_tokens=True)
        outputs = [LayerOutput(prefix[:, 0], tokens.mean(dim=1))
                   for tokens, prefix in zip(got["image_intermediates"], got["image_intermediates_prefix"])]
    else:
        has_cls = getattr(module, "cls_token", None) is not None
        extra = {"return_prefix_tokens": True} if has_cls else {}
        got = module.forward_intermediates(x, indices=picked, norm=True, intermediates_only=True, **extra)
        outputs = [_pool_intermediate(item, has_cls) for item in got]
    return {names[i]: outputs[k] for k, i in enumerate(order)}


def _pool_intermediate(item: Any, has_cls: bool) -> LayerOutput:
    if isinstance(item, (tuple, list)):  # (patch map or tokens, prefix tokens)
        spatial, prefix = item
        return LayerOutput(prefix[:, 0] if has_cls else None, _mean_positions(spatial))
    return LayerOutput(None, _mean_positions(item))


def _mean_positions(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    return x


def _hooked(encoder: Encoder, images: torch.Tensor, names: list[str]) -> dict[str, LayerOutput]:
    """Forward hooks on the named modules during one ``embed``; a module run twice keeps its last output."""
    root = _root(encoder)
    modules = dict(root.named_modules())
    found: dict[str, Any] = {}
    handles = []
    for name in names:
        if name not in modules or not name:
            raise ConfigError(f"encoder {encoder.name!r} has no module {name!r}; its layers: "
                              f"{', '.join(encoder.layers())}.")
        handles.append(modules[name].register_forward_hook(
            lambda _m, _i, output, name=name: found.__setitem__(name, output)))
    try:
        encoder.embed(images)
    finally:
        for handle in handles:
            handle.remove()
    prefix = int(getattr(root, "num_prefix_tokens", 0) or 0)
    has_cls = getattr(root, "cls_token", None) is not None or getattr(root, "class_embedding", None) is not None
    out = {}
    for name in names:
        value = found.get(name)
        if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
            value = value[0]
        if not isinstance(value, torch.Tensor):
            what = "did not run" if name not in found else f"returned {type(value).__name__}, not a tensor"
            raise EncoderOutputError(f"layer {name!r} of encoder {encoder.name!r} {what} during embed(); "
                                     f"choose another with --visprobe-layers (its layers: {', '.join(encoder.layers())}).")
        if value.ndim == 3:  # tokens [N, T, D]
            cls = value[:, 0] if has_cls else None
            out[name] = LayerOutput(cls, value[:, prefix if has_cls else 0:].mean(dim=1))
        elif value.ndim in (2, 4):
            out[name] = LayerOutput(None, _mean_positions(value))
        else:
            raise EncoderOutputError(f"layer {name!r} of encoder {encoder.name!r} gave a {value.ndim}-D tensor "
                                     f"{tuple(value.shape)}; a layer must give [N, D], [N, T, D] or [N, C, h, w].")
    return out


def cls_avgpool(encoder: Encoder, outputs: dict[str, LayerOutput]) -> torch.Tensor:
    """DINOv2's linear-evaluation feature from the last 4 layers' outputs: their class tokens and
    the last layer's mean patch token, concatenated. Without a class token (CNNs) each layer's
    global average stands in for it, and the last one is not repeated."""
    blocks = cls_avgpool_layers(encoder)
    last = outputs[blocks[-1]]
    if last.cls is None:
        return torch.cat([outputs[b].patches for b in blocks], dim=1)
    return torch.cat([*(outputs[b].pooled for b in blocks), last.patches], dim=1)


def cls_avgpool_layers(encoder: Encoder) -> list[str]:
    return list(encoder.layers())[-4:]


# --------------------------------------------------------------------------- views


class LayerGroup:
    """The layers of one encoder requested together; reads them all in one forward pass."""

    def __init__(self, source: Encoder, layers: Sequence[str]) -> None:
        self.source = source
        self.layers = list(layers)
        self.views: list[LayerView] = [LayerView(source, layer, self) for layer in self.layers]

    def blocks(self, layers: Sequence[str]) -> list[str]:
        """The blocks to read for ``layers`` (``last4_cls_avgpool`` needs the last 4)."""
        out: list[str] = []
        for layer in layers:
            out += cls_avgpool_layers(self.source) if layer == CLS_AVGPOOL else [layer]
        return list(dict.fromkeys(out))

    def embed(self, images: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """``[N, D]`` per layer id, all from one pass of the source encoder."""
        outputs = self.source.layer_outputs(images, self.blocks(layers))
        return {layer: cls_avgpool(self.source, outputs) if layer == CLS_AVGPOOL else outputs[layer].pooled
                for layer in layers}


class LayerView(Encoder):
    """An encoder whose embedding is one layer of ``source``: named ``<source>@<layer>``, its
    fingerprint the source's plus the layer. Embedding probes only: it has no feature map."""

    def __init__(self, source: Encoder, layer: str, group: LayerGroup) -> None:
        super().__init__()
        self.source = source
        self.layer = layer
        self.layer_group = group
        self.name = f"{source.name}{SEPARATOR}{layer}"
        self.input_size = source.input_size
        self.ref = f"{getattr(source, 'ref', source.name)} {SEPARATOR} {layer}"
        self.source_ref = getattr(source, "source_ref", None) or getattr(source, "ref", None)
        self.layer_of = source.name
        control_of = getattr(source, "control_of", None)
        self.control_of = f"{control_of}{SEPARATOR}{layer}" if control_of else None

    def config(self) -> dict[str, Any]:
        return {**self.source.config(), "layer": self.layer}

    def fingerprint(self) -> str:
        parts = (self.source.fingerprint(), "layer", self.layer, ",".join(self.layer_group.blocks([self.layer])))
        return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.layer_group.embed(images, [self.layer])[self.layer]

    @property
    def has_feature_map(self) -> bool:
        return False
