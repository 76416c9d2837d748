"""Features larger than memory: float16 maps written batch by batch, read memory-mapped, streamed
by the dense kernels with the same numbers as in memory, and a cache size limit (LRU eviction)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_visprobe.errors import EncoderOutputError
from pytest_visprobe.features import FeatureStore
from pytest_visprobe.kernels import dense
from pytest_visprobe.kernels.regions import region_features
from pytest_visprobe.mapped import is_mapped, map_tensor, release

from test_features import TinyEncoder, make_dataset

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- the file and the mapping


def test_cached_maps_are_float16_safetensors_and_equal_in_session_and_from_disk(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    encoder, dataset = TinyEncoder(), make_dataset()
    first = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16, map_dtype=torch.float16)
    computed = first.get(encoder, dataset, "train", view="feature_map")
    embedded = first.get(encoder, dataset, "train")
    assert computed.dtype == torch.float16 and embedded.dtype == torch.float32
    assert is_mapped(computed) and is_mapped(embedded)  # in-session use reads the written file too
    in_memory = FeatureStore(cache_dir=None, device=CPU, batch_size=16, map_dtype=torch.float16).get(
        encoder, dataset, "train", "feature_map")
    assert torch.equal(computed, in_memory)
    # the streamed file is a valid safetensors file for the reference reader
    (path,) = [p for p in tmp_path.glob("*.safetensors") if "feature_map" in p.name]
    reference = load_file(str(path))["features"]
    assert reference.dtype == torch.float16 and torch.equal(reference, in_memory)
    second = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16, map_dtype=torch.float16)
    loaded = second.get(TinyEncoder(), make_dataset(), "train", view="feature_map")
    assert second.counters.from_disk == 1 and second.counters.forward_passes == 0
    assert is_mapped(loaded) and torch.equal(loaded, computed)


def test_map_dtype_is_part_of_the_key(tmp_path: Path) -> None:
    encoder, dataset = TinyEncoder(), make_dataset()
    half = FeatureStore(cache_dir=tmp_path, device=CPU, map_dtype=torch.float16)
    full = FeatureStore(cache_dir=tmp_path, device=CPU)
    assert half.key(encoder, dataset, "train", "feature_map") != full.key(encoder, dataset, "train", "feature_map")
    assert half.key(encoder, dataset, "train", "embed") == full.key(encoder, dataset, "train", "embed")
    assert full.get(encoder, dataset, "train", "feature_map").dtype == torch.float32


def test_mapping_survives_release_and_is_copy_on_write(tmp_path: Path) -> None:
    values = np.arange(60, dtype=np.float16).reshape(3, 4, 5)
    path = tmp_path / "raw.bin"
    path.write_bytes(b"\0" * 16 + values.tobytes())
    tensor = map_tensor(path, 16, np.dtype("<f2"), (3, 4, 5))
    assert is_mapped(tensor) and is_mapped(tensor[1:])  # a view shares the mapping
    assert torch.equal(tensor, torch.from_numpy(values))
    release(tensor)
    assert torch.equal(tensor, torch.from_numpy(values))  # pages come back from the file
    tensor[0, 0, 0] = 99
    assert path.read_bytes()[16:] == values.tobytes()  # the file is never written
    release(torch.zeros(3))  # not mapped: a no-op


def test_batches_of_different_map_shapes_are_a_clear_error(tmp_path: Path) -> None:
    class Growing(TinyEncoder):
        calls = 0

        def feature_map(self, images):
            self.calls += 1
            out = super().feature_map(images)
            return out if self.calls < 2 else out[..., :-1]

    store = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16)
    with pytest.raises(EncoderOutputError, match=r"returned \(8, 6, 5\) per image on one batch and \(8, 6, 6\)"):
        store.get(Growing(), make_dataset(), "train", view="feature_map")
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob(".tmp-*"))


def test_unwritable_cache_falls_back_to_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_visprobe.features as features

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(features, "safetensors_header", fail)
    store = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16)
    with pytest.warns(UserWarning, match="could not write feature cache .* computing in memory"):
        maps = store.get(TinyEncoder(), make_dataset(), "train", view="feature_map")
    expected = FeatureStore(cache_dir=None, device=CPU, batch_size=16).get(TinyEncoder(), make_dataset(), "train",
                                                                         "feature_map")
    assert torch.equal(maps, expected) and not list(tmp_path.glob(".tmp-*"))


# ----------------------------------------------------------------------------- streaming kernels


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of one or two images, so every streaming loop runs many times."""
    monkeypatch.setattr(dense, "CHUNK_BYTES", 4 * 8 * 6 * 6 * 2)


def _mapped_maps(tmp_path: Path, n: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    values = (rng.normal(size=(n, 8, 6, 6)) * rng.uniform(0.1, 5, size=(1, 8, 1, 1)) + 3).astype(np.float16)
    values[:, 2] = 1.5  # a constant channel gets scale 1
    path = tmp_path / "maps.bin"
    path.write_bytes(values.tobytes())
    return map_tensor(path, 0, np.dtype("<f2"), values.shape), torch.from_numpy(values.copy())


def test_channel_standardizer_streams_to_numpy_mean_and_std(tmp_path: Path, tiny_chunks) -> None:
    mapped, _ = _mapped_maps(tmp_path)
    mean, scale = dense.channel_standardizer(mapped)
    positions = mapped.numpy().astype(np.float64).transpose(1, 0, 2, 3).reshape(8, -1)
    want_scale = positions.std(axis=1, ddof=1)
    want_scale[2] = 1.0
    np.testing.assert_allclose(mean.numpy(), positions.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(scale.numpy(), want_scale, rtol=1e-6)


def test_region_features_in_chunks_equal_one_roi_align(tmp_path: Path, tiny_chunks) -> None:
    from torchvision.ops import roi_align

    mapped, _ = _mapped_maps(tmp_path, n=5)
    rng = np.random.default_rng(1)
    boxes = []
    for k in (1, 3, 0, 2, 1):
        corner = rng.uniform(0, 30, size=(k, 2))
        boxes.append(np.concatenate([corner, corner + rng.uniform(4, 18, size=(k, 2))], axis=1).astype(np.float32))
    got = region_features(mapped, boxes, image_size=(48, 48), roi_size=2)
    rois = [torch.from_numpy(b) * (6 / 48) for b in boxes]
    want = roi_align(mapped.float(), rois, output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=True).flatten(1)
    assert got.shape == (7, 8 * 4)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_conv_head_on_mapped_maps_equals_the_same_maps_in_memory(tmp_path: Path, tiny_chunks) -> None:
    """Cache-read (mapped, released every batch) and in-session (in memory) maps: the same head."""
    mapped, in_memory = _mapped_maps(tmp_path)
    targets = torch.from_numpy(np.random.default_rng(2).integers(0, 3, size=(20, 6, 6)))

    def loss(logits, rows):
        return torch.nn.functional.cross_entropy(logits, targets[rows])

    kwargs = dict(epochs=3, batch_size=4, lr=0.05, weight_decay=1e-3, seed=0)
    a = dense.fit_conv_head(mapped, 3, loss, **kwargs)
    b = dense.fit_conv_head(in_memory, 3, loss, **kwargs)
    for field in ("mean", "scale", "weight", "bias"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert torch.equal(dense.in_chunks(mapped, lambda m, _: a(m), chunk=3), a(in_memory))


# ----------------------------------------------------------------------------- size limit


def _fill(store: FeatureStore, names: list[str]) -> dict[str, Path]:
    paths = {}
    for name in names:
        dataset = make_dataset(name=name)
        store.get(TinyEncoder(), dataset, "train")
        paths[name] = store.path_for(store.key(TinyEncoder(), dataset, "train", "embed"), TinyEncoder(), dataset,
                                     "train", "embed")
    return paths


def test_cache_limit_evicts_least_recently_used_files_not_in_use(tmp_path: Path) -> None:
    old = _fill(FeatureStore(cache_dir=tmp_path, device=CPU), ["a", "b", "c"])
    size = old["a"].stat().st_size  # every file holds 50 × 8 float32
    now = time.time()
    for age, name in zip((300, 100, 200), "abc"):  # least recently used: a, then c, then b
        os.utime(old[name], (now - age, now - age))
    # a later session reads b (so touches it), then writes d with room for three files
    store = FeatureStore(cache_dir=tmp_path, device=CPU, max_bytes=3 * size)
    store.get(TinyEncoder(), make_dataset(name="b"), "train")
    assert old["b"].stat().st_mtime > now - 10
    new = _fill(store, ["d"])
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == sorted(p.name for p in (old["b"], old["c"], new["d"]))
    # a limit below what this session uses keeps its own files (b, d) and evicts the rest
    tight = FeatureStore(cache_dir=tmp_path, device=CPU, max_bytes=1)
    tight.get(TinyEncoder(), make_dataset(name="b"), "train")
    _fill(tight, ["e"])
    assert sorted(tmp_path.glob("*.safetensors")) == sorted([old["b"], tight.path_for(
        tight.key(TinyEncoder(), make_dataset(name="e"), "train", "embed"), TinyEncoder(),
        make_dataset(name="e"), "train", "embed")])
    assert torch.equal(tight.get(TinyEncoder(), make_dataset(name="b"), "train"),
                       FeatureStore(cache_dir=None, device=CPU).get(TinyEncoder(), make_dataset(name="b"), "train"))


def test_cache_limit_skips_a_file_another_process_has_locked(tmp_path: Path) -> None:
    from filelock import FileLock

    old = _fill(FeatureStore(cache_dir=tmp_path, device=CPU), ["a", "b"])
    os.utime(old["a"], (time.time() - 500, time.time() - 500))
    store = FeatureStore(cache_dir=tmp_path, device=CPU, max_bytes=1)
    with FileLock(str(old["a"]) + ".lock"):  # held as if another worker were reading it
        _fill(store, ["c"])
    left = {p.name for p in tmp_path.glob("*.safetensors")}
    assert old["a"].name in left and old["b"].name not in left


def test_cache_limit_and_map_dtype_options_parse() -> None:
    import argparse

    from pytest_visprobe.runner.options import map_dtype, positive_float

    assert positive_float("0.5") == 0.5
    for bad in ("0", "-1", "inf", "nan", "lots"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a number > 0"):
            positive_float(bad)
    assert map_dtype("float32") == "float32"
    with pytest.raises(argparse.ArgumentTypeError, match="expected one of float16, float32"):
        map_dtype("bfloat16")
