"""``--encoder hf:MODEL_OR_DIR``: a Hugging Face ``transformers`` vision model as an Encoder.

Such models return a ``ModelOutput``, not a tensor, so wrapping them as a plain module fails;
here ``embed`` is the pooled output where the model has one (else the CLS token) and
``feature_map`` the patch tokens laid out as a grid (CLS, register and other prefix tokens
dropped). Preprocessing (mean, std, size, resample) comes from the model's image processor.
A pooler missing from the checkpoint (transformers would initialise it randomly) means the CLS
token; any other missing weight is an error, never a silently random part.
transformers is imported only when such an encoder is loaded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pytest_visprobe.encoders.refs import EncoderRef
from pytest_visprobe.encoders.transformers_loading import loading_transformers
from pytest_visprobe.errors import EncoderLoadError

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes the processors store


def parse_hf_ref(raw: str, rest: str) -> EncoderRef:
    """``hf:org/name`` (hub id) or ``hf:./dir`` (a folder written by ``save_pretrained``)."""
    if not rest.strip():
        raise EncoderLoadError(f"--encoder={raw}: missing model, e.g. hf:facebook/dinov2-small or hf:path/to/dir.")
    looks_local = rest.startswith((".", "/", "~")) or rest.count("/") > 1 or "\\" in rest
    if looks_local and not Path(rest).expanduser().is_dir():  # a hub id is ORG/NAME
        raise EncoderLoadError(
            f"--encoder={raw}: folder not found ({Path(rest).expanduser().resolve()}). hf:DIR needs a "
            f"folder written by model.save_pretrained(DIR) and processor.save_pretrained(DIR)."
        )
    return EncoderRef(raw=raw, kind="hf", target=rest)


def load_hf(ref: EncoderRef):
    """AutoModel + AutoImageProcessor from a local folder (offline) or the hub, as an HFEncoder."""
    from transformers import AutoImageProcessor, AutoModel

    source = Path(ref.target).expanduser()
    local = source.is_dir()
    try:
        with loading_transformers():
            model, info = AutoModel.from_pretrained(str(source) if local else ref.target,
                                                    local_files_only=local, output_loading_info=True)
            processor = AutoImageProcessor.from_pretrained(str(source) if local else ref.target,
                                                           local_files_only=local)
    except Exception as exc:
        raise EncoderLoadError(
            f"--encoder={ref.raw}: transformers could not load {ref.target!r} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]}). {_fix(ref, local)}"
        ) from exc
    # transformers fills weights missing from the checkpoint with random ones and only logs it; a
    # classification checkpoint read as a bare model lacks the pooler: fall back to the CLS token
    missing = sorted(info.get("missing_keys", ()))
    trained_pooler = not any(k.startswith("pooler.") or ".pooler." in k for k in missing)
    missing = [k for k in missing if not (k.startswith("pooler.") or ".pooler." in k)]
    if missing or info.get("mismatched_keys"):
        raise EncoderLoadError(
            f"--encoder={ref.raw}: {ref.target} does not hold all of {type(model).__name__}'s weights "
            f"(missing: {', '.join(missing[:5]) or 'none'}; shape mismatches: "
            f"{len(info.get('mismatched_keys') or ())}); transformers would fill them with random values. "
            f"Save the model with save_pretrained from the same architecture."
        )
    model = getattr(model, "vision_model", model)  # a CLIP/SigLIP checkpoint: keep the image tower
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if not getattr(processor, "do_normalize", True):
        mean = std = None
    encoder = _hf_encoder_class()(model, name=ref.id, input_size=processor_input_size(processor, ref), mean=mean,
                                  std=std, interpolation=_resample_name(getattr(processor, "resample", 2)))
    encoder.use_pooler = trained_pooler
    return encoder


def _fix(ref: EncoderRef, local: bool) -> str:
    if local:
        return (f"Check that {ref.target} holds both the model (config.json + weights) and its image "
                f"processor (preprocessor_config.json), written by save_pretrained.")
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE)
    why = "HF_HUB_OFFLINE is set, so nothing is downloaded" if offline else "it may need a download"
    return (f"The model is not in the local Hugging Face cache and {why}. Either run once with network "
            f"access, or save it on a machine that has it (model.save_pretrained(DIR); "
            f"processor.save_pretrained(DIR)) and pass --encoder=hf:DIR.")


def processor_input_size(processor: Any, ref: EncoderRef) -> tuple[int, int]:
    """The processor's crop size if it crops, else its resize target (the whole image is resized to it)."""
    candidates = [getattr(processor, "crop_size", None)] if getattr(processor, "do_center_crop", False) else []
    candidates.append(getattr(processor, "size", None))
    for size in candidates:
        h, w, edge = (_get(size, k) for k in ("height", "width", "shortest_edge"))
        if h and w:
            return int(h), int(w)
        if edge:
            return int(edge), int(edge)
    raise EncoderLoadError(f"--encoder={ref.raw}: cannot tell the input size from its image processor "
                           f"({type(processor).__name__}); give its preprocessor_config.json a size.")


def _get(size: Any, key: str) -> Any:
    if size is None or isinstance(size, int):
        return size if key == "shortest_edge" else None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _resample_name(resample: Any) -> str:
    value = getattr(resample, "value", resample)
    return _RESAMPLE.get(value, value if value in ("nearest", "bilinear", "bicubic") else "bilinear")


@functools.cache
def _hf_encoder_class():
    from pytest_visprobe.encoders.base import ModuleEncoder

    class HFEncoder(ModuleEncoder):
        """A transformers vision model: pooled output (else CLS) as embedding, patch tokens as map."""

        use_pooler = True  # False when the checkpoint has no trained pooler (the CLS token instead)

        @property
        def has_feature_map(self) -> bool:
            return True

        def config(self):
            return {**super().config(), "use_pooler": self.use_pooler}

        def _hidden(self, images):
            return self.module(pixel_values=self.preprocess(images))

        def embed(self, images):
            out = self._hidden(images)
            pooled = getattr(out, "pooler_output", None) if self.use_pooler else None
            if pooled is not None and pooled.ndim == 2:
                return pooled
            return out.last_hidden_state[:, 0]

        def feature_map(self, images):
            from pytest_visprobe.encoders.base import tokens_to_grid

            tokens = self._hidden(images).last_hidden_state
            if tokens.ndim == 4:  # convolutional models (ConvNeXt, ResNet) already give a map
                return tokens
            size = self.input_size or tuple(images.shape[-2:])
            return tokens_to_grid(tokens, self.num_prefix_tokens(tokens.shape[1], size), size)

        def num_prefix_tokens(self, tokens: int, size) -> int:
            """Tokens before the patches: total minus (H/p)·(W/p); CLS + registers if no patch size."""
            config = self.module.config
            patch = getattr(config, "patch_size", None)
            if isinstance(patch, int) and patch > 0:
                return tokens - (int(size[0]) // patch) * (int(size[1]) // patch)
            return 1 + int(getattr(config, "num_register_tokens", 0) or 0)

    return HFEncoder


def __getattr__(name: str):  # HFEncoder subclasses a torch module: built on first use, not at import
    if name == "HFEncoder":
        return _hf_encoder_class()
    raise AttributeError(name)
