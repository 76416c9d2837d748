"""The Encoder contract and ``--encoder`` loading: wrapping, preprocessing, fingerprints, refs,
files, and the timm / open_clip paths offline with checkpoints saved here from random models."""

from __future__ import annotations

import copy
import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_visprobe.encoders.refs import parse_encoder_ref
from pytest_visprobe.encoders.base import Encoder, ModuleEncoder
from pytest_visprobe.encoders.loading import as_encoder, load_encoder
from pytest_visprobe.errors import EncoderLoadError, EncoderOutputError


class Recorder(nn.Module):
    """Returns a chosen output shape and remembers what it was given."""

    def __init__(self, out: str = "4d") -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.out = out
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor):
        self.seen = x.detach().clone()
        fmap = self.conv(x)
        if self.out == "4d":
            return fmap
        if self.out == "3d":
            return fmap.flatten(2).transpose(1, 2)  # [N, tokens, C]
        if self.out == "tuple":
            return fmap.mean(dim=(2, 3)), fmap
        return {"x": fmap}


def _seeded(factory, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


# ----------------------------------------------------------------------------- ModuleEncoder


def test_module_encoder_resizes_and_normalises_inside() -> None:
    """The module sees input_size and (x − mean) / std, computed from [0, 1] pixels."""
    module = Recorder()
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    enc = ModuleEncoder(module, name="r", input_size=(8, 12), mean=mean, std=std)
    images = torch.rand(2, 3, 20, 30)
    enc.embed(images)
    expected = F.interpolate(images, size=(8, 12), mode="bilinear", antialias=True, align_corners=False)
    expected = (expected - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert module.seen is not None and module.seen.shape == (2, 3, 8, 12)
    torch.testing.assert_close(module.seen, expected)


def test_module_encoder_keeps_size_when_already_right_or_unset() -> None:
    images = torch.rand(1, 3, 8, 12)
    for size in ((8, 12), None):
        module = Recorder()
        ModuleEncoder(module, name="r", input_size=size).embed(images)
        torch.testing.assert_close(module.seen, images)  # mean 0, std 1 by default


@pytest.mark.parametrize("out", ["4d", "3d", "tuple"])
def test_module_encoder_pools_to_n_by_d(out: str) -> None:
    """4-D maps are averaged over space, 3-D tokens over tokens, tuples give their first item."""
    module = Recorder(out)
    enc = ModuleEncoder(module, name="r")
    images = torch.rand(4, 3, 6, 6)
    emb = enc.embed(images)
    fmap = module.conv(images)
    expected = fmap.mean(dim=(2, 3))
    assert emb.shape == (4, 5)
    torch.testing.assert_close(emb, expected)


def test_module_encoder_rejects_non_tensor_output() -> None:
    enc = ModuleEncoder(Recorder("dict"), name="dicty")
    with pytest.raises(EncoderOutputError, match=r"'dicty' returned dict, not a tensor.*subclass"):
        enc.embed(torch.rand(1, 3, 4, 4))


def test_module_encoder_feature_map_from_forward_features() -> None:
    class WithFeatures(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward_features(self, x):
            return self.conv(x)

        def forward(self, x):
            return self.forward_features(x).amax(dim=(2, 3))

    enc = as_encoder(WithFeatures(), name="wf")
    assert enc.has_feature_map
    images = torch.rand(2, 3, 5, 5)
    assert enc.feature_map(images).shape == (2, 4, 5, 5)
    torch.testing.assert_close(enc.embed(images), enc.module.conv(images).amax(dim=(2, 3)))
    bare = as_encoder(nn.Sequential(nn.Flatten(), nn.Linear(75, 4)), name="bare")  # no 4-D activation
    assert not bare.has_feature_map
    with pytest.raises(NotImplementedError):
        bare.feature_map(images)


def test_as_encoder_honours_timm_style_pretrained_cfg() -> None:
    module = Recorder()
    module.pretrained_cfg = {"input_size": (3, 10, 14), "mean": (0.4, 0.5, 0.6),
                             "std": (0.2, 0.3, 0.4), "interpolation": "bicubic"}
    enc = as_encoder(module, name="cfg")
    assert isinstance(enc, ModuleEncoder)
    assert enc.input_size == (10, 14) and enc.interpolation == "bicubic"
    torch.testing.assert_close(enc.mean.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    torch.testing.assert_close(enc.std.flatten(), torch.tensor([0.2, 0.3, 0.4]))
    images = torch.rand(1, 3, 20, 20)
    enc.embed(images)
    expected = F.interpolate(images, size=(10, 14), mode="bicubic", antialias=True, align_corners=False)
    expected = (expected - enc.mean) / enc.std
    torch.testing.assert_close(module.seen, expected)


def test_as_encoder_without_cfg_and_passthrough() -> None:
    enc = as_encoder(nn.Conv2d(3, 2, 1), name="plain")
    assert enc.input_size is None and enc.name == "plain"
    assert enc.mean.flatten().tolist() == [0, 0, 0] and enc.std.flatten().tolist() == [1, 1, 1]
    assert as_encoder(enc, name="other") is enc


def test_as_encoder_rejects_other_objects() -> None:
    with pytest.raises(EncoderLoadError, match=r"returned int; it must return a pytest_visprobe.Encoder or a torch.nn.Module"):
        as_encoder(3, name="x")


def test_embed_is_differentiable_through_preprocessing() -> None:
    """Attacks work in pixel space: d embed / d pixels must exist and be right (gradcheck, float64)."""
    module = _seeded(lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh())).double()
    enc = ModuleEncoder(module, name="g", input_size=(5, 5), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    images = torch.rand(1, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(enc.embed, (images,), eps=1e-6, atol=1e-6)
    # and the gradient reaches the pixels even when called like a probe would (no grad mode tricks)
    x = torch.rand(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    enc.embed(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- fingerprints


def _tiny(input_size=(8, 8), seed: int = 0) -> ModuleEncoder:
    return ModuleEncoder(_seeded(lambda: nn.Conv2d(3, 4, 3), seed), name="t", input_size=input_size,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def test_fingerprint_stable_for_same_weights_and_config() -> None:
    a, b = _tiny(), _tiny()
    assert a.fingerprint() == a.fingerprint() == b.fingerprint()
    b.name = "renamed"  # the name labels; it does not change features
    assert b.fingerprint() == a.fingerprint()


def test_fingerprint_changes_with_weights_and_config() -> None:
    base = _tiny().fingerprint()
    assert _tiny(seed=1).fingerprint() != base
    assert _tiny(input_size=(9, 8)).fingerprint() != base
    assert _tiny(input_size=None).fingerprint() != base
    other_norm = ModuleEncoder(_seeded(lambda: nn.Conv2d(3, 4, 3)), name="t", input_size=(8, 8),
                               mean=(0.5, 0.5, 0.5), std=(0.3, 0.25, 0.25))
    assert other_norm.fingerprint() != base


def test_fingerprint_follows_in_place_changes_after_first_use() -> None:
    """A fingerprint computed once must not go stale: it keys cached features."""
    enc = _tiny()
    before = enc.fingerprint()
    with torch.no_grad():
        enc.module.weight[0, 0, 0, 0] += 1.0
    assert enc.fingerprint() != before
    copied = copy.deepcopy(enc)
    after = enc.fingerprint()
    assert copied.fingerprint() == after
    with torch.no_grad():
        copied.module.bias.zero_()
    assert copied.fingerprint() != after
    enc.load_state_dict(_tiny().state_dict())
    assert enc.fingerprint() == before
    enc.input_size = (16, 16)
    assert enc.fingerprint() != before


def test_fingerprint_of_encoder_subclass_includes_class_input_size() -> None:
    class A(Encoder):
        input_size = (8, 8)

        def __init__(self) -> None:
            super().__init__()
            self.lin = _seeded(lambda: nn.Linear(3, 2))

        def embed(self, images):
            return self.lin(images.mean(dim=(2, 3)))

    class B(A):
        input_size = (16, 16)

    assert A().fingerprint() == A().fingerprint()
    assert A().fingerprint() != B().fingerprint()


# ----------------------------------------------------------------------------- parse_encoder_ref


def test_parse_file_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "enc.py"
    f.write_text("")
    ref = parse_encoder_ref(str(f))
    assert (ref.kind, ref.target, ref.factory, ref.id) == ("file", str(f), None, "enc")
    ref = parse_encoder_ref(f"{f}::make_small")
    assert (ref.kind, ref.factory, ref.id) == ("file", "make_small", "enc-make_small")
    # relative paths: from the working directory, else from rootdir
    monkeypatch.chdir(tmp_path)
    assert parse_encoder_ref("enc.py").kind == "file"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Path(parse_encoder_ref("enc.py", rootdir=tmp_path).target) == tmp_path / "enc.py"


def test_parse_hub_forms(tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    ref = parse_encoder_ref("timm:resnet50.a1_in1k")
    assert (ref.kind, ref.target, ref.weights, ref.id) == ("timm", "resnet50.a1_in1k", None, "resnet50.a1_in1k")
    ref = parse_encoder_ref(f"timm:test_resnet@{weights}")
    assert (ref.kind, ref.target, ref.weights, ref.id) == ("timm", "test_resnet", str(weights), "test_resnet")
    ref = parse_encoder_ref("open_clip:RN50/openai")
    assert (ref.kind, ref.target, ref.weights, ref.id) == ("open_clip", "RN50", "openai", "RN50-openai")
    ckpt = tmp_path / "my_ckpt.pt"
    ckpt.write_bytes(b"")
    ref = parse_encoder_ref(f"open_clip:ViT-B-32/{ckpt}")
    assert (ref.kind, ref.target, ref.weights, ref.id) == ("open_clip", "ViT-B-32", str(ckpt), "ViT-B-32-my_ckpt")
    ref = parse_encoder_ref("open_clip:hf-hub:timm/ViT-B-16-SigLIP")
    assert (ref.kind, ref.target) == ("open_clip", "hf-hub:timm/ViT-B-16-SigLIP")


@pytest.mark.parametrize(("raw", "pattern"), [
    ("", r"empty value"),
    ("   ", r"empty value"),
    ("missing_file.py", r"file not found \(.*missing_file\.py\)"),
    ("encoder.txt", r"'encoder\.txt' is not a \.py file"),
    ("tim:resnet18", r"unknown prefix 'tim'\. Did you mean timm:resnet18\?"),
    ("openclip:RN50/openai", r"unknown prefix 'openclip'\. Did you mean open_clip:RN50/openai\?"),
    ("timm:", r"missing model name"),
    ("timm:resnet18@/no/such/weights.safetensors", r"weights file not found \(/no/such/weights\.safetensors\)"),
    ("open_clip:RN50", r"missing pretrained weights after '/', e\.g\. open_clip:RN50/openai"),
    ("open_clip:/openai", r"missing architecture"),
    ("open_clip:RN50//no/such/ckpt.pt", r"checkpoint file not found \(/no/such/ckpt\.pt\)"),
])
def test_parse_errors(raw: str, pattern: str) -> None:
    with pytest.raises(EncoderLoadError, match=pattern):
        parse_encoder_ref(raw)


def test_parse_empty_factory(tmp_path: Path) -> None:
    f = tmp_path / "enc.py"
    f.write_text("")
    with pytest.raises(EncoderLoadError, match=r"empty factory name after '::'"):
        parse_encoder_ref(f"{f}::")


# ----------------------------------------------------------------------------- file encoders


def _write(tmp_path: Path, source: str, name: str = "enc.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


FILE_SOURCE = """
    import torch
    from torch import nn

    def helper_net():
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())

    def create_encoder():
        return helper_net()

    def small():
        torch.manual_seed(0)
        return nn.Conv2d(3, 7, 1)
"""


def test_load_file_default_factory(tmp_path: Path) -> None:
    path = _write(tmp_path, FILE_SOURCE)
    enc = load_encoder(parse_encoder_ref(str(path)))
    assert isinstance(enc, ModuleEncoder) and enc.name == "enc" and enc.ref == str(path)
    assert not enc.training
    images = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(enc.embed(images), F.adaptive_avg_pool2d(images, 2).flatten(1))


def test_load_file_named_factory(tmp_path: Path) -> None:
    path = _write(tmp_path, FILE_SOURCE)
    enc = load_encoder(parse_encoder_ref(f"{path}::small"))
    assert enc.name == "enc-small"
    assert enc.embed(torch.rand(2, 3, 4, 4)).shape == (2, 7)


def test_file_source_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    a = load_encoder(parse_encoder_ref(str(_write(tmp_path, FILE_SOURCE, "a.py"))))
    b = load_encoder(parse_encoder_ref(str(_write(tmp_path, FILE_SOURCE + "\n    # edited\n", "b.py"))))
    assert a.fingerprint() != b.fingerprint()


def test_load_file_without_factory_lists_functions(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        from torch import nn
        import os

        def build_model():
            return nn.Identity()

        def make_other():
            return nn.Identity()

        class NotAFactory:
            pass
    """)
    with pytest.raises(EncoderLoadError) as info:
        load_encoder(parse_encoder_ref(str(path)))
    message = str(info.value)
    assert "has no function create_encoder()" in message
    assert "Functions it defines: build_model, make_other." in message
    assert f"--encoder={path}::FACTORY" in message
    with pytest.raises(EncoderLoadError, match=r"has no function nope\(\)"):
        load_encoder(parse_encoder_ref(f"{path}::nope"))


def test_load_file_factory_raising_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        def create_encoder():
            config = {}
            return config["width"]
    """)
    with pytest.raises(EncoderLoadError, match=r"create_encoder\(\) raised KeyError: 'width' \(enc\.py:4\)"):
        load_encoder(parse_encoder_ref(str(path)))


def test_load_file_import_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        import torch

        raise RuntimeError("broken at import")
    """)
    with pytest.raises(EncoderLoadError, match=r"importing .*enc\.py failed: RuntimeError: broken at import \(enc\.py:4\)"):
        load_encoder(parse_encoder_ref(str(path)))


def test_load_file_factory_returning_non_module(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        def create_encoder():
            return "resnet50"
    """)
    with pytest.raises(EncoderLoadError, match=r"the factory returned str; it must return"):
        load_encoder(parse_encoder_ref(str(path)))


# ----------------------------------------------------------------------------- timm (offline)


def _timm_reference(model: nn.Module, enc: ModuleEncoder, images: torch.Tensor) -> torch.Tensor:
    """What the original model gives on the encoder's own preprocessing of the same pixels."""
    with torch.no_grad():
        return model(enc.preprocess(images))


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit"])
def test_timm_local_weights_file_is_loaded(tmp_path: Path, arch: str) -> None:
    """timm:NAME@FILE must load FILE, not fresh random weights (which would also "work")."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    original = _seeded(lambda: timm.create_model(arch, pretrained=False, num_classes=0), seed=123).eval()
    path = tmp_path / f"{arch}.safetensors"
    save_file(original.state_dict(), str(path))
    enc = load_encoder(parse_encoder_ref(f"timm:{arch}@{path}"))
    assert enc.name == arch
    cfg = original.pretrained_cfg
    assert enc.input_size == tuple(cfg["input_size"][1:])
    torch.testing.assert_close(enc.mean.flatten(), torch.tensor(cfg["mean"], dtype=torch.float32))
    torch.testing.assert_close(enc.std.flatten(), torch.tensor(cfg["std"], dtype=torch.float32))
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = enc.embed(images)
    expected = _timm_reference(original, enc, images)
    assert ours.shape == expected.shape and ours.ndim == 2
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # a differently seeded random model gives different embeddings, so equality above is meaningful
    other = _seeded(lambda: timm.create_model(arch, pretrained=False, num_classes=0), seed=7).eval()
    assert not torch.allclose(_timm_reference(other, enc, images), expected, atol=1e-3)


def test_timm_weights_of_another_architecture(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    path = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit", pretrained=False, num_classes=0).state_dict(), str(path))
    # timm loads non-strictly once the classifier is dropped: this must not pass as random weights
    with pytest.raises(EncoderLoadError, match=r"timm did not load test_resnet's weights: Missing keys \(conv1\.0\.weight.*"
                                               r"Check that .*vit\.safetensors is a state dict saved from test_resnet"):
        load_encoder(parse_encoder_ref(f"timm:test_resnet@{path}"))


def test_timm_partial_or_extra_weights_are_errors(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    state = timm.create_model("test_resnet", pretrained=False, num_classes=0).state_dict()
    partial = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("layer4.")}, str(partial))
    with pytest.raises(EncoderLoadError, match=r"Missing keys \(layer4\.0\.conv1\.weight"):
        load_encoder(parse_encoder_ref(f"timm:test_resnet@{partial}"))
    extra = tmp_path / "extra.safetensors"
    save_file({**state, "layer9.weight": torch.zeros(3)}, str(extra))
    with pytest.raises(EncoderLoadError, match=r"Unexpected keys \(layer9\.weight\)"):
        load_encoder(parse_encoder_ref(f"timm:test_resnet@{extra}"))
    # a checkpoint that still has its classifier is fine: timm drops it for num_classes=0
    full = tmp_path / "full.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), str(full))
    assert load_encoder(parse_encoder_ref(f"timm:test_resnet@{full}")).embed(torch.rand(1, 3, 32, 32)).ndim == 2


def test_timm_unknown_model_did_you_mean() -> None:
    pytest.importorskip("timm")
    with pytest.raises(EncoderLoadError, match=r"timm has no model 'test_resnett'\. Did you mean test_resnet"):
        load_encoder(parse_encoder_ref("timm:test_resnett"))
    with pytest.raises(EncoderLoadError, match=r"timm has no model 'no_such_model'.*timm\.list_models"):
        load_encoder(parse_encoder_ref("timm:no_such_model"))


# ----------------------------------------------------------------------------- open_clip (offline)

TINY_CLIP = "visprobe-tiny-vit"


@pytest.fixture(scope="module")
def tiny_clip_config(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny ViT CLIP registered with open_clip (same format as its shipped model_configs)."""
    open_clip = pytest.importorskip("open_clip")
    directory = tmp_path_factory.mktemp("open_clip_configs")
    (directory / f"{TINY_CLIP}.json").write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }))
    open_clip.add_model_config(directory)
    assert TINY_CLIP in open_clip.list_models()
    return TINY_CLIP


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_open_clip_local_checkpoint_is_loaded(tmp_path: Path, tiny_clip_config: str, suffix: str) -> None:
    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = _seeded(lambda: open_clip.create_model(tiny_clip_config), seed=5).eval()
    path = tmp_path / f"x{suffix}"
    if suffix == ".pt":
        torch.save(original.state_dict(), path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    enc = load_encoder(parse_encoder_ref(f"open_clip:{tiny_clip_config}/{path}"))
    assert enc.name == f"{tiny_clip_config}-x"
    assert enc.input_size == (32, 32) and enc.interpolation == "bicubic"
    torch.testing.assert_close(enc.mean.flatten(), torch.tensor(open_clip.OPENAI_DATASET_MEAN, dtype=torch.float32))
    torch.testing.assert_close(enc.std.flatten(), torch.tensor(open_clip.OPENAI_DATASET_STD, dtype=torch.float32))
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = enc.embed(images)
        expected = original.encode_image(enc.preprocess(images))
    assert ours.shape == (3, 32)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        other = _seeded(lambda: open_clip.create_model(tiny_clip_config), seed=6).eval()
        assert not torch.allclose(other.encode_image(enc.preprocess(images)), expected, atol=1e-3)
    # the text tower comes along, with the architecture's own tokenizer (its context length, 16)
    texts = ["a photo of a cat.", "a large red circle at the top left"]
    with torch.no_grad():
        expected_text = original.encode_text(open_clip.get_tokenizer(tiny_clip_config)(texts))
    assert enc.has_text_tower and open_clip.get_tokenizer(tiny_clip_config)(texts).shape == (2, 16)
    torch.testing.assert_close(enc.encode_text(texts), expected_text, rtol=1e-5, atol=1e-5)


def test_open_clip_unknown_arch_and_bad_checkpoint(tmp_path: Path, tiny_clip_config: str) -> None:
    with pytest.raises(EncoderLoadError, match=r"open_clip has no architecture 'visprobe-tiny-vitt'\. Did you mean visprobe-tiny-vit"):
        load_encoder(parse_encoder_ref("open_clip:visprobe-tiny-vitt/openai"))
    bad = tmp_path / "bad.pt"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(EncoderLoadError, match=r"open_clip could not load visprobe-tiny-vit with pretrained=.*bad\.pt"):
        load_encoder(parse_encoder_ref(f"open_clip:{tiny_clip_config}/{bad}"))


def test_wrapped_module_is_registered_once() -> None:
    """One copy of the weights in the state dict (and in the fingerprint's hash)."""
    module = nn.Conv2d(3, 4, 3)
    enc = ModuleEncoder(module, name="once")
    assert sorted(enc.state_dict()) == ["module.bias", "module.weight"]
    assert len(list(enc.parameters())) == 2
