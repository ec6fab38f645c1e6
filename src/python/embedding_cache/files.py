"""Reading a cache's files directly, with no server: numpy arrays over memory maps plus the msgpack sidecars.

The hot path (``CacheFiles.get``, ``lookup_texts``) does no per-segment Python work when the rows asked for lie
in one segment, and none per id beyond a dict probe: ids go to global row numbers through one dict built when
the cache is opened (newest row wins, as on the server), rows are gathered with numpy fancy indexing from one
plain ndarray per segment.
"""
import hashlib
import itertools
import json
import mmap
import operator
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


def _read_header(f, npy_path):
    """(committed rows, dims, dtype, data offset) from a .npy header; the row count is what the server has
    committed (it rewrites that number only after the rows are on disk)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"{npy_path}: unsupported .npy version {version}")
    if len(shape) != 2 or fortran_order:
        raise ValueError(f"{npy_path}: expected a C-order (rows, dims) array, got shape {shape}")
    return shape[0], shape[1], dtype, f.tell()


class _Segment:
    """One segment file: its mapping (made once, over the whole file: the growing segment is pre-sized),
    a plain ndarray of its committed rows, and how far its sidecar has been read."""

    def __init__(self, npy_path):
        self.npy_path = npy_path
        self.sidecar_path = npy_path[:-len(".npy")] + ".keys.msgpack"
        self.inode = None
        self.rows = np.empty((0, 0), np.float32)
        self.sidecar_offset = 0
        self._mapping = None

    def refresh(self):
        """Re-reads the header; returns the rows committed now (never fewer than before: see CacheFiles.refresh)."""
        try:
            f = open(self.npy_path, "rb")
        except FileNotFoundError:
            raise _Replaced(self.npy_path) from None
        with f:
            stat = os.fstat(f.fileno())
            rows, dims, dtype, offset = _read_header(f, self.npy_path)
            if self.inode is not None and stat.st_ino != self.inode:
                raise _Replaced(self.npy_path)
            self.inode = stat.st_ino
            end = offset + rows * dims * dtype.itemsize
            if rows and (self._mapping is None or len(self._mapping) < end):
                if stat.st_size < end:
                    raise ValueError(f"{self.npy_path}: the header counts {rows} rows but the file holds fewer")
                self._mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if rows < len(self.rows):
            raise _Replaced(self.npy_path)
        if rows == 0:
            self.rows = np.empty((0, dims), dtype)
        elif rows != len(self.rows):
            self.rows = np.frombuffer(self._mapping, dtype, rows * dims, offset).reshape(rows, dims)
        return rows

    def replaced(self):
        """Whether the file at this segment's path is no longer the one read (or is gone)."""
        try:
            return os.stat(self.npy_path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def read_sidecar(self, first, rows):
        """Records [first, rows) as (keys, ids), read from where the last call stopped; a record being
        appended right now (past the header count) is not read."""
        if rows <= first:
            return [], []
        with open(self.sidecar_path, "rb") as f:
            f.seek(self.sidecar_offset)
            unpacker = msgpack.Unpacker(f, raw=False)
            try:
                records = list(itertools.islice(unpacker, rows - first))
            except msgpack.OutOfData:
                records = []
            self.sidecar_offset += unpacker.tell()
        if not records:
            return [], []
        keys, ids = zip(*records)  # [key, id] records: key is bytes (msgpack bin) or None
        return list(keys), list(ids)


class _Replaced(Exception):
    """A segment file was replaced or shrank since it was read (the cache was invalidated, or recovered)."""


def _zeroed_int64(rows, columns):
    """A zeroed (rows, columns) int64 table, on 2 MiB pages where the kernel allows: a probe into a table of
    millions of slots is otherwise a TLB miss as well as a cache miss."""
    if rows == 0:
        return np.zeros((0, columns), np.int64)
    mapping = mmap.mmap(-1, rows * columns * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared memory gets no huge pages
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mapping.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return np.frombuffer(mapping, np.int64).reshape(rows, columns)


def _id_fingerprints(ids):
    """(n, 2) int64: two 64-bit hashes of each id, Python's salted SipHash of the id and of the id followed by
    NUL, the second with its lowest bit set so that no fingerprint is all zeros (an empty slot): 127 bits,
    about as many as the server's own keys of ids and texts."""
    prints = np.empty((len(ids), 2), np.int64)
    try:  # one fromiter per word: no tuple per id
        prints[:, 0] = np.fromiter(map(hash, ids), np.int64, len(ids))
        prints[:, 1] = np.fromiter(map(hash, map(operator.add, ids, itertools.repeat("\0"))), np.int64, len(ids))
    except TypeError:
        raise TypeError(f"ids must be strings, not {sorted({type(i).__name__ for i in ids} - {'str'})}") from None
    prints[:, 1] |= 1
    return prints


def _key_fingerprints(keys):
    """(n, 2) int64: the 16-byte content keys read as two words each, the second with its lowest bit set so
    that no fingerprint is all zeros (an empty slot)."""
    if len(keys) and set(map(len, keys)) != {16}:
        raise ValueError("content keys are 16 bytes each (see content_key)")
    prints = np.frombuffer(b"".join(keys), "<i8").reshape(len(keys), 2).copy()
    prints[:, 1] |= 1
    return prints


class _FingerprintIndex:
    """Keys (ids, or content keys) to row numbers by their 128-bit fingerprints, for many keys at once.

    An open-addressing table (linear probing, at most a quarter full) of fingerprints and rows, probed with
    numpy gathers: a request's memory misses overlap where a dict probes one key after another, and no Python
    object is touched per key. A window of slots is looked at per key in one pass, so a request is nearly
    always answered by one pass of numpy calls.
    """

    _SCALAR_BELOW = 8  # fewer keys than this: probe in plain Python, cheaper than a dozen numpy calls
    _WINDOW = 4  # slots looked at per key in one pass (96 bytes)
    _window = np.arange(_WINDOW)
    # Slots per key at least: a quarter full, 0.4% of keys lie past their window (3.5% at half full, so that
    # most requests of 32 ids took a second, slower pass); 96 bytes per key.
    _SLOTS_PER_KEY = 4

    def __init__(self, fingerprints):
        self._fingerprints = fingerprints
        self._count = 0
        self._allocate(0)

    def _allocate(self, size):
        self._mask = size - 1
        self._table = _zeroed_int64(size, 3)  # per slot: the fingerprint's two words, row + 1 (0: empty)

    def update(self, keys, first_row):
        """Maps ``keys[i]`` to row ``first_row + i``; a later row of a key supersedes an earlier one, None is skipped."""
        newest = dict(zip(keys, range(first_row, first_row + len(keys))))
        newest.pop(None, None)
        if not newest:
            return
        prints = self._fingerprints(list(newest))
        rows = np.fromiter(newest.values(), np.int64, len(newest))
        if self._count:
            slots = self._find(prints)
            known = slots >= 0
            self._table[slots[known], 2] = rows[known] + 1
            prints, rows = prints[~known], rows[~known]
        if self._SLOTS_PER_KEY * (self._count + len(rows)) > len(self._table):
            old = self._table[self._table[:, 2] != 0]
            self._allocate(1 << (self._SLOTS_PER_KEY * (self._count + len(rows)) - 1).bit_length())
            self._count = 0
            self._place(old[:, :2], old[:, 2] - 1)
        self._place(prints, rows)

    def _place(self, prints, rows):
        """Inserts fingerprints known to be absent: each pass claims free slots, one key per slot."""
        slots = prints[:, 0] & self._mask
        pending = np.arange(len(rows))
        while len(pending):
            tried = slots[pending]
            free = self._table[tried, 2] == 0
            claimed, first = np.unique(tried[free], return_index=True)
            winners = pending[free][first]
            self._table[claimed, :2] = prints[winners]
            self._table[claimed, 2] = rows[winners] + 1
            placed = np.zeros(len(rows), bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & self._mask
        self._count += len(rows)

    def _find(self, prints, starts=None):
        """The slot of each fingerprint, -1 where absent, probing from ``starts`` (default: each home slot):
        vectorised passes over a window of slots per key while many keys are still probing, then plain Python
        for the few left."""
        found = np.full(len(prints), -1, np.int64)
        starts = prints[:, 0] & self._mask if starts is None else starts
        pending = np.arange(len(prints))
        while len(pending) >= self._SCALAR_BELOW:
            slots = (starts[:, None] + self._window) & self._mask
            entries = self._table.take(slots, axis=0)
            match = (entries[..., :2] == prints[pending, None, :]).all(axis=2)
            hit = match.any(axis=1)
            found[pending[hit]] = slots[match]  # a fingerprint is stored once: one match per hit, in order
            # A key lies before the first empty slot of its probe sequence (nothing is ever removed).
            more = ~hit & (entries[..., 2] != 0).all(axis=1)
            pending, starts = pending[more], (starts[more] + self._WINDOW) & self._mask
        for key, slot in zip(pending.tolist(), starts.tolist()):
            found[key] = self._slot_of(int(prints[key, 0]), int(prints[key, 1]), slot)
        return found

    def _slot_of(self, first, second, slot):
        table = self._table
        while True:
            if table.item(slot, 2) == 0:
                return -1
            if table.item(slot, 0) == first and table.item(slot, 1) == second:
                return slot
            slot = (slot + 1) & self._mask

    def rows(self, keys):
        """Row of each key (int64, -1 where absent)."""
        prints = self._fingerprints(keys)
        if not self._count:
            return np.full(len(keys), -1, np.int64)
        if len(keys) < self._SCALAR_BELOW:
            table, rows = self._table, []
            for first, second in prints.tolist():
                slot = self._slot_of(first, second, first & self._mask)
                rows.append(table.item(slot, 2) - 1 if slot >= 0 else -1)
            return np.array(rows, np.int64)
        # One vectorised pass over each key's first window answers nearly every key; the rest probe further.
        homes = prints[:, 0, None] & self._mask
        entries = self._table.take((homes + self._window) & self._mask, axis=0)
        match = (entries[..., 0] == prints[:, 0, None]) & (entries[..., 1] == prints[:, 1, None])
        hits = entries[match, 2] - 1  # a fingerprint is stored once: one per key found, in key order
        if len(hits) == len(keys):
            return hits
        hit = match.any(axis=1)
        rows = np.full(len(keys), -1, np.int64)
        rows[hit] = hits
        rest = np.flatnonzero(~hit & (entries[..., 2] != 0).all(axis=1))
        if len(rest):
            slots = self._find(prints[rest], (homes[rest, 0] + self._WINDOW) & self._mask)
            rows[rest] = np.where(slots >= 0, self._table[slots, 2] - 1, -1)
        return rows


class _SpanView:
    """One ndarray over the address range that every segment's mapping lies in, so that rows of many segments
    are gathered by a single fancy index, with no Python work per segment.

    ``rows`` has a "row" at every element offset (row stride = one element), and only offsets inside a mapping are ever used,
    so the unmapped gaps between mappings are never read. ``row_offsets[g]`` is where global row g starts in
    ``rows``: a gather is one take and one fancy index. The view holds the segment arrays, and through them
    their mappings, for as long as it lives.
    """

    def __init__(self, segments, dims, dtype, previous=None):
        addresses = [segment.__array_interface__["data"][0] for segment in segments]
        self.low = min(addresses)
        high = max(address + segment.nbytes for address, segment in zip(addresses, segments))
        self.__array_interface__ = {"data": (self.low, True), "shape": ((high - self.low) // dtype.itemsize,),
                                    "typestr": dtype.str, "version": 3}
        self._segments = segments
        flat = np.asarray(self)
        first_rows = np.concatenate(([0], np.cumsum([len(segment) for segment in segments])))
        # Segment k's row r (global row g = first_rows[k] + r) starts at row_elements[k] + g * dims.
        self.row_elements = np.array([(address - self.low) // dtype.itemsize for address in addresses], np.int64) - first_rows[:-1] * dims
        self._layout = list(zip(addresses, first_rows[:-1].tolist()))  # where each segment is mapped, its first row
        self.row_offsets = self._offsets(previous, first_rows, dims)
        self.rows = np.lib.stride_tricks.as_strided(flat, shape=(len(flat) - dims + 1, dims),
                                                    strides=(dtype.itemsize, dtype.itemsize), writeable=False)

    def _offsets(self, previous, first_rows, dims):
        """Each global row's start in ``rows``. While the segments already read stay where they were mapped (a
        refresh that only appended rows), the previous table stands and only the new rows' offsets are
        written, into spare capacity that doubles when it runs out."""
        total = int(first_rows[-1])
        capacity, known = None, 0
        if previous is not None and previous.low == self.low and previous._layout == self._layout[:len(previous._layout)]:
            capacity, known = previous._capacity, len(previous.row_offsets)
        if capacity is None or len(capacity) < total:
            capacity = np.empty(max(total, 2 * known), np.int64)
            capacity[:known] = previous.row_offsets if known else 0
        new_rows = np.arange(known, total, dtype=np.int64)
        capacity[known:total] = self.row_elements[np.searchsorted(first_rows[1:-1], new_rows, side="right")] + new_rows * dims
        self._capacity = capacity
        return capacity[:total]


def _gather(segments, span, rows):
    """Rows (global numbers, all valid) of the segments."""
    if span is None:
        return segments[0].take(rows, axis=0)
    return span.rows[span.row_offsets.take(rows)]  # rows.take() would copy the strided view


class LazyVectors:
    """A (rows, dims) read-only view over every segment of a cache, gathering rows from the memory maps on
    indexing: ``v[i]``, ``v[a:b]``, ``v[[3, 1, 4]]``, ``v[mask]``, ``v[rows, cols]``; ``np.asarray(v)``
    reads everything. Results are ordinary numpy arrays (copies).
    """

    ndim = 2

    def __init__(self, segments, dims, dtype):
        self._set(segments, dims, dtype)

    def _set(self, segments, dims, dtype):
        self._segments = [s for s in segments if len(s)]
        self.shape = (sum(len(s) for s in self._segments), dims)
        self.dtype = np.dtype(dtype)
        previous = getattr(self, "_span", None)
        self._span = _SpanView(self._segments, dims, self.dtype, previous) if len(self._segments) > 1 else None

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
            return self._gather(np.array([i]))[0]
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
        if not len(rows):
            return np.empty((0, self.shape[1]), self.dtype)
        return _gather(self._segments, self._span, rows)


class CacheFiles:
    """One kind of one model's cache, as read from its files by ``open_cache``.

    ``ids`` and ``keys``: one entry per row (None where a row has none); ``vectors``: a ``LazyVectors`` over
    every row in file order; ``get(ids)`` and ``lookup_texts(texts)`` answer as the server would (the newest
    row for an id or key wins). A snapshot: ``refresh()`` picks up rows the server committed since, reading
    only what is new.
    """

    def __init__(self, artifacts_dir, model, kind, prefix):
        self.artifacts_dir = artifacts_dir
        self.model = model
        self.kind = kind
        self.prefix = prefix
        self._cache_dir = os.path.join(artifacts_dir, "embeddings", model)
        self._kind_dir = os.path.join(self._cache_dir, kind)
        self._reset()
        self.refresh()

    def _reset(self):
        self.manifest = _read_json(os.path.join(self._cache_dir, "manifest.json")) or {}
        model_manifest = _read_json(os.path.join(self.artifacts_dir, "models", self.model, "manifest.json")) or {}
        dims = int(self.manifest.get("dims") or model_manifest.get("dims") or 0)
        self.vectors = LazyVectors([], dims, np.dtype(self.manifest.get("dtype") or "<f4"))
        self.ids, self.keys = [], []
        self._segments = {}  # segment number -> _Segment, in file order
        self._growing = None  # the last segment read: the only one the server may still append to
        self._id_rows, self._key_rows = _FingerprintIndex(_id_fingerprints), None

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

    def refresh(self):
        """Picks up rows committed since opening (or the last refresh) and returns how many are new: reads
        each grown segment's header and its sidecar from the byte offset already consumed, and opens new
        segments. A cache invalidated (or recovered shorter) since is read again from the start."""
        try:
            return self._read_new_rows()
        except _Replaced:
            self._reset()
            return self._read_new_rows()

    def _read_new_rows(self):
        numbered = sorted((int(m.group(1)), name) for name in _listdir(self._kind_dir) if (m := _SEGMENT.match(name)))
        for number, name in numbered:
            if number not in self._segments:
                if self._segments and number < max(self._segments):
                    raise _Replaced(name)
                self._segments[number] = _Segment(os.path.join(self._kind_dir, name))
        if len(numbered) < len(self._segments) or (self._growing is not None and self._segments[min(self._segments)].replaced()):
            raise _Replaced(self._kind_dir)
        before = len(self.ids)
        dims, dtype = self.dims, self.dtype
        for number, segment in self._segments.items():
            if self._growing is not None and number < self._growing:
                continue  # sealed: never written again
            known = len(segment.rows)
            rows = segment.refresh()
            if rows == known:
                continue
            keys, ids = segment.read_sidecar(known, rows)
            if known + len(ids) < rows:
                warnings.warn(f"{segment.npy_path}: {rows} rows but {known + len(ids)} sidecar records; using those rows only")
                segment.rows = segment.rows[:known + len(ids)]
            if len(self.ids) and (segment.rows.shape[1], segment.rows.dtype) != (dims, dtype):
                raise ValueError(f"{segment.npy_path}: shape {segment.rows.shape} {segment.rows.dtype} differs from earlier segments ({dims}, {dtype})")
            dims, dtype = segment.rows.shape[1], segment.rows.dtype
            self.ids.extend(ids)
            self.keys.extend(keys)
        # One index update for all new rows: one pass of vectorised probes, at most one growth of the table.
        self._id_rows.update(self.ids[before:], before)
        if self._key_rows is not None:
            self._key_rows.update(self.keys[before:], before)
        self.vectors._set([s.rows for s in self._segments.values()], dims, dtype)
        self._growing = max(self._segments, default=None)
        return len(self.ids) - before

    def _key_index(self):
        if self._key_rows is None:
            self._key_rows = _FingerprintIndex(_key_fingerprints)
            self._key_rows.update(self.keys, 0)
        return self._key_rows

    def rows_of(self, ids=None, keys=None):
        """Row numbers (int64, -1 where absent) of the newest row of each id, or of each 16-byte key."""
        if (ids is None) == (keys is None):
            raise ValueError("pass either ids or keys")
        if ids is not None:
            index, wanted = self._id_rows, [ids] if isinstance(ids, str) else ids
        else:
            index, wanted = self._key_index(), [keys] if isinstance(keys, bytes) else keys
        return index.rows(wanted)

    def _take(self, rows):
        found = rows >= 0
        if found.all():
            return self.vectors._gather(rows), found
        vectors = np.zeros((len(rows), self.dims), self.dtype)
        if found.any():
            vectors[found] = self.vectors._gather(rows[found])
        return vectors, found

    def get(self, ids):
        """(vectors, found) for ``ids``: the newest row of each id, zero rows where ``found`` is False."""
        return self._take(self.rows_of(ids=ids))

    def lookup_texts(self, texts):
        """(vectors, found) for ``texts`` by content key, with the model's prefix for this kind applied."""
        if isinstance(texts, str):
            texts = [texts]
        prefix, sha256 = self.prefix, hashlib.sha256
        return self._take(self.rows_of(keys=[sha256((prefix + t).encode("utf-8")).digest()[:16] for t in texts]))


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
    if not os.path.isdir(os.path.join(artifacts_dir, "embeddings", model)) and not os.path.isdir(os.path.join(artifacts_dir, "models", model)):
        known = sorted(set(_listdir(os.path.join(artifacts_dir, "embeddings")) + _listdir(os.path.join(artifacts_dir, "models"))))
        raise FileNotFoundError(f"no model '{model}' under {artifacts_dir}; found: {', '.join(known) or 'none'}")
    return CacheFiles(artifacts_dir, model, kind, model_prefix(artifacts_dir, model, kind) if prefix is None else prefix)


def _listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
