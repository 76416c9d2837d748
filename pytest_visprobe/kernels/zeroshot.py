"""Zero-shot classification and image-text retrieval on joint image-text embeddings (CLIP).

Pure NumPy on features already extracted: the probes embed images and text, these functions
score them. Conventions follow CLIP and CLIP_benchmark: every embedding is L2-normalised and
compared by dot product; a class's text embedding is the re-normalised mean of its prompts'
normalised embeddings (the prompt ensemble); ties in a ranking go to the lower index.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

_EPS = 1e-12


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def class_text_embeddings(encode: Callable[[list[str]], np.ndarray], class_names: Sequence[str],
                          templates: Sequence[str | Callable[[str], str]]) -> np.ndarray:
    """``[K, D]``: per class, every template filled with its name, embedded, normalised,
    averaged and normalised again. Templates are ``"...{c}..."`` strings or callables of the name."""
    if not templates:
        raise ValueError("no prompt templates")
    prompts = [fill(t, name) for name in class_names for t in templates]
    emb = l2_normalise(np.asarray(encode(prompts), dtype=np.float64))
    if emb.shape[0] != len(prompts):
        raise ValueError(f"the text tower returned {emb.shape[0]} rows for {len(prompts)} prompts")
    return l2_normalise(emb.reshape(len(class_names), len(templates), -1).mean(axis=1))


def fill(template: str | Callable[[str], str], name: str) -> str:
    return template(name) if callable(template) else template.replace("{c}", name)


def zeroshot_logits(images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``[N, K]`` cosine similarities of normalised image and class embeddings."""
    return l2_normalise(images) @ l2_normalise(classes).T


def topk_hits(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """bool ``[N]``: is ``targets[i]`` among the ``k`` highest scores of row ``i``?"""
    return target_ranks(scores, targets) < k


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of ``targets[i]`` in row ``i``: entries scoring higher, plus equal ones at
    lower indices."""
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.arange(scores.shape[0])
    own = scores[rows, targets][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    return (scores > own).sum(axis=1) + ((scores == own) & (cols < targets[:, None])).sum(axis=1)


def retrieval_hits(images: np.ndarray, texts: np.ndarray, text_image: np.ndarray, ks: Sequence[int],
                   *, chunk: int = 512) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Recall@k hits both ways on normalised embeddings; ``text_image[t]`` is caption t's image.

    Image → text, bool ``[N]`` per k: one of the image's captions is among its k nearest texts.
    Text → image, bool ``[T]`` per k: the caption's image is among its k nearest images.
    Rows are processed in chunks, so COCO's 5,000 × 25,000 scores are never held at once.
    """
    images, texts = l2_normalise(images), l2_normalise(texts)
    text_image = np.asarray(text_image, dtype=np.int64)
    n, t = images.shape[0], texts.shape[0]
    i2t = {k: np.zeros(n, dtype=bool) for k in ks}
    t2i = {k: np.zeros(t, dtype=bool) for k in ks}
    cols = np.arange(t)[None, :]
    for start in range(0, n, chunk):
        scores = images[start:start + chunk] @ texts.T  # [c, T]
        rows = np.arange(start, start + scores.shape[0])
        # an image's best-ranked caption is its highest-scoring one (the first among equals)
        own = np.where(text_image[None, :] == rows[:, None], scores, -np.inf)
        best = own.argmax(axis=1)
        top = own[np.arange(len(rows)), best][:, None]
        rank = (scores > top).sum(axis=1) + ((scores == top) & (cols < best[:, None])).sum(axis=1)
        rank = np.where(np.isfinite(top[:, 0]), rank, t)  # an image without captions never hits
        for k in ks:
            i2t[k][rows] = rank < k
    for start in range(0, t, chunk):
        rank = target_ranks(texts[start:start + chunk] @ images.T, text_image[start:start + chunk])
        for k in ks:
            t2i[k][start:start + rank.shape[0]] = rank < k
    return i2t, t2i


def image_to_text_chance(captions_per_image: np.ndarray, n_texts: int, k: int) -> float:
    """Expected recall@k of a random ranking: 1 − P(none of an image's c captions in the top k)."""
    c = np.asarray(captions_per_image, dtype=np.int64)
    misses = np.ones(c.shape[0])
    for j in range(min(k, n_texts)):
        misses *= np.clip((n_texts - c - j) / (n_texts - j), 0.0, 1.0)
    return float(np.mean(1.0 - misses))
