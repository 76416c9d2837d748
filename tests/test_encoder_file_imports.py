"""Encoder files import like scripts: a module beside the file is importable while it loads, and
two files that each import a sibling of the same name get their own, never the other's."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pytest_visprobe.encoders.refs import parse_encoder_ref
from pytest_visprobe.encoders import load_encoder
from pytest_visprobe.errors import EncoderLoadError

ENCODER = """
    from mynet import Net

    def create_encoder():
        return Net()
"""


def _write_pair(folder: Path, width: int) -> Path:
    """``folder/enc.py`` importing ``folder/mynet.py``, whose Net outputs ``width`` numbers."""
    folder.mkdir()
    (folder / "mynet.py").write_text(textwrap.dedent(f"""
        import torch
        from torch import nn

        class Net(nn.Module):
            def forward(self, x):
                return nn.functional.adaptive_avg_pool2d(x, 1).flatten(1).repeat(1, {width})
    """))
    (folder / "enc.py").write_text(textwrap.dedent(ENCODER))
    return folder / "enc.py"


def test_sibling_module_imports_and_does_not_leak(tmp_path: Path) -> None:
    first, second = _write_pair(tmp_path / "a", 2), _write_pair(tmp_path / "b", 5)
    path_before = list(sys.path)
    images = torch.rand(1, 3, 8, 8)
    assert load_encoder(parse_encoder_ref(str(first))).embed(images).shape == (1, 3 * 2)
    assert load_encoder(parse_encoder_ref(str(second))).embed(images).shape == (1, 3 * 5)  # b's mynet, not a's
    assert "mynet" not in sys.modules and sys.path == path_before


def test_unrelated_module_of_the_same_name_does_not_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``mynet`` already imported from elsewhere is set aside while the file loads, then restored."""
    stale = type(sys)("mynet")
    monkeypatch.setitem(sys.modules, "mynet", stale)
    enc = load_encoder(parse_encoder_ref(str(_write_pair(tmp_path / "c", 3))))
    assert enc.embed(torch.rand(1, 3, 8, 8)).shape == (1, 9)
    assert sys.modules["mynet"] is stale


def test_missing_sibling_error_says_what_is_true(tmp_path: Path) -> None:
    (tmp_path / "enc.py").write_text(textwrap.dedent(ENCODER))
    with pytest.raises(EncoderLoadError, match=r"ModuleNotFoundError: No module named 'mynet' \(enc\.py:2\)\. "
                                               r"Fix the file; it is imported as `python .*enc\.py` would run it, "
                                               r"with its folder on sys\.path\."):
        load_encoder(parse_encoder_ref(str(tmp_path / "enc.py")))
