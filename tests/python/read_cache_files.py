"""Reads every cache file under ARTIFACTS/embeddings the way a user's notebook does: numpy and msgpack only.

Checks invariant N1 on each pass (every .npy loads with np.load and with mmap_mode="r", is 2-D, has a
sidecar record per row, holds no zero or non-finite row) and prints, as JSON, every row it read:
{"<model>/<kind>": [[key_hex_or_null, id_or_null, vector_bytes_hex], ...]} in segment and row order.

usage: read_cache_files.py ARTIFACTS [--until FILE]
  --until FILE  keep re-reading every file (while a server appends) until FILE exists, then read once more;
                the number of passes goes to stderr
"""
import glob
import json
import os
import sys

import msgpack
import numpy as np


def read_sidecar(path):
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False)
        records = []
        try:
            for record in unpacker:
                records.append(record)
        except msgpack.OutOfData:
            pass  # a record being appended right now; only committed rows are checked against it
        return records


def read_segment(npy_path):
    eager = np.load(npy_path)
    mapped = np.load(npy_path, mmap_mode="r")
    assert eager.ndim == 2, f"{npy_path}: shape {eager.shape} is not (rows, dims)"
    assert eager.dtype in (np.dtype("<f4"), np.dtype("<f2")), f"{npy_path}: dtype {eager.dtype}"
    rows = min(eager.shape[0], mapped.shape[0])
    assert np.array_equal(eager[:rows], mapped[:rows]), f"{npy_path}: np.load and mmap disagree"
    sidecar = npy_path[: -len(".npy")] + ".keys.msgpack"
    records = read_sidecar(sidecar)
    assert len(records) >= rows, f"{npy_path}: {rows} rows but only {len(records)} sidecar records"
    vectors = eager[:rows]
    if rows:
        assert np.all(np.isfinite(vectors)), f"{npy_path}: non-finite values"
        zero = np.where(~vectors.any(axis=1))[0]
        assert zero.size == 0, f"{npy_path}: zero rows {zero[:10].tolist()}"
    out = []
    for i in range(rows):
        record = records[i]
        assert isinstance(record, list) and len(record) == 2, (
            f"{npy_path}: sidecar record {i} of the {rows} rows the header commits is {record!r}, not [key, id]")
        key, ident = record
        out.append([key.hex() if key is not None else None, ident, vectors[i].tobytes().hex()])
    return out


def read_all(artifacts):
    result = {}
    for kind_dir in sorted(glob.glob(os.path.join(artifacts, "embeddings", "*", "*"))):
        if not os.path.isdir(kind_dir):
            continue
        model, kind = kind_dir.split(os.sep)[-2:]
        if kind not in ("query", "document"):
            continue
        rows = []
        for npy in sorted(glob.glob(os.path.join(kind_dir, "*.npy"))):
            rows.extend(read_segment(npy))
        result[f"{model}/{kind}"] = rows
    for npy in glob.glob(os.path.join(artifacts, "embeddings", "**", "*.npy"), recursive=True):
        np.load(npy)  # N1 holds for every .npy under embeddings, wherever it sits
    return result


def main():
    artifacts = sys.argv[1]
    until = sys.argv[sys.argv.index("--until") + 1] if "--until" in sys.argv else None
    passes = 0
    while until is not None and not os.path.exists(until):
        read_all(artifacts)
        passes += 1
    result = read_all(artifacts)
    print(f"passes: {passes + 1}", file=sys.stderr)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
