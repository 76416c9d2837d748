"""Parsing ``--encoder`` references, without importing torch (runs at configure time)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from pytest_visprobe.errors import EncoderLoadError

PREFIXES = ("timm", "open_clip", "hf", "torchvision")
DEFAULT_FACTORY = "create_encoder"

_FORMS = (
    "FILE.py (a function create_encoder() returning an Encoder or a torch.nn.Module), "
    "FILE.py::FACTORY, timm:NAME, timm:NAME@WEIGHTS_FILE, open_clip:ARCH/PRETRAINED, "
    "hf:MODEL_OR_DIR, or torchvision:NAME[@WEIGHTS]"
)


@dataclass(frozen=True)
class EncoderRef:
    """A parsed ``--encoder`` value. ``id`` names the encoder in test ids and the scorecard."""

    raw: str
    kind: str  # "file", "timm", "open_clip", "hf" or "torchvision"
    target: str  # file path, timm model name, open_clip architecture, HF model id/dir, torchvision name
    factory: str | None = None  # file encoders: the factory function's name
    weights: str | None = None  # timm: local file; open_clip: tag or path; torchvision: enum or file

    @property
    def id(self) -> str:
        if self.kind == "file":
            stem = Path(self.target).stem
            return stem if self.factory is None else f"{stem}-{self.factory}"
        if self.kind == "timm":
            return self.target
        if self.kind == "hf":  # the last part of an id or directory: test ids and file names stay plain
            return Path(self.target.rstrip("/\\")).name
        if self.kind == "torchvision":
            return self.target if self.weights is None else f"{self.target}-{_weights_label(self.weights)}"
        if self.kind != "open_clip":  # a kind a plugin registered
            return f"{self.kind}-{self.target}".replace("/", "-")
        pretrained = self.weights or "random"
        if "/" in pretrained or "\\" in pretrained or "." in Path(pretrained).name:
            pretrained = Path(pretrained).stem
        return f"{self.target}-{pretrained}"


def _weights_label(weights: str) -> str:
    """``IMAGENET1K_V2`` for an enum (``ResNet50_Weights.IMAGENET1K_V2`` too), the stem for a file."""
    if weights.endswith((".pt", ".pth", ".bin", ".safetensors")) or "/" in weights or "\\" in weights:
        return Path(weights).stem
    return weights.rsplit(".", 1)[-1]


def parse_encoder_ref(raw: str, *, rootdir: Path | None = None) -> EncoderRef:
    """Parse and cheaply validate one reference; files must exist, prefixes must be known."""
    text = raw.strip()
    if not text:
        raise EncoderLoadError(f"--encoder was given an empty value; expected {_FORMS}.")
    prefix, sep, rest = text.partition(":")
    if sep and prefix in PREFIXES:
        return _parse_hub_ref(raw, prefix, rest)
    path_text, has_factory, factory = text.partition("::")
    if sep and not path_text.endswith(".py") and len(prefix) > 1:
        from pytest_visprobe.encoders.kinds import ENCODER_KINDS

        if prefix in ENCODER_KINDS:  # a kind a plugin registered: its loader or hook parses the rest
            if not rest:
                raise EncoderLoadError(f"--encoder={raw}: nothing after '{prefix}:'; expected "
                                       f"{ENCODER_KINDS.get(prefix).description}.")
            return EncoderRef(raw=raw, kind=prefix, target=rest)
        guess = difflib.get_close_matches(prefix, ENCODER_KINDS.names(), n=1)
        hint = f" Did you mean {guess[0]}:{rest}?" if guess else ""
        raise EncoderLoadError(
            f"--encoder={raw}: unknown prefix {prefix!r}.{hint} Expected {_FORMS}."
        )
    path = Path(path_text)
    if not path.is_absolute() and rootdir is not None and not path.exists():
        path = rootdir / path
    if path.suffix != ".py":
        raise EncoderLoadError(f"--encoder={raw}: {path_text!r} is not a .py file. Expected {_FORMS}.")
    if not path.is_file():
        raise EncoderLoadError(
            f"--encoder={raw}: file not found ({path.resolve()}). Check the path, relative to "
            f"the directory you run pytest from, or use timm:NAME / open_clip:ARCH/PRETRAINED."
        )
    if has_factory and not factory:
        raise EncoderLoadError(f"--encoder={raw}: empty factory name after '::'.")
    return EncoderRef(raw=raw, kind="file", target=str(path), factory=factory or None)


def _parse_hub_ref(raw: str, prefix: str, rest: str) -> EncoderRef:
    if prefix == "hf":
        from pytest_visprobe.encoders.hf import parse_hf_ref

        return parse_hf_ref(raw, rest)
    if prefix == "torchvision":
        from pytest_visprobe.encoders.torchvision import parse_torchvision_ref

        return parse_torchvision_ref(raw, rest)
    if prefix == "timm":
        name, _, weights = rest.partition("@")
        if not name:
            raise EncoderLoadError(f"--encoder={raw}: missing model name, e.g. timm:resnet50.a1_in1k.")
        if weights and not Path(weights).is_file():
            raise EncoderLoadError(
                f"--encoder={raw}: weights file not found ({weights}). timm:NAME@FILE loads "
                f"NAME's architecture with weights from a local .safetensors/.pth/.bin file."
            )
        return EncoderRef(raw=raw, kind="timm", target=name, weights=weights or None)
    if rest.startswith("hf-hub:"):
        return EncoderRef(raw=raw, kind="open_clip", target=rest)
    arch, _, pretrained = rest.partition("/")
    if not arch:
        raise EncoderLoadError(f"--encoder={raw}: missing architecture, e.g. open_clip:RN50/openai.")
    if not pretrained:
        raise EncoderLoadError(
            f"--encoder={raw}: missing pretrained weights after '/', e.g. open_clip:{arch}/openai "
            f"or open_clip:{arch}//path/to/checkpoint.pt (a tag, or a local checkpoint path)."
        )
    looks_like_path = pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")) or "/" in pretrained
    if looks_like_path and not Path(pretrained).is_file():
        raise EncoderLoadError(f"--encoder={raw}: checkpoint file not found ({pretrained}).")
    return EncoderRef(raw=raw, kind="open_clip", target=arch, weights=pretrained)
