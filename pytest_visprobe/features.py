"""FeatureStore: one forward pass per encoder × dataset × split × view, cached in memory and on disk.

Disk entries are safetensors files written atomically (temp file + ``os.replace``) under a
file lock, so ``pytest -n N`` workers never compute the same set twice nor read half a file.
A file that cannot be read is reported, deleted and recomputed — it never fails a run.

Features larger than memory: batches are written to the file as they come out of the encoder,
and the file is then read memory-mapped (mapped.py), in this session as in later ones, so both
see the same values. Feature maps are stored as ``map_dtype`` (float16 by default: half the
bytes, and the dense heads standardise and train in float32 anyway); pooled embeddings stay
float32. With ``max_bytes``, least-recently-used files are deleted after each write, never one
this session uses nor one another process holds the lock of.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
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

#: 2: maps stored as map_dtype, written batch by batch; and features computed after an RPGD attack
#: before its fix could come from BatchNorm in training mode, so no version-1 file is trusted
FORMAT_VERSION = "2"
VIEWS = ("embed", "feature_map")
#: torch dtype -> (safetensors dtype tag, numpy dtype)
_STORED = {torch.float16: ("F16", np.dtype("<f2")), torch.float32: ("F32", np.dtype("<f4"))}
MAP_DTYPES = {"float16": torch.float16, "float32": torch.float32}
_CHECK_ROWS_BYTES = 64 << 20  # finiteness check on read, this many bytes at a time


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


def to_uint8_images(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` → uint8 ``[B, 3, H, W]`` on ``device`` (a view, channels first)."""
    tensor = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.permute(0, 3, 1, 2)


def to_float_images(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` → float ``[B, 3, H, W]`` in [0, 1] on ``device``."""
    return to_uint8_images(batch, device).float().div_(255.0)


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
    map_dtype: torch.dtype = torch.float32  # how feature maps are stored; float16 halves them (embeddings: float32)
    max_bytes: int | None = None  # cache size limit; None: unbounded
    counters: FeatureCounters = field(default_factory=FeatureCounters)
    _memory: dict[str, torch.Tensor] = field(default_factory=dict)
    _placed: set[int] = field(default_factory=set)
    _failed: dict[str, str] = field(default_factory=dict)  # key -> the contract error it raised
    _in_use: set[Path] = field(default_factory=set)  # files this session read or wrote: never evicted
    #: ``track(desc, batches, images)`` -> a context yielding ``tick()`` (runner/progress.py); None: silent
    progress: Any = None

    def __post_init__(self) -> None:
        if self.map_dtype not in _STORED:
            raise ConfigError(f"feature maps can be stored as {sorted(MAP_DTYPES)}, not {self.map_dtype}.")

    def get(self, encoder: Encoder, dataset: Dataset, split: str, view: str = "embed") -> torch.Tensor:
        """Features of every image in ``dataset[split]`` on the CPU: ``[N, D]`` float32 or
        ``[N, C, h, w]`` in ``map_dtype``; memory-mapped when the disk cache is on."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; expected one of {VIEWS}")
        key = self.key(encoder, dataset, split, view)
        if key in self._memory:
            self.counters.from_memory += 1
            return self._memory[key]
        if key in self._failed:  # a broken encoder fails every later test at once, not after a full pass
            raise EncoderOutputError(self._failed[key])
        group = getattr(encoder, "layer_group", None)
        if group is not None and view == "embed":
            return self._get_layers(encoder, group, dataset, split)
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

    def _get_layers(self, encoder: Encoder, group: Any, dataset: Dataset, split: str) -> torch.Tensor:
        """A layer view's features, with every sibling layer of its group (encoders/layers.py) that
        is neither in memory nor on disk computed in the same forward pass and stored too."""
        views = [v for v in group.views if self.key(v, dataset, split, "embed") not in self._memory]
        keys = {v.layer: self.key(v, dataset, split, "embed") for v in views}
        rows = len(dataset.split(split))
        try:
            if self.cache_dir is None:
                outs = self._compute_many(group, views, dataset, split)
            else:
                outs = self._layers_via_disk(group, views, keys, dataset, split, rows)
        except EncoderOutputError as exc:
            for key in keys.values():
                self._failed[key] = str(exc)
            raise
        for view in views:
            self._memory[keys[view.layer]] = outs[view.layer]
        return self._memory[self.key(encoder, dataset, split, "embed")]

    def _layers_via_disk(self, group: Any, views: list, keys: dict[str, str], dataset: Dataset, split: str,
                         rows: int) -> dict[str, torch.Tensor]:
        from filelock import FileLock

        assert self.cache_dir is not None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        paths = {v.layer: self.path_for(keys[v.layer], v, dataset, split, "embed") for v in views}
        outs: dict[str, torch.Tensor] = {}
        with contextlib.ExitStack() as stack:
            for layer in sorted(paths, key=lambda layer: str(paths[layer])):  # one order: no deadlock
                stack.enter_context(FileLock(str(paths[layer]) + ".lock"))
            for layer, path in paths.items():
                if path.exists():
                    features = self._read(path, keys[layer], rows, torch.float32)
                    if features is not None:
                        self.counters.from_disk += 1
                        outs[layer] = features
            missing = [v for v in views if v.layer not in outs]
            if missing:
                targets = [(paths[v.layer], keys[v.layer]) for v in missing]
                try:
                    self._write_many(targets, self._layer_batches(group, missing, dataset, split), rows)
                except _WriteFailed as exc:
                    warnings.warn(f"visprobe: could not write feature cache for {group.source.name}'s layers: "
                                  f"{exc}; computing in memory", stacklevel=2)
                    outs.update(self._compute_many(group, missing, dataset, split))
                else:
                    self.counters.computed += len(missing)
                    for view in missing:
                        self._in_use.add(paths[view.layer])
                        outs[view.layer] = open_features(paths[view.layer], keys[view.layer], rows, torch.float32,
                                                         check_finite=False)
        self._evict()
        return outs

    def _compute_many(self, group: Any, views: list, dataset: Dataset, split: str) -> dict[str, torch.Tensor]:
        batches = list(self._layer_batches(group, views, dataset, split))
        self.counters.computed += len(views)
        return {v.layer: torch.cat([b[i] for b in batches]) for i, v in enumerate(views)}

    def _layer_batches(self, group: Any, views: list, dataset: Dataset, split: str) -> Iterator[list[torch.Tensor]]:
        """The views' features batch by batch, one forward pass of their source per batch."""
        layers = [v.layer for v in views]

        def forward(batch: torch.Tensor) -> list[torch.Tensor]:
            try:
                out = group.embed(batch, layers)
            except EncoderOutputError:
                raise
            except Exception as exc:
                raise EncoderOutputError(
                    f"encoder {group.source.name!r} raised {type(exc).__name__} reading layers {', '.join(layers)} "
                    f"on a batch of shape {tuple(batch.shape)} from {dataset.name}/{split}: {exc}. Fix the "
                    f"encoder, or choose other layers with --visprobe-layers."
                ) from exc
            return [check_output(out[v.layer], batch.shape[0], "embed", v.name, dataset.name, split) for v in views]

        desc = f"{group.source.name} · {dataset.name}/{split} ({len(views)} layers)"
        yield from self._pass(group.source, dataset, split, forward, desc, [v.name for v in views], "embed")

    def stored_dtype(self, view: str) -> torch.dtype:
        return self.map_dtype if view == "feature_map" else torch.float32

    def key(self, encoder: Encoder, dataset: Dataset, split: str, view: str) -> str:
        precision = "bf16" if self.device.type == "cuda" else "fp32"
        parts = (FORMAT_VERSION, encoder.fingerprint(), dataset.name, dataset.fingerprint, split,
                 len(dataset.split(split)), view, precision, _STORED[self.stored_dtype(view)][0])
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
        dtype = self.stored_dtype(view)
        with FileLock(str(path) + ".lock"):
            if path.exists():
                features = self._read(path, key, len(dataset.split(split)), dtype)
                if features is not None:
                    self.counters.from_disk += 1
                    return features
            try:
                self._write(path, key, self._batches(encoder, dataset, split, view), len(dataset.split(split)))
            except _WriteFailed as exc:  # disk full, read-only cache: features in memory, the run goes on
                warnings.warn(f"visprobe: could not write feature cache {path}: {exc}; computing in memory",
                              stacklevel=2)
                return self._compute(encoder, dataset, split, view)
            self.counters.computed += 1
            self._in_use.add(path)
            features = open_features(path, key, len(dataset.split(split)), dtype, check_finite=False)
        self._evict()
        return features

    def _read(self, path: Path, key: str, expected_rows: int, dtype: torch.dtype) -> torch.Tensor | None:
        try:
            features = open_features(path, key, expected_rows, dtype, check_finite=True)
        except Exception as exc:  # any unreadable file is recomputed, never fatal
            warnings.warn(
                f"visprobe: feature cache file {path} is unreadable ({type(exc).__name__}: {exc}); "
                f"recomputing it. Nothing else is affected.",
                CacheCorruptWarning,
                stacklevel=3,
            )
            self.counters.recomputed_corrupt += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._in_use.add(path)
        with contextlib.suppress(OSError):
            os.utime(path)  # its mtime is its last use, for the least-recently-used eviction
        return features

    def _write(self, path: Path, key: str, batches: Iterator[torch.Tensor], rows: int) -> None:
        self._write_many([(path, key)], ([batch] for batch in batches), rows)

    def _write_many(self, targets: list[tuple[Path, str]], batches: Iterator[list[torch.Tensor]], rows: int) -> None:
        """Stream each batch's tensors into one safetensors file per target (header from the first
        batch's shape), renamed into place only when all are complete. A failing file operation is
        ``_WriteFailed``."""
        tmps: list[str] = []
        handles = []
        try:
            try:
                for path, _ in targets:
                    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
                    tmps.append(tmp)
                    handles.append(os.fdopen(fd, "wb"))
            except OSError as exc:
                raise _WriteFailed(exc) from exc
            written = 0
            for batch in batches:  # encoder and dataset errors pass through as they are
                try:
                    for handle, (_, key), part in zip(handles, targets, batch):
                        if not written:
                            handle.write(safetensors_header(key, part.dtype, (rows, *part.shape[1:])))
                        handle.write(part.contiguous().numpy().tobytes())
                except OSError as exc:
                    raise _WriteFailed(exc) from exc
                written += batch[0].shape[0]
            if not written:
                raise _WriteFailed("an empty split: nothing to cache")
            try:
                for handle in handles:
                    handle.close()
                for tmp, (path, _) in zip(tmps, targets):
                    os.replace(tmp, path)
            except OSError as exc:
                raise _WriteFailed(exc) from exc
        except BaseException:
            for handle in handles:
                with contextlib.suppress(OSError):
                    handle.close()
            for tmp in tmps:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise

    def _evict(self) -> None:
        """Delete least-recently-used feature files until the cache fits ``max_bytes``."""
        from filelock import FileLock, Timeout

        if self.max_bytes is None or self.cache_dir is None:
            return
        files = []
        for path in self.cache_dir.glob("*.safetensors"):
            with contextlib.suppress(OSError):
                files.append((path.stat(), path))
        total = sum(st.st_size for st, _ in files)
        for st, path in sorted(files, key=lambda f: f[0].st_mtime):
            if total <= self.max_bytes:
                break
            if path in self._in_use:
                continue
            try:  # a file another worker is reading or writing right now is skipped
                with FileLock(str(path) + ".lock", timeout=0):
                    path.unlink()
            except (Timeout, OSError):
                continue
            total -= st.st_size

    # ------------------------------------------------------------------ computing

    def _compute(self, encoder: Encoder, dataset: Dataset, split: str, view: str) -> torch.Tensor:
        """All batches in memory (no disk cache), rounded to the stored dtype like a cached file."""
        features = torch.cat(list(self._batches(encoder, dataset, split, view)))
        self.counters.computed += 1
        return features

    def _batches(self, encoder: Encoder, dataset: Dataset, split: str, view: str) -> Iterator[torch.Tensor]:
        """The encoder's checked output, batch by batch, on the CPU in the stored dtype."""
        forward = encoder.embed if view == "embed" else encoder.feature_map

        def checked(batch: torch.Tensor) -> list[torch.Tensor]:
            return [encode_batch(forward, batch, view, encoder.name, dataset.name, split)]

        desc = f"{encoder.name} · {dataset.name}/{split} ({view})"
        for outs in self._pass(encoder, dataset, split, checked, desc, [encoder.name], view):
            yield outs[0]

    def _pass(self, encoder: Encoder, dataset: Dataset, split: str, forward: Any, desc: str, names: list[str],
              view: str) -> Iterator[list[torch.Tensor]]:
        """One forward pass over a split: ``forward(batch)`` gives one checked tensor per name;
        each batch's tensors on the CPU in the stored dtype (every image must give the same shape)."""
        images = dataset.split(split).images
        if id(encoder) not in self._placed:
            encoder.to(self.device).eval()
            self._placed.add(id(encoder))
        dtype = self.stored_dtype(view)
        n = len(images)
        starts = range(0, n, self.batch_size)
        shapes: list[tuple[int, ...]] | None = None
        track = self.progress.track(desc, len(starts), n) if self.progress is not None \
            else contextlib.nullcontext(lambda: None)
        with torch.inference_mode(), autocast_for(self.device), track as tick:
            for raw in prefetched(images, starts, self.batch_size, n):
                batch = to_float_images(raw, self.device)
                outs = forward(batch)
                self.counters.forward_passes += 1
                got = [tuple(out.shape[1:]) for out in outs]
                for name, shape, before in zip(names, got, shapes or got):
                    if shape != before:
                        raise EncoderOutputError(
                            f"encoder {name!r} {view}() on {dataset.name}/{split} returned "
                            f"{shape} per image on one batch and {before} on an earlier one; "
                            f"every image must give the same shape."
                        )
                shapes = got
                yield [out.float().cpu().to(dtype) for out in outs]
                tick()


class _WriteFailed(Exception):
    """Writing a cache file failed (not computing its features)."""


def safetensors_header(key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> bytes:
    """The header of a one-tensor (``features``) safetensors file, padded to 8 bytes as the format does."""
    tag, np_dtype = _STORED[dtype]
    nbytes = int(np.prod(shape)) * np_dtype.itemsize
    header = json.dumps({"__metadata__": {"key": key},
                         "features": {"dtype": tag, "shape": list(shape), "data_offsets": [0, nbytes]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def open_features(path: Path, key: str, expected_rows: int, dtype: torch.dtype, *, check_finite: bool) -> torch.Tensor:
    """The ``features`` tensor of a cache file, memory-mapped; ``ValueError`` when it is not the
    complete file for ``key`` (wrong key, dtype, row count, size, or a non-finite value)."""
    from pytest_visprobe.mapped import map_tensor, release

    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ValueError(f"{size} bytes: shorter than a safetensors header")
        (header_len,) = struct.unpack("<Q", raw)
        if header_len > min(size - 8, 1 << 20):
            raise ValueError(f"header length {header_len} does not fit the file ({size} bytes)")
        header = json.loads(handle.read(header_len))
    if (header.get("__metadata__") or {}).get("key") != key:
        raise ValueError("key in metadata does not match the file name")
    entry = header["features"]
    tag, np_dtype = _STORED[dtype]
    shape = tuple(int(d) for d in entry["shape"])
    begin, end = (int(v) for v in entry["data_offsets"])
    if entry["dtype"] != tag or not shape or shape[0] != expected_rows:
        raise ValueError(f"unexpected dtype {entry['dtype']} or shape {shape}; expected {tag} with {expected_rows} rows")
    if end - begin != int(np.prod(shape)) * np_dtype.itemsize or 8 + header_len + end != size:
        raise ValueError(f"data of {end - begin} bytes does not match shape {shape} and file size {size}")
    features = map_tensor(path, 8 + header_len + begin, np_dtype, shape)
    if check_finite:
        step = max(1, _CHECK_ROWS_BYTES // max(1, features[:1].nbytes))
        for start in range(0, shape[0], step):
            finite = bool(torch.isfinite(features[start:start + step]).all())
            release(features)
            if not finite:
                raise ValueError("non-finite values")
    return features


def prefetched(images: Any, starts: range, batch_size: int, n: int) -> Iterator[np.ndarray]:
    """The uint8 batches in order, each next one decoded in a background thread while the caller
    runs the encoder on the current one (file decoding then overlaps the forward pass)."""
    yield from prefetched_rows(images, [range(start, min(start + batch_size, n)) for start in starts])


def prefetched_rows(images: Any, rows: list[Any]) -> Iterator[np.ndarray]:
    """``images.get(r)`` for each ``r`` of ``rows`` in order, the next decoded in the background."""
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


def encode_batch(forward: Any, batch: torch.Tensor, view: str, name: str, dataset: str, split: str) -> torch.Tensor:
    """``forward(batch)`` with the output contract checked; an error inside the encoder becomes an
    ``EncoderOutputError`` that says what to fix."""
    try:
        out = forward(batch)
    except EncoderOutputError:
        raise
    except Exception as exc:
        raise EncoderOutputError(
            f"encoder {name!r} raised {type(exc).__name__} in {view}() on a batch "
            f"of shape {tuple(batch.shape)} (float RGB in [0, 1]) from {dataset}/{split}: "
            f"{exc}. Fix the encoder so that {view}() accepts N×3×H×W images in [0, 1]."
        ) from exc
    return check_output(out, batch.shape[0], view, name, dataset, split)


def check_output(out: object, batch: int, view: str, name: str, dataset: str, split: str) -> torch.Tensor:
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
