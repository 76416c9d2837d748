"""``--encoder`` kinds: the prefixes a reference may start with (``timm:``, ``open_clip:``, ...).

A plugin adds a kind by registering its name with a one-line description and either a loader
``load(ref) -> Encoder | nn.Module`` or ``None`` when its ``pytest_visprobe_load_encoder`` hook
loads it. File paths (``model.py``) need no prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pytest_visprobe.registry import Registry


@dataclass(frozen=True)
class EncoderKind:
    description: str  # the form, for --help, --visprobe-list and errors
    load: Callable[[Any], Any] | str | None = None  # "module:function", a function, or None (a hook loads it)


class EncoderKinds(Registry[EncoderKind]):
    def register(self, name: str, entry: EncoderKind | str, *, replace: bool = False) -> None:  # type: ignore[override]
        """``entry`` may be just a description string (a hook loads the kind)."""
        super().register(name, EncoderKind(entry) if isinstance(entry, str) else entry, replace=replace)


ENCODER_KINDS = EncoderKinds("encoder kind", hint="Register one in a pytest_visprobe_register hook.")
ENCODER_KINDS.register("timm", EncoderKind("timm:NAME or timm:NAME@WEIGHTS_FILE -- a timm model, hub or local weights",
                                           "pytest_visprobe.encoders.loading:_load_timm"))
ENCODER_KINDS.register("open_clip", EncoderKind("open_clip:ARCH/PRETRAINED -- an open_clip image tower (PRETRAINED: a tag or a local checkpoint)",
                                                "pytest_visprobe.encoders.loading:_load_open_clip"))
ENCODER_KINDS.register("hf", EncoderKind("hf:MODEL_OR_DIR -- a transformers vision model (AutoModel + AutoImageProcessor)",
                                         "pytest_visprobe.encoders.loading:_load_hf"))
ENCODER_KINDS.register("torchvision", EncoderKind("torchvision:NAME[@WEIGHTS] -- a torchvision classification model "
                                                  "(WEIGHTS: an enum member or a local state-dict file)",
                                                  "pytest_visprobe.encoders.loading:_load_torchvision"))


def encoder_kind(encoder: Any) -> str | None:
    """The registered kind an encoder was loaded as (``open_clip`` for ``open_clip:ViT-B-32/openai``);
    a random-init control has its source's kind; ``None`` for files and encoders built in code."""
    ref = str(getattr(encoder, "source_ref", None) or getattr(encoder, "ref", None) or "")
    kind, sep, _ = ref.partition(":")
    return kind if sep and kind in ENCODER_KINDS else None
