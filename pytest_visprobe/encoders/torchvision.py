"""``--encoder torchvision:NAME[@WEIGHTS]``: a torchvision classification model as an Encoder.

WEIGHTS is a member of the model's weights enum (``IMAGENET1K_V2``; default ``DEFAULT``) or a
local state-dict file (loaded strictly, preprocessing from the DEFAULT enum). The embedding is
the classifier's input (the last ``Linear`` is replaced by an identity and kept as the encoder's
own classifier, ``classify``); the feature map is the last stage's activation (ViTs: patch
tokens as a grid). torch is imported only on load.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path

from pytest_visprobe.encoders.refs import EncoderRef
from pytest_visprobe.errors import EncoderLoadError

_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


def parse_torchvision_ref(raw: str, rest: str) -> EncoderRef:
    name, _, weights = rest.partition("@")
    if not name:
        raise EncoderLoadError(f"--encoder={raw}: missing model name, e.g. torchvision:resnet50@IMAGENET1K_V2.")
    if weights and _is_file_ref(weights) and not Path(weights).is_file():
        raise EncoderLoadError(
            f"--encoder={raw}: weights file not found ({weights}). torchvision:NAME@FILE loads NAME "
            f"with a local state dict; torchvision:NAME@ENUM (e.g. IMAGENET1K_V1) a weights enum member."
        )
    return EncoderRef(raw=raw, kind="torchvision", target=name, weights=weights or None)


def _is_file_ref(weights: str) -> bool:
    return weights.endswith(_FILE_SUFFIXES) or "/" in weights or "\\" in weights


def load_torchvision(ref: EncoderRef):
    """The model with its weights loaded strictly, wrapped with its weights' preprocessing."""
    import torchvision
    from torch import nn

    from pytest_visprobe.encoders.base import ModuleEncoder

    names = torchvision.models.list_models(module=torchvision.models)
    if ref.target not in names:
        guess = difflib.get_close_matches(ref.target, names, n=3)
        hint = f" Did you mean {', '.join(guess)}?" if guess else ""
        raise EncoderLoadError(f"--encoder={ref.raw}: torchvision has no classification model {ref.target!r}.{hint} "
                               f"See torchvision.models.list_models(module=torchvision.models).")
    enum = torchvision.models.get_model_weights(ref.target)
    model = torchvision.models.get_model(ref.target, weights=None)
    if ref.weights and _is_file_ref(ref.weights):
        meta, state = enum.DEFAULT, _read_file(ref)
    else:
        meta = _enum_member(ref, enum)
        state = _fetch(ref, meta)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EncoderLoadError(
            f"--encoder={ref.raw}: the weights do not fit torchvision's {ref.target} "
            f"({' '.join(str(exc).split())[:300]}). Pass a state dict saved from {ref.target}.state_dict()."
        ) from exc
    head = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]
    parent, _, leaf = head.rpartition(".")
    classifier = model.get_submodule(head)  # kept: the RPGD probe attacks the ImageNet head
    setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
    transforms = meta.transforms()
    crop = transforms.crop_size
    map_fn = functools.partial(_vit_map, model) if isinstance(model, torchvision.models.VisionTransformer) else None
    return ModuleEncoder(model.eval(), name=ref.id, input_size=(crop[0], crop[-1]), mean=transforms.mean,
                         std=transforms.std, interpolation=transforms.interpolation.value, map_fn=map_fn,
                         classifier=classifier.eval(), classifier_classes=classifier.out_features)


def _enum_member(ref: EncoderRef, enum):
    key = (ref.weights or "DEFAULT").rsplit(".", 1)[-1]
    try:
        return enum[key]
    except KeyError:
        members = ", ".join(["DEFAULT", *enum.__members__])
        raise EncoderLoadError(f"--encoder={ref.raw}: {enum.__name__} has no {key!r}; choose one of {members}, "
                               f"or give a local state-dict file.") from None


def _fetch(ref: EncoderRef, member):
    """The enum's state dict from torch's hub cache, downloading only when it is not there."""
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
    try:
        return member.get_state_dict(progress=False)
    except Exception as exc:
        raise EncoderLoadError(
            f"--encoder={ref.raw}: {member} is not in torch's cache ({cached}) and could not be downloaded "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}). Without network access, copy "
            f"{Path(member.url).name} there from a machine that has it, or pass a local file: "
            f"--encoder=torchvision:{ref.target}@/path/to/state_dict.pth."
        ) from exc


def _read_file(ref: EncoderRef):
    import torch

    assert ref.weights is not None
    try:
        if ref.weights.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(ref.weights)
        return torch.load(ref.weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderLoadError(f"--encoder={ref.raw}: cannot read {ref.weights} as a state dict "
                               f"({type(exc).__name__}: {exc}).") from exc


def _vit_map(model, x):
    """torchvision ViT: encoder output without the class token, as ``[N, D, h, w]``."""
    import torch

    from pytest_visprobe.encoders.base import tokens_to_grid

    tokens = model._process_input(x)
    cls = model.class_token.expand(tokens.shape[0], -1, -1)
    out = model.encoder(torch.cat([cls, tokens], dim=1))
    return tokens_to_grid(out, 1, x.shape[-2:])
