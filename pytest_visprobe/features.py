"""FeatureStore: one forward pass per encoder × dataset × split × view, cached in memory and on disk.

Disk entries are safetensors files written atomically (temp file + ``os.replace``) under a
file lock, so ``pytest -n N`` workers never compute the same set twice nor read half a file.
A file that cannot be read is reported, deleted and recomputed — it never fails a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from pytest_visprobe.datasets.base import Dataset
from pytest_visprobe.encoders.base import Encoder
from pytest_visprobe.errors import CacheCorruptWarning, ConfigError, EncoderOutputError

FORMAT_VERSION = "2"  # 2: features computed after an RPGD attack before the fix of _attack_mode could be from BatchNorm in training mode
VIEWS = ("embed", "feature_map")


def worker_cuda_index(worker_id: str, device_count: int) -> int:
    """The GPU an xdist worker uses: its index (``gw3`` → 3) modulo the devices; 0 outside xdist."""
    digits = worker_id.removeprefix("gw")
    return int(digits) % device_count if digits.isdigit() and device_count > 0 else 0


def resolve_device(name: str, worker_id: str = "main") -> torch.device:
    """``auto`` → CUDA when present, else CPU. An unavailable explicit choice is a clear error.

    A bare ``cuda`` (or ``auto`` on a CUDA machine) under ``pytest -n N`` gives each worker its
    own GPU, worker index modulo the device count; ``cuda:K`` is taken as given.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", worker_cuda_index(worker_id, torch.cuda.device_count()))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"--visprobe-device={name}, but torch.cuda.is_available() is False (torch "
            f"{torch.__version__}). Use --visprobe-device=cpu, or auto to pick what is present."
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--visprobe-device=mps, but MPS is not available; use cpu or auto.")
    return torch.device(name)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the fast path); full precision elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_float_images(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` → float ``[B, 3, H, W]`` in [0, 1] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


@dataclass
class FeatureCounters:
    """What the store did this session; reported in the terminal summary and the scorecard."""

    computed: int = 0  # feature sets computed by a forward pass
    from_disk: int = 0  # feature sets read from the on-disk cache
    from_memory: int = 0  # feature sets reused within the session
    forward_passes: int = 0  # batches run through an encoder
    recomputed_corrupt: int = 0  # cache files that could not be read and were recomputed

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class FeatureStore:
    cache_dir: Path | None
    device: torch.device
    batch_size: int = 64
    counters: FeatureCounters = field(default_factory=FeatureCounters)
    _memory: dict[str, torch.Tensor] = field(default_factory=dict)
    _placed: set[int] = field(default_factory=set)
    _failed: dict[str, str] = field(default_factory=dict)  # key -> the contract error it raised
    #: ``track(desc, batches, images)`` -> a context yielding ``tick()`` (runner/progress.py); None: silent
    progress: Any = None

    def get(self, encoder: Encoder, dataset: Dataset, split: str, view: str = "embed") -> torch.Tensor:
        """Features of every image in ``dataset[split]``: float32 on the CPU, ``[N, D]`` or ``[N, C, h, w]``."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
        key = self.key(encoder, dataset, split, view)
        if key in self._memory:
            self.counters.from_memory += 1
            return self._memory[key]
        if key in self._failed:  # a broken encoder fails every later test at once, not after a full pass
            raise EncoderOutputError(self._failed[key])
        try:
            if self.cache_dir is None:
                features = self._compute(encoder, dataset, split, view)
            else:
                features = self._get_via_disk(key, encoder, dataset, split, view)
        except EncoderOutputError as exc:
            self._failed[key] = str(exc)
            raise
        self._memory[key] = features
        return features

    def key(self, encoder: Encoder, dataset: Dataset, split: str, view: str) -> str:
        precision = "bf16" if self.device.type == "cuda" else "fp32"
        parts = (FORMAT_VERSION, encoder.fingerprint(), dataset.name, dataset.fingerprint, split,
                 len(dataset.split(split)), view, precision)
        return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()

    def path_for(self, key: str, encoder: Encoder, dataset: Dataset, split: str, view: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{encoder.name}-{dataset.name}-{split}-{view}")
        assert self.cache_dir is not None
        return self.cache_dir / f"{stem[:80]}-{key}.safetensors"

    # ------------------------------------------------------------------ disk cache

    def _get_via_disk(self, key: str, encoder: Encoder, dataset: Dataset, split: str, view: str) -> torch.Tensor:
        from filelock import FileLock

        assert self.cache_dir is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.path_for(key, encoder, dataset, split, view)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                features = self._read(path, key, expected_rows=len(dataset.split(split)))
                if features is not None:
                    self.counters.from_disk += 1
                    return features
            features = self._compute(encoder, dataset, split, view)
            self._write(path, key, features)
        return features

    def _read(self, path: Path, key: str, expected_rows: int) -> torch.Tensor | None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                if (handle.metadata() or {}).get("key") != key:
                    raise ValueError("key in metadata does not match the file name")
                features = handle.get_tensor("features")
            if features.shape[0] != expected_rows or not torch.isfinite(features).all():
                raise ValueError(f"unexpected shape {tuple(features.shape)} or non-finite values")
            return features
        except Exception as exc:  # any unreadable file is recomputed, never fatal
            warnings.warn(
                f"visprobe: feature cache file {path} is unreadable ({type(exc).__name__}: {exc}); "
                f"recomputing it. Nothing else is affected.",
                CacheCorruptWarning,
                stacklevel=2,
            )
            self.counters.recomputed_corrupt += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _write(self, path: Path, key: str, features: torch.Tensor) -> None:
        from safetensors.torch import save_file

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file({"features": features.contiguous()}, tmp, metadata={"key": key})
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            warnings.warn(f"visprobe: could not write feature cache {path}: {exc}", stacklevel=2)

    # ------------------------------------------------------------------ computing

    def _compute(self, encoder: Encoder, dataset: Dataset, split: str, view: str) -> torch.Tensor:
        images = dataset.split(split).images
        if id(encoder) not in self._placed:
            encoder.to(self.device).eval()
            self._placed.add(id(encoder))
        forward = encoder.embed if view == "embed" else encoder.feature_map
        n = len(images)
        starts = range(0, n, self.batch_size)
        outputs: list[torch.Tensor] = []
        desc = f"{encoder.name} · {dataset.name}/{split} ({view})"
        track = self.progress.track(desc, len(starts), n) if self.progress is not None \
            else contextlib.nullcontext(lambda: None)
        with torch.inference_mode(), autocast_for(self.device), track as tick:
            for raw in prefetched(images, starts, self.batch_size, n):
                batch = to_float_images(raw, self.device)
                try:
                    out = forward(batch)
                except EncoderOutputError:
                    raise
                except Exception as exc:
                    raise EncoderOutputError(
                        f"encoder {encoder.name!r} raised {type(exc).__name__} in {view}() on a batch "
                        f"of shape {tuple(batch.shape)} (float RGB in [0, 1]) from {dataset.name}/{split}: "
                        f"{exc}. Fix the encoder so that {view}() accepts N×3×H×W images in [0, 1]."
                    ) from exc
                self.counters.forward_passes += 1
                outputs.append(_check_output(out, batch.shape[0], view, encoder.name, dataset.name, split).float().cpu())
                tick()
        self.counters.computed += 1
        return torch.cat(outputs)


def prefetched(images: Any, starts: range, batch_size: int, n: int) -> Iterator[np.ndarray]:
    """The uint8 batches in order, each next one decoded in a background thread while the caller
    runs the encoder on the current one (file decoding then overlaps the forward pass)."""
    rows = [range(start, min(start + batch_size, n)) for start in starts]
    if len(rows) < 2:
        yield from (images.get(r) for r in rows)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="visprobe-prefetch") as pool:
        pending = pool.submit(images.get, rows[0])
        for k in range(len(rows)):
            batch = pending.result()
            if k + 1 < len(rows):
                pending = pool.submit(images.get, rows[k + 1])
            yield batch


def _check_output(out: object, batch: int, view: str, name: str, dataset: str, split: str) -> torch.Tensor:
    """The contract, checked on every batch: a tensor of the right rank and rows, all finite."""
    where = f"encoder {name!r} {view}() on {dataset}/{split}"
    expected = "[N, D]" if view == "embed" else "[N, C, h, w]"
    if not isinstance(out, torch.Tensor):
        raise EncoderOutputError(f"{where} returned {type(out).__name__}; expected a Tensor {expected}.")
    rank = 2 if view == "embed" else 4
    if out.ndim != rank or out.shape[0] != batch:
        raise EncoderOutputError(
            f"{where} returned shape {tuple(out.shape)} for {batch} images; expected {expected} "
            f"with N = {batch}. Pool or flatten inside {view}() so each image gives one "
            f"{'vector' if rank == 2 else 'map'}."
        )
    finite = torch.isfinite(out.reshape(batch, -1)).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise EncoderOutputError(
            f"{where} returned NaN or inf for {bad} of {batch} images. Check the weights (a "
            f"diverged checkpoint?) and the normalisation inside the encoder; inputs are in [0, 1]."
        )
    return out
