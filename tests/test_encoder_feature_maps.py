"""feature_map() for timm, open_clip and bare modules, each against the library's own outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.encoders.loading import as_encoder

IMAGES = torch.rand(2, 3, 64, 64)


def _random(factory):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return factory().eval()


def test_timm_vit_patch_tokens_as_a_grid_without_the_class_token():
    timm = pytest.importorskip("timm")
    model = _random(lambda: timm.create_model("test_vit", pretrained=False, num_classes=0))
    encoder = as_encoder(model, name="vit")
    with torch.no_grad():
        fmap = encoder.feature_map(IMAGES)
        tokens = model.forward_features(encoder.preprocess(IMAGES))  # [N, 1 + 10·10, D], normed
    assert model.num_prefix_tokens == 1 and encoder.input_size == (160, 160)  # patch 16
    n, d = tokens.shape[0], tokens.shape[-1]
    expected = tokens[:, 1:].reshape(n, 10, 10, d).permute(0, 3, 1, 2)
    torch.testing.assert_close(fmap, expected)


def test_timm_cnn_map_is_its_forward_features():
    timm = pytest.importorskip("timm")
    model = _random(lambda: timm.create_model("test_resnet", pretrained=False, num_classes=0))
    encoder = as_encoder(model, name="resnet")
    with torch.no_grad():
        torch.testing.assert_close(encoder.feature_map(IMAGES), model.forward_features(encoder.preprocess(IMAGES)))


def test_open_clip_vit_tower_patch_tokens():
    transformer = pytest.importorskip("open_clip.transformer")
    visual = _random(lambda: transformer.VisionTransformer(
        image_size=64, patch_size=16, width=32, layers=2, heads=2, mlp_ratio=2.0, output_dim=16))
    encoder = ModuleEncoder(visual, name="clip-vit", input_size=(64, 64))
    with torch.no_grad():
        fmap = encoder.feature_map(IMAGES)
        visual.output_tokens = True
        _, tokens = visual(encoder.preprocess(IMAGES))  # patch tokens after ln_post, class token removed
    torch.testing.assert_close(fmap, tokens.reshape(2, 4, 4, 32).permute(0, 3, 1, 2))


def test_open_clip_modified_resnet_tower_last_stage():
    modified_resnet = pytest.importorskip("open_clip.modified_resnet")
    visual = _random(lambda: modified_resnet.ModifiedResNet(
        layers=[1, 1, 1, 1], output_dim=16, heads=2, image_size=64, width=8))
    encoder = ModuleEncoder(visual, name="clip-rn", input_size=(64, 64))
    with torch.no_grad():
        x = visual.stem(encoder.preprocess(IMAGES))
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            x = layer(x)
        torch.testing.assert_close(encoder.feature_map(IMAGES), x)
    assert x.shape[-2:] == (2, 2)  # stride 32


def test_bare_module_map_is_its_last_spatial_activation():
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
    module = _random(lambda: nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    encoder = as_encoder(module, name="bare")
    assert encoder.has_feature_map
    with torch.no_grad():
        torch.testing.assert_close(encoder.feature_map(IMAGES), body(IMAGES))  # not the 1×1 pooled map


def test_module_without_spatial_activation_has_no_map():
    encoder = as_encoder(nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 4)), name="mlp")
    assert not encoder.has_feature_map


def test_forward_features_tokens_drop_prefix_tokens_and_follow_the_aspect_ratio():
    class Tokens(nn.Module):
        num_prefix_tokens = 2  # e.g. a class token and a register token

        def forward_features(self, x):
            n = x.shape[0]
            patches = torch.arange(3 * 6 * 5, dtype=torch.float32).view(1, 3 * 6, 5).expand(n, -1, -1)
            return torch.cat([torch.full((n, 2, 5), -1.0), patches], dim=1)  # 3×6 grid of 5-dim tokens

        def forward(self, x):
            return self.forward_features(x).mean(dim=1)

    fmap = as_encoder(Tokens(), name="tok").feature_map(torch.rand(2, 3, 32, 64))  # twice as wide as tall
    assert fmap.shape == (2, 5, 3, 6) and (fmap >= 0).all()
    torch.testing.assert_close(fmap[0, :, 1, 2], torch.arange(5, dtype=torch.float32) + 5 * (1 * 6 + 2))


def test_timm_loader_gives_vit_maps(tmp_path):
    """``--encoder=timm:NAME@FILE`` goes through the same map: patch grid at the model's input size."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from pytest_visprobe.encoders.refs import parse_encoder_ref
    from pytest_visprobe.encoders.loading import load_encoder

    model = _random(lambda: timm.create_model("test_vit", pretrained=False, num_classes=0))
    save_file(model.state_dict(), str(tmp_path / "vit.safetensors"))
    encoder = load_encoder(parse_encoder_ref(f"timm:test_vit@{tmp_path / 'vit.safetensors'}"))
    assert encoder.has_feature_map
    with torch.no_grad():
        fmap = encoder.feature_map(IMAGES)
        tokens = model.forward_features(encoder.preprocess(IMAGES))
    torch.testing.assert_close(fmap, tokens[:, 1:].reshape(2, 10, 10, -1).permute(0, 3, 1, 2))
