"""Reading a cache's files directly, with no server: numpy memory maps plus the msgpack sidecars."""
import bisect
import hashlib
import json
import os
import re
import warnings

import msgpack
import numpy as np

_SEGMENT = re.compile(r"^(\d+)\.npy$")
_KINDS = ("query", "document")


def content_key(text, prefix=""):
    """The content key of a text: the first 16 bytes of SHA-256 of the UTF-8 of prefix + text."""
    return hashlib.sha256((prefix + text).encode("utf-8")).digest()[:16]


def _read_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def model_prefix(artifacts_dir, model, kind):
    """The text the model puts before a query or document: manifest.json's query_prefix/document_prefix,
    else the sentence-transformers prompts; "" for store-only models (no model folder)."""
    folder = os.path.join(artifacts_dir, "models", model)
    manifest = _read_json(os.path.join(folder, "manifest.json")) or {}
    if isinstance(manifest.get(f"{kind}_prefix"), str):
        return manifest[f"{kind}_prefix"]
    prompts = (_read_json(os.path.join(folder, "config_sentence_transformers.json")) or {}).get("prompts") or {}
    names = ("query",) if kind == "query" else ("document", "passage")
    for name in names:
        if isinstance(prompts.get(name), str):
            return prompts[name]
    return ""


def _open_segment(npy_path):
    """Header of one .npy (only committed rows) and a read-only memmap of them; no vector bytes are read."""
    with open(npy_path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"{npy_path}: unsupported .npy version {version}")
        offset = f.tell()
    if len(shape) != 2 or fortran_order:
        raise ValueError(f"{npy_path}: expected a C-order (rows, dims) array, got shape {shape}")
    rows, dims = shape
    if rows == 0:
        return np.empty((0, dims), dtype)
    return np.memmap(npy_path, dtype=dtype, mode="r", offset=offset, shape=(rows, dims))


def _read_sidecar(path, rows):
    """The first `rows` [key, id] records; a record being appended right now is not one of them."""
    keys, ids = [], []
    if rows == 0:
        return keys, ids
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False)
        try:
            for key, ident in unpacker:
                keys.append(bytes(key) if key is not None else None)
                ids.append(ident)
                if len(ids) == rows:
                    break
        except msgpack.OutOfData:
            pass
    return keys, ids


class LazyVectors:
    """A (rows, dims) read-only view over every segment of a cache, gathering rows from the memory maps on
    indexing: ``v[i]``, ``v[a:b]``, ``v[[3, 1, 4]]``, ``v[mask]``, ``v[rows, cols]``; ``np.asarray(v)``
    reads everything. Results are ordinary numpy arrays (copies).
    """

    def __init__(self, segments, dims, dtype):
        self._segments = segments
        self._starts = []
        total = 0
        for segment in segments:
            self._starts.append(total)
            total += len(segment)
        self._start_array = np.asarray(self._starts, dtype=np.int64)
        self.shape = (total, dims)
        self.dtype = np.dtype(dtype)

    ndim = 2

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"LazyVectors(shape={self.shape}, dtype={self.dtype}, segments={len(self._segments)})"

    def __iter__(self):
        for segment in self._segments:
            for row in segment:
                yield np.array(row)

    def __array__(self, dtype=None, copy=None):
        out = self._gather(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            if not index or index[0] is Ellipsis:
                return np.asarray(self)[index]
            rows = self[index[0]]
            rest = index[1:]
            return rows[rest] if rows.ndim == 1 else rows[(slice(None),) + rest]
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise IndexError(f"row {index} is out of range for {len(self)} rows")
            s = bisect.bisect_right(self._starts, i) - 1
            return np.array(self._segments[s][i - self._starts[s]])
        if isinstance(index, slice):
            return self._gather(np.arange(*index.indices(len(self))))
        rows = np.asarray(index)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise IndexError(f"boolean index of shape {rows.shape} does not match {len(self)} rows")
            rows = np.flatnonzero(rows)
        elif rows.size == 0:
            rows = rows.astype(np.int64)
        elif not np.issubdtype(rows.dtype, np.integer):
            raise IndexError(f"rows must be integers, a slice or a boolean mask, not {rows.dtype}")
        flat = rows.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + len(self), flat)
        if flat.size and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        return self._gather(flat).reshape(rows.shape + (self.shape[1],))

    def _gather(self, rows):
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        if not len(rows):
            return out
        which = np.searchsorted(self._start_array, rows, side="right") - 1
        for s in np.unique(which):
            picked = which == s
            local = rows[picked] - self._starts[s]
            segment = self._segments[s]
            if len(local) > 1 and np.all(np.diff(local) == 1):
                out[picked] = segment[local[0]:local[-1] + 1]  # one sequential read
            else:
                out[picked] = segment[local]
        return out


class CacheFiles:
    """One kind of one model's cache, as read from its files by ``open_cache``.

    ``ids`` and ``keys``: one entry per row (None where a row has none); ``vectors``: a ``LazyVectors`` over
    every row in file order; ``get(ids)`` and ``lookup_texts(texts)`` answer as the server would (the newest
    row for an id or key wins). A snapshot: rows written after opening are not seen; open again for them.
    """

    def __init__(self, artifacts_dir, model, kind, segments, ids, keys, dims, dtype, prefix, manifest):
        self.artifacts_dir = artifacts_dir
        self.model = model
        self.kind = kind
        self.ids = ids
        self.keys = keys
        self.vectors = LazyVectors(segments, dims, dtype)
        self.prefix = prefix
        self.manifest = manifest
        self._id_rows = None
        self._key_rows = None

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"CacheFiles(model={self.model!r}, kind={self.kind!r}, rows={len(self)}, dims={self.dims}, dtype={self.dtype})"

    @property
    def dims(self):
        return self.vectors.shape[1]

    @property
    def dtype(self):
        return self.vectors.dtype

    @staticmethod
    def _newest(values):
        index = {}
        for row, value in enumerate(values):
            if value is not None:
                index[value] = row  # a later row supersedes an earlier one
        return index

    def rows_of(self, ids=None, keys=None):
        """Row numbers (int64, -1 where absent) of the newest row of each id, or of each 16-byte key."""
        if (ids is None) == (keys is None):
            raise ValueError("pass either ids or keys")
        if ids is not None:
            if self._id_rows is None:
                self._id_rows = self._newest(self.ids)
            index, wanted = self._id_rows, [ids] if isinstance(ids, str) else ids
        else:
            if self._key_rows is None:
                self._key_rows = self._newest(self.keys)
            index, wanted = self._key_rows, [keys] if isinstance(keys, bytes) else keys
        return np.fromiter((index.get(w, -1) for w in wanted), dtype=np.int64, count=len(wanted))

    def _take(self, rows):
        found = rows >= 0
        vectors = np.zeros((len(rows), self.dims), self.dtype)
        if found.any():
            vectors[found] = self.vectors[rows[found]]
        return vectors, found

    def get(self, ids):
        """(vectors, found) for ``ids``: the newest row of each id, zero rows where ``found`` is False."""
        return self._take(self.rows_of(ids=ids))

    def lookup_texts(self, texts):
        """(vectors, found) for ``texts`` by content key, with the model's prefix for this kind applied."""
        if isinstance(texts, str):
            texts = [texts]
        return self._take(self.rows_of(keys=[content_key(t, self.prefix) for t in texts]))


def open_cache(artifacts_dir, model, kind="document", prefix=None):
    """Opens one kind of a model's cache under ``artifacts_dir`` without a server.

    Reads only headers and sidecars; vectors stay memory-mapped until indexed. ``prefix`` overrides the
    model's text prefix for ``lookup_texts`` (default: from ``models/<model>/``). A model with nothing cached
    yet opens empty; a model unknown to the artifacts directory raises FileNotFoundError.
    """
    artifacts_dir = os.fspath(artifacts_dir)
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'query' or 'document', not {kind!r}")
    if not os.path.isdir(artifacts_dir):
        raise FileNotFoundError(f"no artifacts directory at {artifacts_dir}")
    cache_dir = os.path.join(artifacts_dir, "embeddings", model)
    if not os.path.isdir(cache_dir) and not os.path.isdir(os.path.join(artifacts_dir, "models", model)):
        known = sorted(set(_listdir(os.path.join(artifacts_dir, "embeddings")) + _listdir(os.path.join(artifacts_dir, "models"))))
        raise FileNotFoundError(f"no model '{model}' under {artifacts_dir}; found: {', '.join(known) or 'none'}")
    manifest = _read_json(os.path.join(cache_dir, "manifest.json")) or {}
    model_manifest = _read_json(os.path.join(artifacts_dir, "models", model, "manifest.json")) or {}
    dims = int(manifest.get("dims") or model_manifest.get("dims") or 0)
    dtype = np.dtype(manifest.get("dtype") or "<f4")

    kind_dir = os.path.join(cache_dir, kind)
    numbered = sorted((int(m.group(1)), name) for name in _listdir(kind_dir) if (m := _SEGMENT.match(name)))
    segments, ids, keys = [], [], []
    for _, name in numbered:
        path = os.path.join(kind_dir, name)
        segment = _open_segment(path)
        if not len(segment):
            continue
        seg_keys, seg_ids = _read_sidecar(path[:-len(".npy")] + ".keys.msgpack", len(segment))
        if len(seg_ids) < len(segment):
            warnings.warn(f"{path}: {len(segment)} rows but {len(seg_ids)} sidecar records; using those rows only")
            segment = segment[:len(seg_ids)]
        if segments and (segment.shape[1], segment.dtype) != (dims, dtype):
            raise ValueError(f"{path}: shape {segment.shape} {segment.dtype} differs from earlier segments ({dims}, {dtype})")
        dims, dtype = segment.shape[1], segment.dtype
        segments.append(segment)
        ids.extend(seg_ids)
        keys.extend(seg_keys)
    return CacheFiles(artifacts_dir, model, kind, segments, ids, keys, dims, dtype,
                      model_prefix(artifacts_dir, model, kind) if prefix is None else prefix, manifest)


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
