"""FeatureStore: features equal a plain embed loop, one forward pass per key, a safe disk cache,
and a clear error for every way an encoder can break the contract."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split
from pytest_visprobe.encoders.base import Encoder
from pytest_visprobe.errors import CacheCorruptWarning, ConfigError, EncoderOutputError
from pytest_visprobe.features import FeatureStore, autocast_for, resolve_device, to_float_images

CPU = torch.device("cpu")


class TinyEncoder(Encoder):
    """A seeded conv net with a feature map; ``delay`` slows each batch (for the race test)."""

    input_size = (12, 12)

    def __init__(self, seed: int = 0, delay: float = 0.0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.delay = delay
        self.name = "tiny"

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        images = nn.functional.interpolate(images, size=self.input_size, mode="bilinear")
        return self.body(images - 0.5)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_map(images).mean(dim=(2, 3))


class Broken(Encoder):
    """Breaks the contract in the chosen way on the second batch (so the first one passes)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.calls = 0
        self.name = f"broken-{how}"

    def embed(self, images: torch.Tensor):
        self.calls += 1
        out = images.mean(dim=(2, 3))
        if self.calls < 2:
            return out
        if self.how == "rank":
            return out[:, :, None]
        if self.how == "rows":
            return out[:-1]
        if self.how == "nan":
            out = out.clone()
            out[1, 0] = float("nan")
            return out
        if self.how == "inf":
            return out / 0.0
        if self.how == "type":
            return out.tolist()
        raise RuntimeError("CUDA kernel exploded")


def make_dataset(n: int = 50, size: int = 16, seed: int = 0, name: str = "toy") -> Dataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, size=n)
    split = Split(images=ArrayImages(images), labels=labels)
    return Dataset(name=name, splits={"train": split, "test": split.subset(range(10))},
                   class_names=["a", "b", "c"], targets=frozenset({"label"}), fingerprint=f"toy-{seed}-{n}")


def plain_embed(encoder: Encoder, dataset: Dataset, split: str = "train", view: str = "embed") -> torch.Tensor:
    """The obvious reference: all images at once, no store."""
    array = dataset.split(split).images.get(range(len(dataset.split(split))))
    images = torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        return encoder.embed(images) if view == "embed" else encoder.feature_map(images)


# ----------------------------------------------------------------------------- values and reuse


@pytest.mark.parametrize("batch_size", [16, 64])
def test_features_equal_a_plain_embed_loop(batch_size: int) -> None:
    encoder, dataset = TinyEncoder(), make_dataset()
    store = FeatureStore(cache_dir=None, device=CPU, batch_size=batch_size, map_dtype=torch.float16)
    features = store.get(encoder, dataset, "train")
    assert features.dtype == torch.float32 and features.device.type == "cpu" and features.shape == (50, 8)
    torch.testing.assert_close(features, plain_embed(encoder, dataset), rtol=1e-5, atol=1e-6)
    assert store.counters.forward_passes == -(-50 // batch_size)
    fmap = store.get(encoder, dataset, "train", view="feature_map")
    assert fmap.shape == (50, 8, 6, 6)
    # maps stored as float16 are the float32 maps rounded, nothing else
    assert fmap.dtype == torch.float16
    full = FeatureStore(cache_dir=None, device=CPU, batch_size=batch_size, map_dtype=torch.float32)
    fmap32 = full.get(encoder, dataset, "train", view="feature_map")
    torch.testing.assert_close(fmap32, plain_embed(encoder, dataset, view="feature_map"), rtol=1e-5, atol=1e-6)
    assert torch.equal(fmap, fmap32.half())


def test_to_float_images_layout_and_range() -> None:
    batch = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    batch[0, 1, 2] = (255, 0, 51)
    out = to_float_images(batch, CPU)
    assert out.shape == (2, 3, 3, 4) and out.dtype == torch.float32
    assert out[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])


def test_memory_reuse_within_a_session() -> None:
    encoder, dataset = TinyEncoder(), make_dataset()
    store = FeatureStore(cache_dir=None, device=CPU, batch_size=16)
    first = store.get(encoder, dataset, "train")
    passes = store.counters.forward_passes
    again = store.get(encoder, dataset, "train")
    assert again is first
    assert store.counters.from_memory == 1 and store.counters.computed == 1
    assert store.counters.forward_passes == passes
    store.get(encoder, dataset, "test")  # another split is another feature set
    assert store.counters.computed == 2


def test_unknown_view() -> None:
    with pytest.raises(ValueError, match="unknown view"):
        FeatureStore(cache_dir=None, device=CPU).get(TinyEncoder(), make_dataset(), "train", view="tokens")


# ----------------------------------------------------------------------------- keys


def test_key_depends_on_everything_that_changes_features() -> None:
    store = FeatureStore(cache_dir=None, device=CPU)
    encoder, dataset = TinyEncoder(), make_dataset()
    base = store.key(encoder, dataset, "train", "embed")
    assert store.key(TinyEncoder(), make_dataset(), "train", "embed") == base  # same content, same key
    changed = TinyEncoder()
    with torch.no_grad():
        changed.body[0].weight[0, 0, 0, 0] += 0.01
    assert store.key(changed, dataset, "train", "embed") != base
    assert store.key(TinyEncoder(seed=1), dataset, "train", "embed") != base
    assert store.key(encoder, make_dataset(seed=1), "train", "embed") != base
    assert store.key(encoder, dataset, "test", "embed") != base
    assert store.key(encoder, dataset, "train", "feature_map") != base


def test_changed_weight_is_not_served_from_cache(tmp_path: Path) -> None:
    """Same object, weight changed after its features were cached: recomputed, not reused."""
    encoder, dataset = TinyEncoder(), make_dataset()
    store = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=64)
    before = store.get(encoder, dataset, "train").clone()
    with torch.no_grad():
        encoder.body[0].bias += 1.0
    after = store.get(encoder, dataset, "train")
    assert store.counters.computed == 2
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, plain_embed(encoder, dataset), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- disk cache


def test_disk_cache_round_trip(tmp_path: Path) -> None:
    encoder, dataset = TinyEncoder(), make_dataset()
    first = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16)
    computed = first.get(encoder, dataset, "train")
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.glob(".tmp-*"))
    second = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16)
    loaded = second.get(TinyEncoder(), make_dataset(), "train")  # fresh but identical objects
    assert second.counters.forward_passes == 0 and second.counters.computed == 0
    assert second.counters.from_disk == 1
    assert torch.equal(loaded, computed)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other-key", "nan"])
def test_corrupt_cache_file_is_recomputed_with_a_warning(tmp_path: Path, damage: str) -> None:
    encoder, dataset = TinyEncoder(), make_dataset()
    # a copy: the store's tensor maps the file that is damaged in place below (the store itself
    # only ever replaces files, so its own mappings never see a file change under them)
    good = FeatureStore(cache_dir=tmp_path, device=CPU).get(encoder, dataset, "train").clone()
    (path,) = tmp_path.glob("*.safetensors")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x89not a safetensors file" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "other-key":  # a valid file, but for another key (e.g. renamed by hand)
        from safetensors.torch import save_file
        save_file({"features": good}, str(path), metadata={"key": "0" * 32})
    else:
        from safetensors.torch import save_file
        bad = good.clone()
        bad[3, 1] = float("nan")
        save_file({"features": bad}, str(path), metadata={"key": path.stem.rsplit("-", 1)[1]})
    store = FeatureStore(cache_dir=tmp_path, device=CPU)
    with pytest.warns(CacheCorruptWarning, match=r"feature cache file .* is unreadable .* recomputing it"):
        again = store.get(encoder, dataset, "train")
    assert store.counters.recomputed_corrupt == 1 and store.counters.computed == 1
    assert torch.equal(again, good)
    # the file was rewritten and is good again
    third = FeatureStore(cache_dir=tmp_path, device=CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptWarning)
        assert torch.equal(third.get(encoder, dataset, "train"), good)
    assert third.counters.from_disk == 1


def test_concurrent_stores_compute_once_and_leave_one_valid_file(tmp_path: Path) -> None:
    """Two workers (threads here, each with its own store and encoder) ask for the same key at once:
    the lock makes one compute and the other read its file; no temp files are left behind."""
    dataset = make_dataset(n=40)
    stores = [FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=8) for _ in range(2)]
    encoders = [TinyEncoder(delay=0.05) for _ in range(2)]
    results: list[torch.Tensor | None] = [None, None]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = stores[i].get(encoders[i], dataset, "train")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(s.counters.computed for s in stores) == [0, 1]
    assert sorted(s.counters.from_disk for s in stores) == [0, 1]
    assert torch.equal(results[0], results[1])
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1 and not list(tmp_path.glob(".tmp-*"))
    from safetensors.torch import load_file
    assert torch.equal(load_file(str(files[0]))["features"], results[0])


# ----------------------------------------------------------------------------- contract checks


@pytest.mark.parametrize(("how", "pattern"), [
    ("rank", r"embed\(\) on toy/train returned shape \(16, 3, 1\) for 16 images; expected \[N, D\]"),
    ("rows", r"returned shape \(15, 3\) for 16 images; expected \[N, D\] with N = 16"),
    ("nan", r"returned NaN or inf for 1 of 16 images"),
    ("inf", r"returned NaN or inf for 16 of 16 images"),
    ("type", r"returned list; expected a Tensor \[N, D\]"),
    ("raise", r"raised RuntimeError in embed\(\) on a batch of shape \(16, 3, 16, 16\).*CUDA kernel exploded"),
])
def test_broken_encoder_gives_a_clear_error(tmp_path: Path, how: str, pattern: str) -> None:
    encoder = Broken(how)
    store = FeatureStore(cache_dir=tmp_path, device=CPU, batch_size=16)
    with pytest.raises(EncoderOutputError, match=pattern) as info:
        store.get(encoder, make_dataset(), "train")
    assert f"'broken-{how}'" in str(info.value)
    assert not list(tmp_path.glob("*.safetensors")), "a failed extraction must not leave a cache file"
    passes = store.counters.forward_passes
    with pytest.raises(EncoderOutputError, match=pattern):  # the next test asking fails at once
        store.get(encoder, make_dataset(), "train")
    assert store.counters.forward_passes == passes


def test_feature_map_rank_is_checked() -> None:
    class FlatMap(TinyEncoder):
        def feature_map(self, images):
            return super().feature_map(images).flatten(2)

    with pytest.raises(EncoderOutputError, match=r"feature_map\(\) .* expected \[N, C, h, w\]"):
        FeatureStore(cache_dir=None, device=CPU).get(FlatMap(), make_dataset(), "train", view="feature_map")


# ----------------------------------------------------------------------------- devices


def test_resolve_device() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_cuda_without_cuda_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"--visprobe-device=cuda, but torch\.cuda\.is_available\(\) is False.*cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"cuda:1"):
        resolve_device("cuda:1")


def test_autocast_for_cpu_is_a_no_op() -> None:
    context = autocast_for(CPU)
    assert isinstance(context, contextlib.nullcontext)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with context:
        assert not torch.is_autocast_enabled("cpu")
        out = a @ b
    assert out.dtype == torch.float32
    assert torch.equal(out, a @ b)


def test_each_xdist_worker_takes_its_own_gpu():
    from pytest_visprobe.features import worker_cuda_index

    assert [worker_cuda_index(f"gw{i}", 2) for i in range(5)] == [0, 1, 0, 1, 0]
    assert worker_cuda_index("main", 4) == 0 and worker_cuda_index("gw3", 0) == 0
    assert str(resolve_device("cpu", "gw1")) == "cpu"  # the mapping only touches a bare cuda
