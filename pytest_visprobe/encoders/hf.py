"""``--encoder hf:MODEL_OR_DIR``: a Hugging Face ``transformers`` vision model as an Encoder.

Such models return a ``ModelOutput``, not a tensor, so wrapping them as a plain module fails;
here ``embed`` is the pooled output where the model has one (else the CLS token) and
``feature_map`` the patch tokens laid out as a grid (CLS, register and other prefix tokens
dropped). Preprocessing (mean, std, size, resample) comes from the model's image processor.
A pooler missing from the checkpoint (transformers would initialise it randomly) means the CLS
token; any other missing weight is an error, never a silently random part.
An image-text model (CLIP, SigLIP) keeps its image tower, with ``embed`` in the joint space
(CLIP's ``get_image_features``: the projected pooled output, as ``open_clip:`` encoders), and
gains ``encode_text`` from its text tower and tokenizer, for the zero-shot and retrieval probes.
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
    text_fn, projection = None, None
    if is_image_text(model):  # CLIP, SigLIP: the image tower, in the joint space, and the text tower
        text_fn = HFText(model, str(source) if local else ref.target, local)
        projection = getattr(model, "visual_projection", None)  # SigLIP has none: its pooled output is the embedding
        model = model.vision_model
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    if not getattr(processor, "do_normalize", True):
        mean = std = None
    encoder = _hf_encoder_class()(model, name=ref.id, input_size=processor_input_size(processor, ref), mean=mean,
                                  std=std, interpolation=_resample_name(getattr(processor, "resample", 2)),
                                  text_fn=text_fn, projection=projection)
    encoder.use_pooler = trained_pooler
    return encoder


def is_image_text(model: Any) -> bool:
    """A two-tower image-text model (CLIPModel, SiglipModel): image and text features in one space."""
    return all(callable(getattr(model, name, None)) for name in ("get_image_features", "get_text_features")) \
        and hasattr(model, "vision_model")


def _features(out: Any):
    """``get_*_features`` returns a tensor (transformers 4) or an output whose pooler is the projection (5)."""
    return out if hasattr(out, "ndim") else out.pooler_output


class HFText:
    """The text half of a transformers image-text model, called with a list of strings.

    A plain object, not a module, as for open_clip (loading.OpenClipText): the fingerprint keys
    the cached image features, so the text weights stay out of its state dict. The tokenizer is
    loaded on first use from the model's folder or hub id, so an image-only run never needs it.
    Texts are padded to the longest in the batch (SigLIP, trained on fixed-length text: to
    ``max_length`` 64, as its processor does).
    """

    def __init__(self, model: Any, source: str, local: bool) -> None:
        self.model = model.eval()
        self.source, self.local = source, local
        self.tokenizer = None

    def __call__(self, texts: list[str]):
        import torch

        if self.tokenizer is None:
            self.tokenizer = self._load_tokenizer()
        device = next(self.model.vision_model.parameters()).device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        siglip = "siglip" in str(getattr(self.model.config, "model_type", ""))
        padding = {"padding": "max_length", "max_length": 64} if siglip else {"padding": True}
        tokens = self.tokenizer(list(texts), truncation=True, return_tensors="pt", **padding).to(device)
        with torch.inference_mode():
            return _features(self.model.get_text_features(**{k: v for k, v in tokens.items()
                                                              if k in ("input_ids", "attention_mask")})).float()

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        from pytest_visprobe.errors import TextTowerUnavailable

        fix = ("Save it beside the model (AutoTokenizer.from_pretrained(NAME).save_pretrained(DIR)) or run "
               "once with network access.")
        try:
            with loading_transformers():
                tokenizer = AutoTokenizer.from_pretrained(self.source, local_files_only=self.local)
        except Exception as exc:
            raise TextTowerUnavailable(
                f"transformers could not load the tokenizer of {self.source!r} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:300]}). {fix}"
            ) from exc
        # transformers 5 builds a tokenizer with an empty vocabulary from config.json alone, which
        # maps every word to the unknown token: refuse it rather than embed garbage
        text_config = getattr(self.model.config, "text_config", None)
        vocab = int(getattr(text_config, "vocab_size", 0) or 0)
        if len(tokenizer) < vocab // 2:
            raise TextTowerUnavailable(
                f"transformers could not load the tokenizer of {self.source!r}: it found {len(tokenizer)} "
                f"tokens for a text tower of {vocab} (the vocabulary files are missing). {fix}")
        return tokenizer


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

        def __init__(self, module, *, projection=None, **kwargs):
            super().__init__(module, **kwargs)
            # an image-text model's image projection (CLIP): embed is then in the joint space; a
            # submodule, so its weights are part of the fingerprint
            self.projection = projection

        @property
        def has_feature_map(self) -> bool:
            return True

        def config(self):
            return {**super().config(), "use_pooler": self.use_pooler, "projected": self.projection is not None}

        def _hidden(self, images):
            return self.module(pixel_values=self.preprocess(images))

        def embed(self, images):
            out = self._hidden(images)
            pooled = getattr(out, "pooler_output", None) if self.use_pooler else None
            if pooled is None or pooled.ndim != 2:
                pooled = out.last_hidden_state[:, 0]
            return pooled if self.projection is None else self.projection(pooled)

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
