"""Reading a cache's files directly, with no server: numpy arrays over memory maps plus the msgpack sidecars.

The hot path (``CacheFiles.get``, ``lookup_texts``) is a fixed handful of numpy calls over the whole request,
with no Python work per segment and none per id (texts: one SHA-256 each): ids are fingerprinted from their
joined UTF-8 bytes, ids (or content keys) go to rows through a numpy hash table built when the cache is opened
(newest row wins, as on the server) and checked against the stored ids, and rows of every segment are gathered
by one fancy index. A request of one key reads its bucket in Python, cheaper than those numpy calls.
"""
import functools
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


_EMPTY = -1  # a free slot's fingerprint: every fingerprint is a non-negative int64
_LONGEST_ID_BYTES = 128  # longer ids are not copied into the byte table: they are compared as Python strings
_UNCOMPARABLE = b"\xff"  # stands for such an id in that table: no UTF-8 text holds the byte 0xff


def _empty_table(buckets, slots):
    """A (buckets, slots, 2) int64 table with every slot free, on 2 MiB pages where the kernel allows: a probe
    into a table of millions of slots is otherwise a TLB miss as well as a cache miss."""
    mapping = mmap.mmap(-1, buckets * slots * 2 * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # shared memory gets no huge pages
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mapping.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    table = np.frombuffer(mapping, np.int64).reshape(buckets, slots, 2)
    table.fill(_EMPTY)
    return table


class _RowIndex:
    """Keys to row numbers, for many keys at once, by a 64-bit fingerprint of each key that is only a hint:
    every match is checked against the key stored for its row, so keys that share a fingerprint, or an absent
    key that matches one, cost time, never a wrong row.

    Buckets of eight (fingerprint, row) slots, at most a quarter of all slots used. A key sits in its home
    bucket, or in the next one with room if that was full when the key came; nothing is ever removed, so a
    bucket with a free slot ends every search. A request is a handful of numpy calls over all its keys: one
    gather of their home buckets (128 bytes a key), one comparison, one check of the stored keys. Subclasses
    say what a key is: ``_store`` (the keys of new rows), ``_request`` (fingerprints of keys), ``_fingerprint``
    (the same for one key), ``_hold`` (vectorised check of stored keys, False where it cannot tell) and
    ``_holds`` (the exact check of one).
    """

    _SLOTS = 8  # one bucket's match flags read as one 8-byte word
    _SLOTS_PER_KEY = 4  # a quarter full: about 1 key in 10,000 lies outside its home bucket

    def __init__(self):
        self._count = 0
        self._allocate(1)

    def _allocate(self, buckets):
        self._table = _empty_table(buckets, self._SLOTS)
        self._slots = self._table.reshape(-1, 2)
        self._mask = buckets - 1
        self._shift = 64 - buckets.bit_length()

    def _homes(self, prints):
        """The home bucket of each fingerprint (or of one): its top bits, which the id fingerprints mix best."""
        return prints >> self._shift

    def update(self, keys, first_row):
        """Maps ``keys[i]`` to row ``first_row + i``; a later row of a key supersedes an earlier one, None is skipped."""
        self._store(keys, first_row)
        newest = dict(zip(keys, range(first_row, first_row + len(keys))))
        newest.pop(None, None)
        if not newest:
            return
        request = self._request(list(newest))
        prints, rows = request.fingerprints, np.fromiter(newest.values(), np.int64, len(newest))
        if self._count:
            slots = self._find(request)
            known = slots >= 0
            self._slots[slots[known], 1] = rows[known]
            prints, rows = prints[~known], rows[~known]
        needed = self._SLOTS_PER_KEY * (self._count + len(rows))
        if needed > len(self._slots):
            old = self._slots[self._slots[:, 0] != _EMPTY]
            self._allocate(1 << (-(-needed // self._SLOTS) - 1).bit_length())
            self._count = 0
            self._place(old[:, 0], old[:, 1])
        self._place(prints, rows)

    def _place(self, prints, rows):
        """Adds keys known to be absent: each pass fills the free slots of the buckets tried, in order, and
        moves the keys that did not fit on to the next bucket."""
        buckets = self._homes(prints)
        pending = np.arange(len(rows))
        while len(pending):
            pending = pending[np.argsort(buckets[pending], kind="stable")]
            tried = buckets[pending]
            earlier = np.arange(len(tried)) - np.searchsorted(tried, tried)  # keys of this pass before it in the bucket
            slot = (self._table[tried, :, 0] != _EMPTY).sum(axis=1) + earlier  # a bucket's used slots come first
            fits = slot < self._SLOTS
            placed = pending[fits]
            self._table[tried[fits], slot[fits]] = np.stack((prints[placed], rows[placed]), axis=1)
            pending = pending[~fits]
            buckets[pending] = (buckets[pending] + 1) & self._mask
        self._count += len(rows)

    def rows(self, request):
        """(row of each key (int64, -1 where absent), found (bool), whether every key was found)."""
        prints = request.fingerprints
        homes = self._homes(prints)
        entries = self._table.take(homes, axis=0)
        match = entries[..., 0] == prints[:, None]
        rows = entries[..., 1][match]
        if len(rows) == len(prints):
            held = self._hold(request, rows)
            if np.count_nonzero(held) == len(held):  # one match per key, and it is the key: nearly every request of present keys
                return rows, held, True
        else:  # some keys have no match at home (absent, or placed further on): a few more calls, not a search for all
            found = match.view(np.uint64)[:, 0] != 0  # a bucket's eight booleans as one word: any match
            matched = np.flatnonzero(found)
            if len(matched) == len(rows) and np.count_nonzero(self._hold(request, rows, matched)) == len(rows):
                found_rows = np.full(len(prints), -1, np.int64)
                found_rows[matched] = rows
                for key in np.flatnonzero(~found & (entries[:, -1, 0] != _EMPTY)).tolist():  # a full home bucket
                    slot = self._search(request.key(key), int(prints[key]), (int(homes[key]) + 1) & self._mask)
                    if slot >= 0:
                        found_rows[key], found[key] = self._slots[slot, 1], True
                return found_rows, found, np.count_nonzero(found) == len(found)
        slots = self._find(request, homes, entries, match)
        found = slots >= 0
        return np.where(found, self._slots[slots, 1], -1), found, np.count_nonzero(found) == len(found)

    def _find(self, request, homes=None, entries=None, match=None):
        """The slot of each key, -1 where absent: vectorised for keys with one match in their home bucket, one
        key at a time for the rest (several matches, a match that is another key, a full home bucket)."""
        prints = request.fingerprints
        if homes is None:
            homes = self._homes(prints)
            entries = self._table.take(homes, axis=0)
            match = entries[..., 0] == prints[:, None]
        matches = match.sum(axis=1)
        slots = np.full(len(prints), -1, np.int64)
        single = np.flatnonzero(matches == 1)
        candidates = homes[single] * self._SLOTS + match[single].argmax(axis=1)
        held = self._hold(request, self._slots[candidates, 1], single)
        slots[single[held]] = candidates[held]
        full = entries[:, -1, 0] != _EMPTY  # a bucket's used slots come first
        for key in np.flatnonzero((slots < 0) & ((matches > 0) | full)).tolist():
            slots[key] = self._search(request.key(key), int(prints[key]), int(homes[key]))
        return slots

    def row(self, key):
        """The row of one key, -1 where absent: its buckets read in Python, which costs less than the dozen
        numpy calls of ``rows`` when a request holds one key."""
        fingerprint = self._fingerprint(key)
        slot = self._search(key, fingerprint, self._homes(fingerprint))
        return -1 if slot < 0 else int(self._slots[slot, 1])

    def _search(self, key, fingerprint, bucket):
        while True:
            entries = self._table[bucket].tolist()
            for slot, (stored, row) in enumerate(entries):
                if stored == fingerprint and self._holds(key, row):
                    return bucket * self._SLOTS + slot
            if entries[-1][0] == _EMPTY:
                return -1
            bucket = (bucket + 1) & self._mask


_HASHED_ID_BYTES = 128  # an id's fingerprint covers its first 128 bytes, and Python's hash of longer ids
_WORD_FACTORS = np.random.default_rng(0x1D5).integers(0, 1 << 62, _HASHED_ID_BYTES // 8, np.uint64) * np.uint64(2) + np.uint64(1)
_WORD_FACTOR_INTS = [int(factor) for factor in _WORD_FACTORS]
_ONE = np.uint64(1)


def _id_fingerprint(ident):
    """The fingerprint of one id, as ``_IdRequest`` computes it for many (the tests check they agree)."""
    data = ident.encode(errors="surrogatepass")
    total = sum(int.from_bytes(data[start:start + 8], "little") * factor
                for start, factor in zip(range(0, min(len(data), _HASHED_ID_BYTES), 8), _WORD_FACTOR_INTS))
    if len(data) > _HASHED_ID_BYTES:
        total ^= hash(ident)
    return (total & ((1 << 64) - 1)) >> 1


def _fingerprints(words, long_ids=()):
    """Fingerprints of ids from their bytes as little-endian 64-bit words, zero past each id's end: the sum of
    the words times odd factors, modulo 2**64 (multiply-shift hashing: its high bits, which pick the home
    bucket, depend on every byte), shifted to be never negative (so never the free slot's -1). A few numpy
    calls over all ids, none per id."""
    total = words @ _WORD_FACTORS[:words.shape[1]]
    for index, ident in long_ids:
        total[index] ^= np.uint64(hash(ident) & ((1 << 64) - 1))
    total >>= _ONE
    return total.view(np.int64)


class _IdRequest:
    """Ids to look up: their UTF-8 as numpy bytes (``encoded``: None where one holds a NUL, as numpy's bytes drop
    trailing NULs so two ids could read alike, or cannot be encoded) and a fingerprint of each computed from
    those bytes. Ids of one length take one join and no copy: the common case of a request."""

    __slots__ = ("ids", "fingerprints", "_encoded")

    def __init__(self, ids):
        self.ids = ids
        self._encoded = None
        count = len(ids)
        try:
            data = ("\0".join(ids) + "\0").encode()
        except TypeError:
            _not_strings(ids)
        except UnicodeEncodeError:
            data = b""
        width = len(data) // count if count else 0
        # Exactly the separators are NUL, so every id is width - 1 bytes when the separators sit every width bytes.
        if (count and width * count == len(data) and width <= _HASHED_ID_BYTES + 1 and data.count(0) == count
                and data[width - 1::width].count(0) == count):
            self._encoded = np.frombuffer(data, f"S{width}")
            self.fingerprints = _fingerprints(_row_words(data, count, width - 1, width))
            return
        if data and data.count(0) == count:
            parts = data.split(b"\0")[:-1]
            self._encoded = np.array(parts, "S")
        else:
            parts = [ident.encode(errors="surrogatepass") for ident in ids]
        padded = np.array(parts, "S") if self._encoded is None else self._encoded
        width = min(padded.itemsize, _HASHED_ID_BYTES) if count else 0
        long_ids = [(i, ids[i]) for i, part in enumerate(parts) if len(part) > _HASHED_ID_BYTES] if padded.itemsize > _HASHED_ID_BYTES else ()
        self.fingerprints = _fingerprints(_row_words(padded.tobytes(), count, width, padded.itemsize), long_ids)

    def key(self, index):
        return self.ids[index]

    def encoded(self):
        return self._encoded


def _row_words(data, count, length, stride):
    """(count, ceil(length / 8)) little-endian words of the first ``length`` bytes of each ``stride``-byte row of
    ``data``, zero past ``length``: read in place, the last word masked where it runs into the next row."""
    words = -(-length // 8)
    if not words or not count:
        return np.zeros((count, 0), np.uint64)
    view = np.ndarray((count, words), "<u8", data + bytes(8), 0, (stride, 8))
    return view if length % 8 == 0 else view & _word_masks(length)


@functools.lru_cache(maxsize=None)
def _word_masks(length):
    """Masks that keep the first ``length`` bytes of ceil(length / 8) little-endian words."""
    masks = np.full(-(-length // 8), (1 << 64) - 1, np.uint64)
    masks[-1] = (1 << (8 * (length % 8 or 8))) - 1
    return masks


def _not_strings(ids):
    raise TypeError(f"ids must be strings, not {sorted({type(i).__name__ for i in ids} - {'str'})}") from None


class _IdIndex(_RowIndex):
    """Ids (str) to rows: the fingerprint is computed from the id's bytes (``_fingerprints``), checked against a table of every row's id
    as UTF-8 bytes; ids that hold a NUL or are very long are compared as Python strings instead."""

    def __init__(self, ids):
        self._ids = ids  # the cache's list of every row's id, extended in place as rows come
        self._bytes = np.zeros(0, "S1")
        super().__init__()

    _request = _IdRequest

    def _store(self, ids, first_row):
        if not ids:
            return
        end = first_row + len(ids)
        present = ["" if i is None else i for i in ids] if None in ids else ids  # rows without an id are never looked up
        data = "\0".join(present).encode(errors="surrogatepass")
        encoded = np.array(data.split(b"\0"), "S") if data.count(0) == len(ids) - 1 else None
        if encoded is None or encoded.itemsize > _LONGEST_ID_BYTES:
            encoded = np.array([_comparable(i) for i in present], "S")
        if end > len(self._bytes) or encoded.itemsize > self._bytes.itemsize:
            capacity = len(self._bytes) if end <= len(self._bytes) else max(end, 2 * len(self._bytes))
            grown = np.zeros(capacity, f"S{max(encoded.itemsize, self._bytes.itemsize)}")
            grown[:first_row] = self._bytes[:first_row]
            self._bytes = grown
        self._bytes[first_row:end] = encoded

    def _hold(self, request, rows, keys=None):
        wanted = request.encoded()
        if wanted is None:
            return np.zeros(len(rows), bool)
        return self._bytes.take(rows) == (wanted if keys is None else wanted[keys])

    def _holds(self, ident, row):
        return self._ids[row] == ident

    _fingerprint = staticmethod(_id_fingerprint)


def _comparable(ident):
    encoded = ident.encode(errors="surrogatepass")
    return _UNCOMPARABLE if len(encoded) > _LONGEST_ID_BYTES or b"\0" in encoded else encoded


_NO_SIGN_BIT = (1 << 63) - 1


class _KeyRequest:
    """16-byte content keys to look up, as (n, 2) int64; the fingerprint is the first word without its sign bit."""

    __slots__ = ("words", "fingerprints")

    def __init__(self, words):
        self.words = words
        self.fingerprints = words[:, 0] & _NO_SIGN_BIT

    def key(self, index):
        return self.words[index].tobytes()


def _key_words(keys):
    if len(keys) and set(map(len, keys)) != {16}:
        raise ValueError("content keys are 16 bytes each (see content_key)")
    return np.frombuffer(b"".join(keys), "<i8").reshape(len(keys), 2)


_NO_KEY = bytes(16)


class _KeyIndex(_RowIndex):
    """16-byte content keys to rows: the fingerprint is the key's first 8 bytes (already uniform), checked
    against a table of every row's key as two words."""

    def __init__(self, keys):
        self._keys = keys  # the cache's list of every row's key, extended in place as rows come
        self._words = np.zeros((0, 2), np.int64)
        super().__init__()

    def _request(self, keys):
        return _KeyRequest(_key_words(keys))

    def _store(self, keys, first_row):
        end = first_row + len(keys)
        if end > len(self._words):
            grown = np.zeros((max(end, 2 * len(self._words)), 2), np.int64)
            grown[:first_row] = self._words[:first_row]
            self._words = grown
        # Rows without a key are never looked up: any 16 bytes stand for them.
        self._words[first_row:end] = _key_words([_NO_KEY if k is None else k for k in keys])

    def _hold(self, request, rows, keys=None):
        wanted = request.words if keys is None else request.words[keys]
        stored = self._words.take(rows, axis=0)
        held = stored[:, 0] == wanted[:, 0]  # two comparisons of columns: all(axis=1) over pairs costs twice as much
        held &= stored[:, 1] == wanted[:, 1]
        return held

    def _holds(self, key, row):
        return self._keys[row] == key

    @staticmethod
    def _fingerprint(key):
        return int.from_bytes(key[:8], "little") & _NO_SIGN_BIT  # as _KeyRequest: the first "<i8" word


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
        self._id_rows, self._key_rows = _IdIndex(self.ids), None

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
            self._key_rows = _KeyIndex(self.keys)
            self._key_rows.update(self.keys, 0)
        return self._key_rows

    def rows_of(self, ids=None, keys=None):
        """Row numbers (int64, -1 where absent) of the newest row of each id, or of each 16-byte key."""
        if (ids is None) == (keys is None):
            raise ValueError("pass either ids or keys")
        if ids is not None:
            return self._id_rows.rows(_IdRequest(_as_list(ids, str)))[0]
        return self._key_index().rows(_KeyRequest(_key_words(_as_list(keys, bytes))))[0]

    def _take(self, rows, found, every):
        if every:
            return self.vectors._gather(rows), found
        vectors = np.zeros((len(rows), self.dims), self.dtype)
        if found.any():
            vectors[found] = self.vectors._gather(rows[found])
        return vectors, found

    def _take_one(self, row):
        if row < 0:
            return np.zeros((1, self.dims), self.dtype), np.zeros(1, bool)
        return self.vectors._gather(np.array([row])), np.ones(1, bool)

    def get(self, ids):
        """(vectors, found) for ``ids``: the newest row of each id, zero rows where ``found`` is False."""
        ids = _as_list(ids, str)
        if len(ids) == 1 and isinstance(ids[0], str):
            return self._take_one(self._id_rows.row(ids[0]))
        return self._take(*self._id_rows.rows(_IdRequest(ids)))

    def lookup_texts(self, texts):
        """(vectors, found) for ``texts`` by content key, with the model's prefix for this kind applied."""
        texts = _as_list(texts, str)
        if len(texts) == 1:
            return self._take_one(self._key_index().row(content_key(texts[0], self.prefix)))
        if self.prefix:
            texts = map(self.prefix.__add__, texts)
        # One C-level pass per step, no Python bytecode per text: encode, SHA-256, digest.
        digests = b"".join(map(_digest, map(hashlib.sha256, map(str.encode, texts))))
        keys = np.frombuffer(digests, "<i8").reshape(-1, 4)[:, :2]  # a content key: a digest's first 16 bytes
        return self._take(*self._key_index().rows(_KeyRequest(keys)))


_digest = operator.methodcaller("digest")


def _as_list(values, single):
    """``values`` as a list: one value of type ``single`` becomes a list of one."""
    if isinstance(values, single):
        return [values]
    return values if isinstance(values, list) else list(values)


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
