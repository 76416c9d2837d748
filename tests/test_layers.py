"""Layers (--visprobe-layers): per-layer features equal a plain forward with a hook on the block,
the option's forms and errors, one forward pass for several layers, and the scorecard's layer."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from pytest_visprobe.datasets import load_dataset
from pytest_visprobe.encoders.base import ModuleEncoder
from pytest_visprobe.encoders.layers import LayerGroup, resolve_layers
from pytest_visprobe.errors import ConfigError
from pytest_visprobe.features import FeatureStore
from pytest_visprobe.report import comparability
from pytest_visprobe.report.layers import layer_tables
from pytest_visprobe.report.scorecard import EncoderInfo, ProbeInfo, Record, Scorecard, migrate
from pytest_visprobe.runner.options import layer_tokens, layers

REPO = Path(__file__).resolve().parents[1]
timm = pytest.importorskip("timm")


def _tiny_cnn():
    spec = importlib.util.spec_from_file_location("tiny_cnn_for_layers", REPO / "examples" / "tiny_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.create_encoder().eval()


def _hooked(module: nn.Module, name: str, run) -> torch.Tensor:
    """The output of ``module.<name>`` during ``run()``: a plain forward hook, the reference."""
    got = {}
    handle = module.get_submodule(name).register_forward_hook(lambda _m, _i, out: got.__setitem__("out", out))
    try:
        run()
    finally:
        handle.remove()
    return got["out"]


def _group(encoder, raw):
    return LayerGroup(encoder, [layer for layer in resolve_layers(encoder, raw) if layer != "last"])


@torch.no_grad()
def test_timm_cnn_layers_equal_a_hooked_forward_average_pooled():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    encoder = ModuleEncoder(model, name="r18", input_size=(32, 32))
    assert encoder.layers() == ["act1", "layer1", "layer2", "layer3", "layer4"]
    images = torch.rand(3, 3, 32, 32)
    group = _group(encoder, "all,last4_cls_avgpool")
    got = group.embed(images, group.layers)
    x = encoder.preprocess(images)
    reference = {name: _hooked(model, name, lambda: model(x)).mean(dim=(2, 3)) for name in encoder.layers()}
    for name in encoder.layers():
        torch.testing.assert_close(got[name], reference[name], rtol=1e-5, atol=1e-5)
    # no class token: the last 4 blocks' global averages, concatenated
    want = torch.cat([reference[n] for n in ["layer1", "layer2", "layer3", "layer4"]], dim=1)
    torch.testing.assert_close(got["last4_cls_avgpool"], want, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_timm_vit_layers_are_class_tokens_after_the_final_norm_and_dinov2_concatenation():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=6).eval()
    encoder = ModuleEncoder(model, name="vit", input_size=(32, 32))
    assert encoder.layers() == [f"blocks.{i}" for i in range(6)]
    images = torch.rand(2, 3, 32, 32)
    group = _group(encoder, "0,-1,last4_cls_avgpool,head")
    assert group.layers == ["blocks.0", "blocks.5", "last4_cls_avgpool", "head"]
    got = group.embed(images, group.layers)
    x = encoder.preprocess(images)
    tokens = {k: model.norm(_hooked(model, f"blocks.{k}", lambda: model(x))) for k in range(6)}
    torch.testing.assert_close(got["blocks.0"], tokens[0][:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["blocks.5"], tokens[5][:, 0], rtol=1e-5, atol=1e-5)
    want = torch.cat([tokens[2][:, 0], tokens[3][:, 0], tokens[4][:, 0], tokens[5][:, 0],
                      tokens[5][:, model.num_prefix_tokens:].mean(dim=1)], dim=1)
    torch.testing.assert_close(got["last4_cls_avgpool"], want, rtol=1e-5, atol=1e-5)
    # a module outside the blocks is read with a hook during embed: the head's input is the embedding
    torch.testing.assert_close(got["head"], encoder.embed(images), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_plain_module_layers_are_its_conv_relu_runs():
    encoder = _tiny_cnn()
    assert encoder.layers() == ["body.1", "body.3", "body.5"]  # conv, ReLU: read after the ReLU
    images = torch.rand(4, 3, 48, 40)
    group = _group(encoder, "all,last4_cls_avgpool")
    got = group.embed(images, group.layers)
    x = (nn.functional.interpolate(images, size=(64, 64), mode="bilinear", antialias=True) - encoder.mean) / encoder.std
    reference = [encoder.body[:2](x), encoder.body[:4](x), encoder.body(x)]
    for name, ref in zip(["body.1", "body.3", "body.5"], reference):
        torch.testing.assert_close(got[name], ref.mean(dim=(2, 3)))
    torch.testing.assert_close(got["last4_cls_avgpool"], torch.cat([r.mean(dim=(2, 3)) for r in reference], dim=1))
    for view in group.views:  # a view is an encoder: its embed is its layer
        torch.testing.assert_close(view.embed(images), got[view.layer])


@torch.no_grad()
def test_open_clip_vit_layers_are_class_tokens_after_ln_post():
    transformer = pytest.importorskip("open_clip.transformer")
    torch.manual_seed(0)
    visual = transformer.VisionTransformer(image_size=32, patch_size=8, width=32, layers=3, heads=2, mlp_ratio=2.0,
                                           output_dim=16).eval()
    encoder = ModuleEncoder(visual, name="clip", input_size=(32, 32))
    assert encoder.layers() == ["transformer.resblocks.0", "transformer.resblocks.1", "transformer.resblocks.2"]
    images = torch.rand(2, 3, 32, 32)
    got = encoder.embed_layers(images, ["transformer.resblocks.1"])
    x = encoder.preprocess(images)
    tokens = _hooked(visual, "transformer.resblocks.1", lambda: visual(x))
    if not getattr(visual.transformer, "batch_first", True):
        tokens = tokens.permute(1, 0, 2)
    torch.testing.assert_close(got["transformer.resblocks.1"], visual.ln_post(tokens)[:, 0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_default_layers_of_norm_blocks_and_named_stages():
    torch.manual_seed(0)
    trained_like = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),
                                 nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    encoder = ModuleEncoder(trained_like, name="seq")
    assert encoder.layers() == ["2", "7"]  # a norm layer does not start a block; the pooling ends the last
    images = torch.rand(3, 3, 16, 16)
    got = encoder.embed_layers(images, ["2", "7"])
    torch.testing.assert_close(got["2"], trained_like[:3](images).mean(dim=(2, 3)))
    torch.testing.assert_close(got["7"], trained_like(images))
    staged = nn.Sequential()
    staged.add_module("stem", nn.Conv2d(3, 4, 3))
    staged.add_module("stages", nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3)))
    assert ModuleEncoder(staged, name="staged").layers() == ["stages.0", "stages.1"]


# --------------------------------------------------------------------------- the option


def test_option_forms():
    assert layer_tokens("last") == ["last"]
    assert layer_tokens("all") == ["all"]
    assert layer_tokens(" -1, -4 ,2") == [-1, -4, 2]
    assert layer_tokens("stages.2,head.global_pool,last4_cls_avgpool") == ["stages.2", "head.global_pool",
                                                                           "last4_cls_avgpool"]
    assert layers(" -1 , blocks.3") == "-1,blocks.3"
    for bad in ("", "1,,2", "stages/2", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            layers(bad)


def test_resolution_and_errors_name_the_available_layers():
    encoder = _tiny_cnn()
    assert resolve_layers(encoder, "last") == ["last"]
    assert resolve_layers(encoder, "all") == ["body.1", "body.3", "body.5"]
    assert resolve_layers(encoder, "last4") == ["body.1", "body.3", "body.5"]  # fewer than 4: all of them
    assert resolve_layers(encoder, "-1,0,-1,body.2") == ["body.5", "body.1", "body.2"]  # any module, no repeats
    with pytest.raises(ConfigError, match=r"has no layer 3; its layers .*indices 0..2 or -3..-1.*body.1, body.3, body.5"):
        resolve_layers(encoder, "3")
    with pytest.raises(ConfigError, match=r"has no module 'bdy.3'\. Did you mean body.3.*body.1, body.3, body.5"):
        resolve_layers(encoder, "bdy.3")
    with pytest.raises(ConfigError, match=r"Did you mean body.5, body.4, body.3\?"):  # each guess once (a block is a module too)
        resolve_layers(encoder, "body.9")


# --------------------------------------------------------------------------- one forward pass


class _Counted(nn.Module):
    """Counts the forward calls of the module it wraps."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("cached", [False, True], ids=["memory", "disk"])
def test_several_layers_of_a_split_come_from_one_forward_pass(tmp_path, cached):
    encoder = _tiny_cnn()
    encoder.body = _Counted(encoder.body)
    data = load_dataset("digits", seed=0, limit=50, image_size=32)
    store = FeatureStore(cache_dir=tmp_path if cached else None, device=torch.device("cpu"), batch_size=16)
    group = _group(encoder, "all,last4_cls_avgpool")
    batches = -(-len(data.split("train")) // 16)

    first = store.get(group.views[1], data, "train")
    assert encoder.body.calls == batches and store.counters.forward_passes == batches
    assert store.counters.computed == len(group.views)  # every sibling stored from that pass
    features = {v.layer: store.get(v, data, "train") for v in group.views}
    assert encoder.body.calls == batches and store.counters.from_memory == len(group.views)
    torch.testing.assert_close(features[group.views[1].layer], first)
    direct = torch.cat([group.views[0].embed(to) for to in
                        torch.from_numpy(data.split("train").images.get(range(50))).permute(0, 3, 1, 2).float().div(255).split(16)])
    torch.testing.assert_close(features[group.views[0].layer], direct, rtol=1e-5, atol=1e-6)
    if cached:  # a new session reads every layer from disk: no forward pass at all
        again = FeatureStore(cache_dir=tmp_path, device=torch.device("cpu"), batch_size=16)
        calls = encoder.body.calls
        for view in group.views:
            torch.testing.assert_close(again.get(view, data, "train"), features[view.layer])
        assert encoder.body.calls == calls and again.counters.forward_passes == 0
        assert again.counters.from_disk == len(group.views)


def test_views_are_keyed_by_layer_and_controls_keep_their_layer():
    from pytest_visprobe.encoders.controls import random_init_copy

    encoder = _tiny_cnn()
    group = _group(encoder, "all")
    prints = {v.fingerprint() for v in group.views} | {encoder.fingerprint()}
    assert len(prints) == len(group.views) + 1
    assert [v.name for v in group.views] == [f"{encoder.name}@body.{k}" for k in (1, 3, 5)]
    control = random_init_copy(encoder, seed=0)
    floor = _group(control, "body.3").views[0]
    assert floor.control_of == f"{encoder.name}@body.3" and floor.layer == "body.3"
    assert floor.fingerprint() != group.views[1].fingerprint()


# --------------------------------------------------------------------------- scorecard


def _record(**kw) -> Record:
    base = dict(encoder="enc", probe="knn", dataset="digits", metric="top1_k20", value=0.5, higher_is_better=True,
                passed=True, nodeid="t", settings_hash="h", probe_version=1)
    return Record(**{**base, **kw})


def test_old_scorecards_have_no_layer_and_layers_are_compared_like_with_like():
    old = {"schema_version": 4, "records": [_record().model_dump(mode="json")]}
    old["records"][0].pop("layer")
    migrated = migrate(old)
    assert migrated["schema_version"] == 5
    assert Record.model_validate(migrated["records"][0]).layer_name == "last"
    info = ProbeInfo(version=1, settings={}, settings_hash="h")
    assert comparability.check(_record(), info, info, None).differences == ()
    assert comparability.check(_record(encoder="enc@b", layer="b"), info, info, None, layer="b").differences == ()
    found = comparability.check(_record(), info, info, None, layer="blocks.3")
    assert found.differences == ("knn layer: last → blocks.3",)


def test_layer_tables_are_in_depth_order_with_the_embedding_last():
    from datetime import datetime, timezone

    from pytest_visprobe.report.scorecard import Provenance

    records = [_record(), _record(encoder="enc@b.10", layer="b.10", value=0.4),
               _record(encoder="enc@b.2", layer="b.2", value=0.3),
               _record(encoder="enc@last4_cls_avgpool", layer="last4_cls_avgpool", value=0.45),
               _record(encoder="enc~random-init@b.2", layer="b.2", control_of="enc@b.2", value=0.1)]
    encoders = [EncoderInfo(name="enc@b.10", ref="r", fingerprint="f", layer_of="enc", layer_depth=10),
                EncoderInfo(name="enc@b.2", ref="r", fingerprint="f", layer_of="enc", layer_depth=2),
                EncoderInfo(name="enc@last4_cls_avgpool", ref="r", fingerprint="f", layer_of="enc")]
    provenance = Provenance(created=datetime.now(timezone.utc), profile="quick", seed=0, python="3", platform="x",
                            packages={}, command=[])
    (table,) = layer_tables(Scorecard(provenance=provenance, encoders=encoders, records=records))
    assert table.encoder == "enc" and table.layers == ["b.2", "b.10", "last4_cls_avgpool", "last"]
    cells = table.rows[("knn", "digits", "top1_k20")]
    assert {layer: r.value for layer, r in cells.items()} == {"last": 0.5, "b.10": 0.4, "b.2": 0.3,
                                                              "last4_cls_avgpool": 0.45}
