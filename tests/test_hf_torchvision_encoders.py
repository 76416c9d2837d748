"""``hf:`` and ``torchvision:`` encoders, offline: tiny random models saved here, checked against
the libraries' own preprocessing and outputs (transformers' image processor, torchvision's ViT)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_visprobe.encoders.refs import parse_encoder_ref
from pytest_visprobe.encoders import load_encoder
from pytest_visprobe.errors import EncoderLoadError

MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.3, 0.4]
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A ViT (with pooler) and a DINOv2 with 4 register tokens, each saved with its image processor."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vit = transformers.ViTModel(transformers.ViTConfig(**TINY))
    vit.save_pretrained(root / "vit")
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3, image_mean=MEAN,
                                   image_std=STD).save_pretrained(root / "vit")
    dino = transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(**TINY, num_register_tokens=4))
    dino.save_pretrained(root / "dinov2")
    transformers.BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                   do_center_crop=True, resample=2, image_mean=MEAN,
                                   image_std=STD).save_pretrained(root / "dinov2")
    return {"vit": root / "vit", "dinov2": root / "dinov2"}


def _reference(directory: Path, pixels: np.ndarray):
    """transformers alone: its processor (no resize: images are at the model's size) and model."""
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(directory)
    inputs = processor(list(pixels), do_resize=False, do_center_crop=False, return_tensors="pt")
    with torch.no_grad():
        return AutoModel.from_pretrained(directory).eval()(**inputs)


@pytest.mark.parametrize("kind, prefix, interpolation", [("vit", 1, "bicubic"), ("dinov2", 5, "bilinear")])
def test_hf_encoder_matches_transformers(hf_dirs, kind: str, prefix: int, interpolation: str) -> None:
    """embed = pooled output; feature_map = patch tokens as a 4×4 grid, CLS (+4 registers) dropped."""
    enc = load_encoder(parse_encoder_ref(f"hf:{hf_dirs[kind]}"))
    assert enc.name == kind and enc.input_size == (32, 32) and enc.interpolation == interpolation
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    ref = _reference(hf_dirs[kind], pixels)
    with torch.no_grad():
        torch.testing.assert_close(enc.embed(images), ref.pooler_output, atol=1e-5, rtol=1e-4)
        grid = ref.last_hidden_state[:, prefix:].reshape(3, 4, 4, 32).permute(0, 3, 1, 2)
        assert ref.last_hidden_state.shape[1] == prefix + 16
        torch.testing.assert_close(enc.feature_map(images), grid, atol=1e-5, rtol=1e-4)


def test_hf_models_keep_their_own_layers_not_hub_kernels(hf_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers >= 5.25 swaps layers for hub kernels when `kernels` is installed; a measurement
    keeps the checkpoint's layers (same numbers everywhere, no hub access) unless the user chose."""
    from pytest_visprobe.encoders.transformers_loading import loading_transformers

    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    with loading_transformers():
        assert os.environ["USE_HUB_KERNELS"] == "NO"
    assert "USE_HUB_KERNELS" not in os.environ  # restored
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")
    with loading_transformers():
        assert os.environ["USE_HUB_KERNELS"] == "YES"  # the user's choice stands
    monkeypatch.delenv("USE_HUB_KERNELS")
    enc = load_encoder(parse_encoder_ref(f"hf:{hf_dirs['vit']}"))
    assert getattr(enc.module, "use_kernels", False) is False  # the attribute exists from 5.x on


def test_hf_embed_is_the_cls_token_without_pooler(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    transformers.ViTModel(transformers.ViTConfig(**TINY), add_pooling_layer=False).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    enc = load_encoder(parse_encoder_ref(f"hf:{tmp_path}"))
    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    ref = _reference(tmp_path, pixels)  # transformers itself gives a pooled output: a random pooler's
    with torch.no_grad():
        out = enc.embed(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(out, ref.last_hidden_state[:, 0], atol=1e-5, rtol=1e-4)


def test_hf_weights_missing_from_the_checkpoint_are_an_error(hf_dirs, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(hf_dirs["vit"], tmp_path / "vit")
    weights = load_file(tmp_path / "vit" / "model.safetensors")
    dropped = next(k for k in weights if "attention" in k)
    del weights[dropped]
    save_file(weights, tmp_path / "vit" / "model.safetensors", metadata={"format": "pt"})
    # (transformers may report the key under its own, converted name)
    with pytest.raises(EncoderLoadError, match=r"does not hold all of ViTModel's weights \(missing: \S*attention"
                                               r"\S*bias; shape mismatches: 0\).*random values"):
        load_encoder(parse_encoder_ref(f"hf:{tmp_path / 'vit'}"))


def test_hf_missing_model_names_the_offline_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # never touch the network here
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EncoderLoadError, match=r"not in the local Hugging Face cache and HF_HUB_OFFLINE is set.*"
                                               r"save_pretrained\(DIR\).*--encoder=hf:DIR"):
        load_encoder(parse_encoder_ref("hf:nobody-here/no-such-model"))
    with pytest.raises(EncoderLoadError, match=r"folder not found .*save_pretrained"):
        parse_encoder_ref(f"hf:{tmp_path}/absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderLoadError, match=r"holds both the model .* and its image processor"):
        load_encoder(parse_encoder_ref(f"hf:{tmp_path / 'empty'}"))


def _clip_tokenizer(directory: Path):
    """A real CLIP tokenizer, offline: CLIP's BPE vocabulary as open_clip ships it, in the files
    transformers' CLIPTokenizer reads (ids equal open_clip's tokenizer's)."""
    import json

    import transformers
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    vocab = {{"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}.get(t, t): i
             for t, i in bpe.encoder.items()}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return transformers.CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIPModel saved with its image processor and tokenizer."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("open_clip")
    root = tmp_path_factory.mktemp("hf-clip")
    torch.manual_seed(2)
    towers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = transformers.CLIPConfig(text_config=dict(**towers, vocab_size=49408, max_position_embeddings=77),
                                     vision_config=dict(**towers, image_size=32, patch_size=8), projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(root / "clip")
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                    image_mean=MEAN, image_std=STD).save_pretrained(root / "clip")
    _clip_tokenizer(root / "clip").save_pretrained(root / "clip")
    return root / "clip"


def test_hf_clip_embeds_in_the_joint_space_and_reads_text(hf_clip: Path) -> None:
    """embed = CLIP's get_image_features (projected), encode_text = get_text_features of the
    tokenized texts, feature_map = the vision tower's patch tokens; the text tower stays out of
    the fingerprint, and a zero-shot probe runs on it."""
    import transformers
    from open_clip import get_tokenizer

    enc = load_encoder(parse_encoder_ref(f"hf:{hf_clip}"))
    assert enc.has_text_tower and enc.config()["projected"]
    reference = transformers.CLIPModel.from_pretrained(hf_clip).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_clip)
    pixels = np.random.default_rng(3).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    inputs = transformers.CLIPImageProcessor.from_pretrained(hf_clip)(list(pixels), return_tensors="pt")
    texts = ["a photo of a circle.", "a large red square on grey"]
    ids = tokenizer(texts, padding=True, return_tensors="pt")
    assert ids["input_ids"][0, :8].tolist() == get_tokenizer("ViT-B-32")(texts)[0, :8].tolist()  # CLIP's BPE ids
    with torch.no_grad():
        image = reference.get_image_features(**inputs)
        text = reference.get_text_features(**ids)
        image, text = (t if isinstance(t, torch.Tensor) else t.pooler_output for t in (image, text))
        torch.testing.assert_close(enc.embed(images), image, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(enc.encode_text(texts), text, atol=1e-5, rtol=1e-4)
        tokens = reference.vision_model(**inputs).last_hidden_state[:, 1:]
        torch.testing.assert_close(enc.feature_map(images), tokens.reshape(3, 4, 4, 32).permute(0, 3, 1, 2),
                                   atol=1e-5, rtol=1e-4)
    # the text tower is not hashed: only the image tower and its projection key the cached features
    state = enc.state_dict()
    assert any(k.startswith("projection.") for k in state) and not any("text_model" in k for k in state)



def test_hf_clip_runs_the_zeroshot_and_retrieval_suite(hf_clip: Path, suite) -> None:
    """The user's path: --encoder=hf:DIR of a CLIP runs the text-tower probes instead of skipping."""
    result = suite.run(f"--encoder=hf:{hf_clip}", "suites/test_zeroshot.py", limit=30)
    result.assert_outcomes(passed=3)  # zero-shot on the two label datasets, retrieval on captioned shapes
    probes = {r["probe"] for r in suite.scorecard()["records"]}
    assert probes == {"zeroshot", "retrieval"}


def test_hf_clip_without_a_tokenizer_says_how_to_add_one(hf_clip: Path, tmp_path: Path) -> None:
    import shutil

    from pytest_visprobe.errors import TextTowerUnavailable

    shutil.copytree(hf_clip, tmp_path / "clip")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
        (tmp_path / "clip" / name).unlink(missing_ok=True)
    enc = load_encoder(parse_encoder_ref(f"hf:{tmp_path / 'clip'}"))  # images need no tokenizer
    assert enc.embed(torch.rand(1, 3, 32, 32)).shape == (1, 16)
    # transformers 4 raises on the missing files; 5 builds an empty vocabulary, which is refused
    with pytest.raises(TextTowerUnavailable, match=r"could not load the tokenizer.*(Error|it found \d+ tokens for a "
                                                   r"text tower of 49408).*save_pretrained\(DIR\)"):
        enc.encode_text(["a cat"])


# ----------------------------------------------------------------------------- torchvision


def test_parse_torchvision_forms(tmp_path: Path) -> None:
    ref = parse_encoder_ref("torchvision:resnet50@IMAGENET1K_V2")
    assert (ref.kind, ref.target, ref.weights, ref.id) == ("torchvision", "resnet50", "IMAGENET1K_V2",
                                                           "resnet50-IMAGENET1K_V2")
    assert parse_encoder_ref("torchvision:resnet18").id == "resnet18"
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"")
    assert parse_encoder_ref(f"torchvision:resnet18@{weights}").id == "resnet18-mine"
    with pytest.raises(EncoderLoadError, match=r"weights file not found"):
        parse_encoder_ref("torchvision:resnet18@/no/such.pth")
    with pytest.raises(EncoderLoadError, match=r"Did you mean torchvision:resnet18\?"):
        parse_encoder_ref("torchvison:resnet18")


def _tv_reference(model: torch.nn.Module, images: torch.Tensor, mean, std) -> torch.Tensor:
    x = torch.nn.functional.interpolate(images, size=(224, 224), mode="bilinear", antialias=True)
    return model((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))


def test_torchvision_local_state_dict(tmp_path: Path) -> None:
    """resnet18 from a file: embedding = the 512-d input of fc; map = layer4's 7×7 output."""
    import torchvision

    torch.manual_seed(3)
    model = torchvision.models.resnet18().eval()
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    enc = load_encoder(parse_encoder_ref(f"torchvision:resnet18@{tmp_path / 'r18.pth'}"))
    meta = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert enc.input_size == (224, 224) and enc.interpolation == "bilinear"
    images = torch.rand(2, 3, 64, 48)
    model.fc = torch.nn.Identity()
    layer4 = {}
    model.layer4.register_forward_hook(lambda _m, _i, out: layer4.setdefault("out", out))
    with torch.no_grad():
        expected = _tv_reference(model, images, meta.mean, meta.std)
        torch.testing.assert_close(enc.embed(images), expected, atol=1e-5, rtol=1e-4)
        fmap = enc.feature_map(images)
    assert fmap.shape == (2, 512, 7, 7)
    torch.testing.assert_close(fmap, layer4["out"], atol=1e-5, rtol=1e-4)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(EncoderLoadError, match=r"do not fit torchvision's resnet18.*Missing key"):
        load_encoder(parse_encoder_ref(f"torchvision:resnet18@{tmp_path / 'bad.pth'}"))


def test_torchvision_enum_from_cache_and_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An enum member loads from torch's hub cache; absent and undownloadable, the error names the fix."""
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*_args, **_kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    member = torchvision.models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
    with pytest.raises(EncoderLoadError, match=r"is not in torch's cache .*network unreachable.*"
                                               r"--encoder=torchvision:mobilenet_v3_small@/path/to/state_dict\.pth"):
        load_encoder(parse_encoder_ref("torchvision:mobilenet_v3_small@IMAGENET1K_V1"))
    with pytest.raises(EncoderLoadError, match=r"has no 'IMAGENET9K'; choose one of DEFAULT, IMAGENET1K_V1"):
        load_encoder(parse_encoder_ref("torchvision:mobilenet_v3_small@IMAGENET9K"))
    torch.manual_seed(4)
    model = torchvision.models.mobilenet_v3_small().eval()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), tmp_path / "hub" / "checkpoints" / Path(member.url).name)
    enc = load_encoder(parse_encoder_ref("torchvision:mobilenet_v3_small"))  # DEFAULT = IMAGENET1K_V1
    model.classifier[-1] = torch.nn.Identity()
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        expected = _tv_reference(model, images, member.transforms().mean, member.transforms().std)
        torch.testing.assert_close(enc.embed(images), expected, atol=1e-5, rtol=1e-4)
        assert enc.feature_map(images).shape == (2, 576, 7, 7)


def test_torchvision_vit_map_is_patch_tokens(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(5)
    model = torchvision.models.VisionTransformer(image_size=224, patch_size=32, num_layers=1, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32).eval()
    default = torchvision.models.vit_b_32(weights=None)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(torchvision.models, "get_model", lambda name, weights=None: model if name == "vit_b_32" else default)
    try:
        torch.save(model.state_dict(), tmp_path / "vit.pth")
        enc = load_encoder(parse_encoder_ref(f"torchvision:vit_b_32@{tmp_path / 'vit.pth'}"))
    finally:
        monkey.undo()
    images = torch.rand(2, 3, 224, 224)
    meta = torchvision.models.ViT_B_32_Weights.DEFAULT.transforms()
    x = (images - torch.tensor(meta.mean).view(1, 3, 1, 1)) / torch.tensor(meta.std).view(1, 3, 1, 1)
    seen = {}
    model.encoder.register_forward_hook(lambda _m, _i, out: seen.setdefault("tokens", out))
    with torch.no_grad():
        model(x)  # the loader swapped the head for an identity: this is the whole network
        out = seen["tokens"]
        torch.testing.assert_close(enc.embed(images), out[:, 0], atol=1e-5, rtol=1e-4)
        grid = out[:, 1:].reshape(2, 7, 7, 16).permute(0, 3, 1, 2)
        torch.testing.assert_close(enc.feature_map(images), grid, atol=1e-5, rtol=1e-4)
