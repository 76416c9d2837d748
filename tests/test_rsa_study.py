"""RSA as Devillers et al.: the class-name-token text side, the study's names, the resampled RDMs.

The text models are tiny randomly initialised BERT and GPT-2 built from a config and saved to a
temporary directory (no download); every embedding is checked against a plain transformers
forward pass indexed by hand.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import pearsonr

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.encoders import text as T
from pytest_visprobe.kernels.rsa import (
    WelchResampler,
    correlation_matrix,
    euclidean_rdm,
    welch_rdm,
)
from pytest_visprobe.probes.similarity import (
    SimilarityConfig,
    study_names,
    within_class_intervals,
)
from pytest_visprobe.report.statistics import percentile_interval
from pytest_visprobe.runner.options import ENCODER_OPTION

transformers = pytest.importorskip("transformers")

BERT_WORDS = ["a", "photo", "of", "ten", "##ch", "tin", "##ca", "gold", "##fish", "great", "white", "shark", "tiger",
              "axe", ",", "."]


def tiny_bert(path: Path) -> Path:
    """A 2-layer BERT whose word-piece vocabulary splits "tench" into "ten ##ch"."""
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS])}
    tokenizer = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=True)
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


def tiny_gpt2(path: Path) -> Path:
    """A 2-layer GPT-2 with a byte-level BPE trained on the study's captions of the fixture's classes.

    As in GPT-2's own vocabulary, a word after a space starts with a "Ġx" token, so the study's
    fixed index 4 is the name's first token; "axolotl" falls into several pieces.
    """
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    captions = ["a photo of a tench, tinca tinca.", "a photo of a goldfish, carassius auratus.",
                "a photo of a great white shark, white shark.", "a photo of a tiger shark, galeocerdo cuvieri."]
    bpe.train_from_iterator(captions * 3,
                            vocab_size=300, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tokenizer = transformers.GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                               bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(1)
    eos = tokenizer.eos_token_id
    model = transformers.GPT2Model(transformers.GPT2Config(
        vocab_size=len(tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=64, bos_token_id=eos, eos_token_id=eos))
    tokenizer.save_pretrained(path)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-models")
    return {"bert": tiny_bert(root / "bert"), "gpt2": tiny_gpt2(root / "gpt2")}


def hidden_by_hand(directory: Path, text: str) -> tuple[list[str], np.ndarray]:
    """The tokens of one text alone and the model's last hidden layer at each (no batch, no padding)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModel.from_pretrained(directory).eval()
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**ids).last_hidden_state[0].numpy()
    return tokenizer.convert_ids_to_tokens(ids["input_ids"][0].tolist()), hidden


def test_label_tokens_overlap_the_name_and_skip_special_tokens():
    # BERT: [CLS] a photo of a ten ##ch . [SEP]; special tokens have empty offsets
    bert = [(0, 0), (0, 1), (2, 7), (8, 10), (11, 12), (13, 16), (16, 18), (18, 19), (0, 0)]
    assert T.label_tokens(bert, (13, 18)) == [5, 6]
    # GPT-2's byte-level " tench" carries the space before the name: it counts, " a" does not
    gpt2 = [(0, 1), (1, 7), (7, 10), (10, 12), (12, 18), (18, 19)]
    assert T.label_tokens(gpt2, (13, 18)) == [4]
    assert T.label_tokens(gpt2, (13, 13)) == []


def test_bert_reads_the_class_name_tokens_of_the_caption(models):
    spec = f"hf-token:{models['bert']}"
    names = ["tench", "goldfish", "great white shark"]  # one, two and three word pieces
    prompt = "a photo of a {label}."
    first, mean, last = (T.embed_labels(names, spec, prompt, normalize=False, token=t)
                         for t in ("first", "mean", "last"))
    # "a photo of a tench." -> [CLS] a photo of a ten ##ch . [SEP]: the study's index 3 + 1 + 1 = 5
    tokens, hidden = hidden_by_hand(models["bert"], "a photo of a tench.")
    assert tokens[5:7] == ["ten", "##ch"]
    assert np.allclose(first[0], hidden[5], atol=1e-5)
    assert np.allclose(mean[0], hidden[5:7].mean(axis=0), atol=1e-5)
    assert np.allclose(last[0], hidden[6], atol=1e-5)
    tokens, hidden = hidden_by_hand(models["bert"], "a photo of a great white shark.")
    assert tokens[5:8] == ["great", "white", "shark"]
    assert np.allclose(first[2], hidden[5], atol=1e-5) and np.allclose(last[2], hidden[7], atol=1e-5)
    assert np.allclose(mean[2], hidden[5:8].mean(axis=0), atol=1e-5)
    # not normalised: the rows keep the model's own scale
    assert not np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-3)
    unit = T.embed_labels(names, spec, prompt, token="first")
    assert np.allclose(unit, first / np.linalg.norm(first, axis=1, keepdims=True), atol=1e-6)
    assert T.text_definition(spec, token="mean").endswith("(mean token of the name)")


def test_gpt2_reads_the_class_name_tokens_of_the_caption(models):
    spec = f"hf-token:{models['gpt2']}"
    names = ["tench, tinca tinca", "axolotl"]  # the batch pads the shorter caption on the right
    prompt = "a photo of a {label}."
    first, mean, last = (T.embed_labels(names, spec, prompt, normalize=False, token=t)
                         for t in ("first", "mean", "last"))
    tokens, hidden = hidden_by_hand(models["gpt2"], "a photo of a tench, tinca tinca.")
    assert tokens[:4] == ["a", "Ġphoto", "Ġof", "Ġa"] and tokens[4].startswith("Ġt")  # the study's index 4
    end = tokens.index(".")
    assert np.allclose(first[0], hidden[4], atol=1e-5)
    assert np.allclose(mean[0], hidden[4:end].mean(axis=0), atol=1e-5)
    assert np.allclose(last[0], hidden[end - 1], atol=1e-5)
    tokens, hidden = hidden_by_hand(models["gpt2"], "a photo of a axolotl.")
    end = tokens.index(".")
    assert end - 4 >= 4, tokens  # "axolotl" is several byte-level pieces
    assert "".join(tokens[4:end]) == "Ġaxolotl"
    assert np.allclose(first[1], hidden[4], atol=1e-5)
    assert np.allclose(mean[1], hidden[4:end].mean(axis=0), atol=1e-5)
    assert np.allclose(last[1], hidden[end - 1], atol=1e-5)


def test_hf_token_errors_say_what_to_do(models, tmp_path, monkeypatch):
    with pytest.raises(T.TextModelUnavailable, match="not a directory"):
        T.get_text_embedder(f"hf-token:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(T.TextModelUnavailable, match=r"could not load.*Fix:.*save_pretrained"):
        T.get_text_embedder(f"hf-token:{tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="hf-token:MODEL"):
        T.get_text_embedder("hf-token")
    with pytest.raises(ValueError, match="token must be one of first, mean, last"):
        T.embed_labels(["tench"], f"hf-token:{models['bert']}", token="middle")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(T.TextModelUnavailable, match="pip install transformers"):
        T.get_text_embedder(f"hf-token:{tmp_path / 'other'}")


def test_study_names_are_the_first_two_synonyms_lower_cased(tmp_path):
    folder = tmp_path / "imagenet" / "val"
    for c, wnid in enumerate(("n01440764", "n01443537", "n09999999")):
        (folder / wnid).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (60 * c, 10 * i, 0)).save(folder / wnid / f"ILSVRC2012_val_{c}{i}.JPEG")
    (tmp_path / "imagenet" / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus, gold fish\n")
    dataset = load_dataset("imagenet_val", root=tmp_path, image_size=8)
    assert dataset.class_names == ["tench", "goldfish", "n09999999"]
    assert dataset.class_synonyms == [["tench", "Tinca tinca"], ["goldfish", "Carassius auratus", "gold fish"],
                                      ["n09999999"]]
    assert study_names(dataset) == ["tench, tinca tinca", "goldfish, carassius auratus", "n09999999"]


def test_the_resampled_rdm_equals_welch_rdm_of_the_drawn_rows():
    rng = np.random.default_rng(0)
    y = rng.permutation(np.repeat(np.arange(7), [3, 5, 8, 4, 6, 9, 5]))
    x = (rng.standard_normal((y.size, 11)) + 0.5).astype(np.float32)
    x[3] = 0.0  # an all-zero row stays zero in both
    resampler = WelchResampler(x, y, 7, block=10)  # several blocks, classes cut across them
    rows = np.concatenate([rng.choice(np.flatnonzero(y == c), (y == c).sum()) for c in range(7)])
    got = resampler.rdm(np.bincount(rows, minlength=y.size))
    assert np.allclose(got, welch_rdm(x[rows], y[rows], n_classes=7), rtol=1e-12, atol=1e-12)
    assert np.allclose(resampler.rdm(np.ones(y.size)), welch_rdm(x, y, n_classes=7), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"classes \[2\] have no samples"):
        resampler.rdm(np.where(y == 2, 0, 1))


def test_intervals_equal_the_row_copying_bootstrap():
    """The vectorised bootstrap replays the former per-draw loop (rows copied, RDMs recomputed)."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(6), 7)
    latent = rng.standard_normal((6, 3))
    features = {name: (latent[y] @ rng.standard_normal((3, 9)) + rng.standard_normal((y.size, 9))).astype(np.float32)
                for name in ("a", "b")}
    extra = {"text": euclidean_rdm(rng.standard_normal((6, 4)))}
    pick = lambda c: c[[0, 1], [2, 2]]
    got = within_class_intervals(features, y, 6, extra, pick, rng=np.random.default_rng(5), resamples=50)

    draws, replay = [], np.random.default_rng(5)
    members = [np.flatnonzero(y == c) for c in range(6)]
    for _ in range(50):
        rows = np.concatenate([replay.choice(m, m.size) for m in members])
        rdms = {name: welch_rdm(x[rows], y[rows], n_classes=6) for name, x in features.items()}
        draws.append(pick(correlation_matrix(rdms | extra)[1]))
    want = np.stack(percentile_interval(draws, 0.95, axis=0), axis=-1)
    assert got.shape == (2, 2) and np.allclose(got, want, rtol=1e-10, atol=1e-12)


def test_settings_name_their_text_models():
    with pytest.raises(ValueError, match="lower-case word"):
        SimilarityConfig(text_models={"BERT": "hf-token:bert-base-uncased"})
    with pytest.raises(ValueError, match="needs a spec"):
        SimilarityConfig(text_models={"bert": " "})


# ------------------------------------------------------------------------ paper profile, end to end

#: pooled pixels plus a toy text tower (letter counts), standing in for an image-text encoder
WITH_TEXT = """
    import torch
    from torch import nn
    from pytest_visprobe import Encoder

    class Letters(Encoder):
        input_size = None

        def __init__(self):
            super().__init__()
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(5), nn.Flatten())

        def embed(self, images):
            return self.pool(images)

        def encode_text(self, texts):
            return torch.tensor([[t.count(c) + 0.1 * i for i, c in enumerate("aeionrstuh")] for t in texts])

    def create_encoder():
        return Letters()
"""

SYNSETS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
           "n01484850": "great white shark, white shark, man-eater", "n01491361": "tiger shark, Galeocerdo cuvieri"}


def _imagenet_fixture(root: Path) -> None:
    folder = root / "imagenet" / "val"
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(SYNSETS):
        (folder / wnid).mkdir(parents=True)
        for i in range(5):
            pixels = np.clip(rng.normal(60 * c, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / wnid / f"ILSVRC2012_val_{c}{i:04d}.JPEG")
    (root / "imagenet" / "LOC_synset_mapping.txt").write_text("".join(f"{w} {s}\n" for w, s in SYNSETS.items()))


def test_paper_profile_rsa_on_imagenet_val_with_the_study_text_side(suite, models, tmp_path):
    _imagenet_fixture(tmp_path / "data")
    suite.encoder("letters.py", WITH_TEXT)
    suite.pytester.path.joinpath("study.toml").write_text(textwrap.dedent(f"""
        extends = "paper"
        [probes.similarity]
        text_models = {{ bert = "hf-token:{models['bert']}", gpt2 = "hf-token:{models['gpt2']}", clip = "encoder" }}
    """))
    result = suite.run(f"{ENCODER_OPTION}=letters.py", f"{ENCODER_OPTION}=pooled.py", "--visprobe-profile=study.toml",
                       f"--visprobe-data-root={tmp_path / 'data'}", "suites/test_similarity.py", "-k", "similarity_to or similarity_between",
                       limit=None)
    result.assert_outcomes(passed=2)
    records = {(r["encoder"], r["metric"]): r for r in suite.scorecard()["records"] if r["probe"] == "similarity"}
    assert sorted(records) == [("letters", "rsa_language_bert"), ("letters", "rsa_language_clip"),
                               ("letters", "rsa_language_gpt2"), ("pooled", "rsa_language_bert"),
                               ("pooled", "rsa_language_gpt2"), ("pooled", "rsa_reference")]
    assert {r["dataset"] for r in records.values()} == {"imagenet_val"}

    # Independently: every val image (both splits), the study's captions, transformers by hand.
    data = load_dataset("imagenet_val", root=tmp_path / "data", image_size=256)
    images, labels = [], []
    for split in ("test", "train"):
        part = data.split(split)
        images.append(torch.from_numpy(part.images.get(range(len(part)))).permute(0, 3, 1, 2).float() / 255)
        labels.append(part.labels)
    images, labels = torch.cat(images), np.concatenate(labels)
    assert len(labels) == 20
    pooled = torch.nn.functional.adaptive_avg_pool2d(images, 6).flatten(1).numpy()
    letters = torch.nn.functional.adaptive_avg_pool2d(images, 5).flatten(1).numpy()
    captions = [f"a photo of a {', '.join(s.split(', ')[:2]).lower()}." for s in SYNSETS.values()]
    assert captions[2] == "a photo of a great white shark, white shark."
    first_token = {"bert": 5, "gpt2": 4}  # the study's fixed positions: "a photo of a" + [CLS] for BERT
    text = {}
    for name in ("bert", "gpt2"):
        read = [hidden_by_hand(models[name], c) for c in captions]
        pieces = [tokens[first_token[name]].lstrip("Ġ") for tokens, _ in read]  # the first piece of each name
        assert all(p and word.startswith(p) for p, word in zip(pieces, ["tench", "goldfish", "great", "tiger"])), pieces
        text[name] = np.stack([hidden[first_token[name]] for _, hidden in read])
    text["clip"] = np.array([[c.count(ch) + 0.1 * i for i, ch in enumerate("aeionrstuh")] for c in captions])
    iu = np.triu_indices(4, 1)

    def r(image_features, text_embedding):
        return pearsonr(welch_rdm(image_features, labels, 4)[iu], euclidean_rdm(text_embedding)[iu])[0]

    for encoder, features in (("letters", letters), ("pooled", pooled)):
        for name in ("bert", "gpt2", "clip"):
            if (encoder, f"rsa_language_{name}") not in records:
                continue
            record = records[(encoder, f"rsa_language_{name}")]
            assert record["value"] == pytest.approx(r(features, text[name]), abs=1e-5), (encoder, name)
            assert record["interval"]["low"] <= record["value"] <= record["interval"]["high"]
            details = record["details"]
            assert details["split"] == "all" and details["n_images"] == 20 and details["class_names"] == "study"
            assert details["prompt"] == "a photo of a {label}."
            assert details["names"] == ["letters", "pooled", "text:bert", "text:gpt2", "text:letters"]
            assert "not normalised" in details["text_definition"]
    bert = records[("pooled", "rsa_language_bert")]["details"]
    assert bert["text_model"] == f"hf-token:{models['bert']}"
    assert bert["text_definition"] == (f"{models['bert']}: last hidden state at the class name's token(s) of the "
                                       "prompt (first token of the name), not normalised")
    clip = records[("letters", "rsa_language_clip")]["details"]
    assert clip["text_model"] == "encoder" and clip["text_definition"].startswith("letters's own encode_text")
