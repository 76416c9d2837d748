"""Zero-shot classification and image-text retrieval: kernels against plain loops and scikit-learn,
the probes on encoders whose right answers are built in, and a random-weight open_clip model
(its bundled tokenizer, offline) against open_clip's own encode_image / encode_text."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from pytest_visprobe import Encoder
from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split
from pytest_visprobe.kernels.zeroshot import (class_text_embeddings, image_to_text_chance, retrieval_hits,
                                              topk_hits, zeroshot_logits)
from pytest_visprobe.probes.spec import get_probe
from pytest_visprobe.runner.context import ProbeContext

D = 8


def text_vector(text: str) -> np.ndarray:
    """A fixed random vector per string (a stand-in text tower)."""
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(D)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- kernels


def test_class_embeddings_average_normalised_prompts_then_renormalise():
    names, templates = ["cat", "dog", "axolotl"], ["a photo of a {c}.", lambda c: f"art of the {c}."]
    got = class_text_embeddings(lambda texts: np.stack([text_vector(t) for t in texts]), names, templates)
    for row, name in zip(got, names):
        prompts = [f"a photo of a {name}.", f"art of the {name}."]
        mean = sum(unit(text_vector(p)) for p in prompts) / 2
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), rtol=1e-12)


def test_topk_hits_match_scikit_learn_top_k_accuracy():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal((200, 12)), rng.integers(0, 12, 200)
    for k in (1, 5):
        assert topk_hits(scores, labels, k).mean() == pytest.approx(
            top_k_accuracy_score(labels, scores, k=k, labels=np.arange(12)))


def test_zeroshot_logits_are_cosines():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, D)) * 3, rng.standard_normal((4, D))
    expected = [[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a]
    np.testing.assert_allclose(zeroshot_logits(a, b), expected, rtol=1e-12)


def loop_recall(images, texts, text_image, k):
    """Recall@k by plain loops over cosine similarities, both ways."""
    sim = [[float(unit(i) @ unit(t)) for t in texts] for i in images]
    i2t = []
    for i, row in enumerate(sim):
        nearest = sorted(range(len(texts)), key=lambda t: -row[t])[:k]
        i2t.append(any(text_image[t] == i for t in nearest))
    t2i = []
    for t in range(len(texts)):
        nearest = sorted(range(len(images)), key=lambda i: -sim[i][t])[:k]
        t2i.append(text_image[t] in nearest)
    return np.array(i2t), np.array(t2i)


def test_retrieval_hits_match_plain_loops_with_several_captions_per_image():
    rng = np.random.default_rng(2)
    images = rng.standard_normal((30, D))
    text_image = np.concatenate([np.repeat(np.arange(30), 2), rng.integers(0, 30, 25)])  # 2 to 5 each
    texts = images[text_image] + 1.2 * rng.standard_normal((len(text_image), D))  # noisy captions
    i2t, t2i = retrieval_hits(images, texts, text_image, (1, 5, 10), chunk=7)
    for k in (1, 5, 10):
        ref_i2t, ref_t2i = loop_recall(images, texts, text_image, k)
        np.testing.assert_array_equal(i2t[k], ref_i2t)
        np.testing.assert_array_equal(t2i[k], ref_t2i)
    assert 0 < i2t[1].mean() < 1 and 0 < t2i[1].mean() < 1  # neither trivial nor hopeless


def test_retrieval_of_exact_captions_is_perfect():
    images = np.eye(6)
    i2t, t2i = retrieval_hits(images, images[[0, 1, 2, 3, 4, 5, 0]], np.array([0, 1, 2, 3, 4, 5, 0]), (1,))
    assert i2t[1].all() and t2i[1].all()


def test_image_to_text_chance_is_the_hypergeometric_miss_probability():
    counts, n_texts = np.array([1, 5, 3]), 40
    for k in (1, 5, 10):
        expected = np.mean([1 - math.comb(n_texts - c, k) / math.comb(n_texts, k) for c in counts])
        assert image_to_text_chance(counts, n_texts, k) == pytest.approx(expected)


# --------------------------------------------------------------------------- the probes


class TableEncoder(Encoder):
    """Image i (its index written in pixel [0, 0, red]) embeds to ``table[i]``; texts to ``text_vector``."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)

    def embed(self, images):
        return self.table[torch.round(images[:, 0, 0, 0] * 255).long()]

    def encode_text(self, texts):
        return torch.as_tensor(np.stack([text_vector(t) for t in texts]), dtype=torch.float32)


class ImageOnly(Encoder):
    def embed(self, images):
        return images.mean(dim=(2, 3))


class Recorder:
    """The two services the probes use: features by a plain forward pass, and fits computed once."""

    def features(self, encoder, dataset, split, view):
        images = dataset.split(split).images.get(range(len(dataset.split(split))))
        with torch.no_grad():
            return encoder.embed(torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255)

    def shared(self, key, compute):
        return compute()


def indexed_images(n):
    images = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    return ArrayImages(images)


def context(probe, encoder, dataset, **settings):
    spec = get_probe(probe)
    return ProbeContext(recorder=Recorder(), probe=probe, encoder=encoder, dataset=dataset,
                        settings=spec.settings(**settings), seed=0, resamples=200, device=torch.device("cpu"))


def test_zeroshot_names_images_built_near_their_class_prompts():
    names = ["apple", "boat", "cloud", "dune", "eel", "fern", "gull"]
    templates = ("a photo of a {c}.", "a drawing of the {c}.")
    classes = class_text_embeddings(lambda t: np.stack([text_vector(x) for x in t]), names, templates)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, len(names), 60)
    # built to land in class `truth`: its class embedding plus a little noise; 9 images point elsewhere
    truth = labels.copy()
    truth[:9] = (labels[:9] + 1 + rng.integers(0, 5, 9)) % len(names)
    table = classes[truth] * 5 + 0.01 * rng.standard_normal((60, D))
    dataset = Dataset("toy", {"test": Split(indexed_images(60), labels=labels)}, class_names=names,
                      targets=frozenset({"label"}))
    metrics = {m.metric: m for m in get_probe("zeroshot").run(context("zeroshot", TableEncoder(table), dataset,
                                                                      templates=templates))}
    top1 = metrics["top1"]
    np.testing.assert_array_equal(top1.per_sample, (truth == labels).astype(np.uint8))
    assert top1.value == pytest.approx(51 / 60)
    assert top1.chance == pytest.approx(np.bincount(labels).max() / 60)
    # top-5 by hand: rank of the label among the cosines of the image with every class
    cos = unit(table) @ classes.T
    ranks = [(cos[i] > cos[i, labels[i]]).sum() for i in range(60)]
    assert metrics["top5"].value == pytest.approx(np.mean(np.array(ranks) < 5))
    assert metrics["top1"].details.templates == "custom" and metrics["top1"].details.n_templates == 2


def test_zeroshot_has_no_top5_with_five_classes_or_fewer():
    names = ["a", "b", "c"]
    dataset = Dataset("toy", {"test": Split(indexed_images(6), labels=np.array([0, 1, 2, 0, 1, 2]))},
                      class_names=names, targets=frozenset({"label"}))
    metrics = get_probe("zeroshot").run(context("zeroshot", TableEncoder(np.ones((6, D))), dataset))
    assert [m.metric for m in metrics] == ["top1"]


@pytest.mark.parametrize("probe", ["zeroshot", "retrieval"])
def test_encoders_without_a_text_tower_skip_saying_what_would_run(probe):
    dataset = Dataset("toy", {"test": Split(indexed_images(4), labels=np.arange(4), captions=[["x"]] * 4)},
                      class_names=list("abcd"), targets=frozenset({"label", "captions"}))
    with pytest.raises(pytest.skip.Exception, match="has no text tower.*open_clip"):
        get_probe(probe).run(context(probe, ImageOnly(), dataset))


def test_retrieval_probe_matches_plain_loops_and_drops_uncaptioned_images():
    rng = np.random.default_rng(4)
    captions = [[f"scene {i} version {j}" for j in range(1 + i % 3)] for i in range(25)]
    captions[7] = []  # an image without captions: left out of both directions
    table = np.zeros((25, D))
    for i, caps in enumerate(captions):
        if caps:
            table[i] = sum(unit(text_vector(c)) for c in caps) + 0.8 * rng.standard_normal(D)
    dataset = Dataset("toy", {"test": Split(indexed_images(25), captions=captions)}, targets=frozenset({"captions"}))
    metrics = {m.metric: m for m in get_probe("retrieval").run(context("retrieval", TableEncoder(table), dataset))}
    kept = [i for i in range(25) if captions[i]]
    texts = [c for i in kept for c in captions[i]]
    text_image = [n for n, i in enumerate(kept) for _ in captions[i]]
    vectors = np.stack([text_vector(t) for t in texts])
    for k in (1, 5, 10):
        ref_i2t, ref_t2i = loop_recall(table[kept], vectors, text_image, k)
        i2t, t2i = metrics[f"image_to_text_r{k}"], metrics[f"text_to_image_r{k}"]
        assert i2t.value == pytest.approx(ref_i2t.mean()) and t2i.value == pytest.approx(ref_t2i.mean())
        assert i2t.per_sample is None and i2t.interval[0] <= i2t.value <= i2t.interval[1]  # not one per split image
        assert t2i.interval[0] <= t2i.value <= t2i.interval[1]
        assert t2i.chance == pytest.approx(min(1, k / 24))
        assert i2t.details.n_images == 24 and i2t.details.n_captions == len(texts)
    assert 0 < metrics["image_to_text_r1"].value < 1


# --------------------------------------------------------------------------- open_clip, random weights


@pytest.fixture(scope="module")
def tiny_clip():
    open_clip = pytest.importorskip("open_clip")
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)).eval()
    return model, open_clip.get_tokenizer("ViT-B-32")  # the BPE vocabulary ships in the package


def test_open_clip_encoder_embeds_in_the_joint_space_and_reads_text(tiny_clip):
    from pytest_visprobe.encoders.base import ModuleEncoder
    from pytest_visprobe.encoders.loading import open_clip_encoder

    model, tokenizer = tiny_clip
    encoder = open_clip_encoder(model, tokenizer, name="tiny").eval()
    images = torch.rand(3, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(encoder.embed(images), model.encode_image(encoder.preprocess(images)))
        texts = ["a photo of a cat.", "a large red circle"]
        torch.testing.assert_close(encoder.encode_text(texts), model.encode_text(tokenizer(texts)))
    assert encoder.has_text_tower
    # the text tower is not part of the state dict: image features keep their cache key
    plain = ModuleEncoder(model.visual, name="tiny", input_size=encoder.input_size, interpolation="bicubic")
    assert not plain.has_text_tower and plain.fingerprint() == encoder.fingerprint()


def test_zeroshot_on_open_clip_equals_a_direct_torch_computation(tiny_clip):
    from pytest_visprobe.datasets.shapes import CLASS_NAMES, load_shapes
    from pytest_visprobe.encoders.loading import open_clip_encoder

    model, tokenizer = tiny_clip
    dataset = load_shapes(n_train=5, n_test=40, image_size=32)
    metric = get_probe("zeroshot").run(context("zeroshot", open_clip_encoder(model, tokenizer, name="tiny"), dataset))
    [top1] = metric
    test = dataset.split("test")
    with torch.no_grad():  # CLIP's zero-shot classifier, as open_clip's own zero_shot_classifier builds it
        prompts = tokenizer([f"a photo of a {c}." for c in CLASS_NAMES])
        classes = torch.nn.functional.normalize(model.encode_text(prompts), dim=-1)
        pixels = torch.as_tensor(test.images.get(range(40))).permute(0, 3, 1, 2).float() / 255
        image = model.encode_image(pixels, normalize=True)
    predicted = (image @ classes.T).argmax(dim=1).numpy()
    np.testing.assert_array_equal(top1.per_sample, predicted == test.labels)
    assert top1.details.templates == "simple"


def test_retrieval_on_open_clip_shapes_equals_plain_loops(tiny_clip):
    from pytest_visprobe.datasets.shapes import load_shapes
    from pytest_visprobe.encoders.loading import open_clip_encoder

    model, tokenizer = tiny_clip
    dataset = load_shapes(n_train=5, n_test=30, image_size=32)
    metrics = {m.metric: m for m in get_probe("retrieval").run(
        context("retrieval", open_clip_encoder(model, tokenizer, name="tiny"), dataset))}
    captions = [c[0] for c in dataset.split("test").captions]
    with torch.no_grad():
        pixels = torch.as_tensor(dataset.split("test").images.get(range(30))).permute(0, 3, 1, 2).float() / 255
        images, texts = model.encode_image(pixels).numpy(), model.encode_text(tokenizer(captions)).numpy()
    for k in (1, 5, 10):
        ref_i2t, ref_t2i = loop_recall(images, texts, list(range(30)), k)
        np.testing.assert_array_equal(metrics[f"image_to_text_r{k}"].per_sample, ref_i2t)
        assert metrics[f"text_to_image_r{k}"].value == pytest.approx(ref_t2i.mean())


# --------------------------------------------------------------------------- captioned datasets


def test_shape_captions_describe_every_drawn_object_main_first():
    from pytest_visprobe.datasets.shapes import ATTRIBUTE_NAMES, CLASS_NAMES, load_shapes

    split = load_shapes(n_train=5, n_test=50, image_size=32).split("test")
    for caps, label, attrs, box_labels in zip(split.captions, split.labels, split.attributes, split.box_labels):
        [caption] = caps
        phrases = caption.replace(" and ", ", ").split(", ")
        assert len(phrases) == len(box_labels)  # one phrase per drawn object
        main = phrases[0].split()
        colour = next(a.split("=")[1] for a, on in zip(ATTRIBUTE_NAMES, attrs) if on and a.startswith("colour="))
        size = next(a.split("=")[1] for a, on in zip(ATTRIBUTE_NAMES, attrs) if on and a.startswith("size="))
        assert main[:3] == ["a", size, colour] and CLASS_NAMES[label] in main
        assert sorted(CLASS_NAMES[c] for c in box_labels) == sorted(
            next(w for w in p.split() if w in CLASS_NAMES) for p in phrases)
    sub = split.subset([3, 1])
    assert sub.captions == [split.captions[3], split.captions[1]]


def test_coco_captions_beside_the_instances_file_are_read(tmp_path):
    from PIL import Image

    from pytest_visprobe.datasets import load_dataset

    (tmp_path / "images").mkdir()
    images, annotations, captions = [], [], []
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": 20, "height": 20})
        annotations.append({"id": i + 1, "image_id": 10 + i, "category_id": 1, "iscrowd": 0, "area": 64,
                            "segmentation": [[2, 2, 10, 2, 10, 10, 2, 10]], "bbox": [2, 2, 8, 8]})
        captions += [{"id": 100 + 2 * i + j, "image_id": 10 + i, "caption": f" image  {i} caption {j}\n"}
                     for j in range(2)]
    instances = tmp_path / "instances_val.json"
    instances.write_text(json.dumps({"images": images, "annotations": annotations,
                                     "categories": [{"id": 1, "name": "thing"}]}))
    spec = f"coco:{tmp_path / 'images'}:{instances}"
    assert "captions" not in load_dataset(spec, image_size=20).targets  # none beside it yet
    (tmp_path / "captions_val.json").write_text(json.dumps({"annotations": captions}))
    dataset = load_dataset(spec, image_size=20, test_fraction=0.5)
    assert "captions" in dataset.targets
    for split in dataset.splits.values():
        for pixels, caps in zip(split.images.get(range(len(split))), split.captions):
            i = int(pixels[0, 0, 0]) // 40
            assert caps == [f"image {i} caption 0", f"image {i} caption 1"]


def test_template_settings_are_validated_and_resolved():
    from pydantic import ValidationError

    from pytest_visprobe.probes.prompts import DATASET_TEMPLATES, prompt_name, templates_for
    from pytest_visprobe.probes.zeroshot import ZeroshotConfig

    with pytest.raises(ValidationError, match="one of"):
        ZeroshotConfig(templates="imagenett")
    with pytest.raises(ValidationError, match="must contain"):
        ZeroshotConfig(templates=["a photo"])
    assert ZeroshotConfig(templates=["a {c}"]).templates == ("a {c}",)
    assert templates_for("cifar10")[0] == DATASET_TEMPLATES["cifar10"] and len(DATASET_TEMPLATES["cifar10"]) == 18
    imagenet, which = templates_for("cub")  # no dataset templates: CLIP's 80 ImageNet prompts, from open_clip
    assert len(imagenet) == 80 and "open_clip" in which and imagenet[0]("cat") == "a bad photo of a cat."
    assert templates_for("shapes") == (("a photo of a {c}.",), "simple")
    assert [prompt_name(n) for n in ("aquarium_fish", "3 - three", "T-shirt/top")] == ["aquarium fish", "3", "T-shirt/top"]
