"""Reads EmbeddingCache segment files the way a researcher's notebook does: numpy and msgpack only.

dump KIND_DIR
    Loads every NNNNNN.npy with np.load and np.load(mmap_mode="r"), checks both agree, reads the
    sidecar, and prints JSON: per segment its shape, dtype, file size and rows (key, id, vector).
watch KIND_DIR STOP_FILE DIMS
    Loads every segment in a loop while another process appends, until STOP_FILE exists. Every row
    seen must be whole: row with id "r<n>" must hold n + j/8 in column j (invariant N1). Prints one
    "iteration" line per pass and exits 1 at the first bad row.
Exit code 3 means numpy or msgpack is missing.
"""
import glob
import json
import os
import sys

try:
    import msgpack
    import numpy as np
except ImportError as missing:
    print(f"MISSING: {missing}; install Debian's python3-numpy and python3-msgpack", file=sys.stderr)
    sys.exit(3)


def read_sidecar(npy_path):
    path = npy_path[: -len(".npy")] + ".keys.msgpack"
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        # A torn last record simply ends the iteration.
        return list(msgpack.Unpacker(f, raw=False))


def load(path, same_shape=True):
    """Loads a segment both ways. While a writer appends, the two loads may see different row counts."""
    eager = np.load(path)
    mapped = np.load(path, mmap_mode="r")
    if same_shape and (eager.shape != mapped.shape or eager.dtype != mapped.dtype):
        raise AssertionError(f"{path}: np.load gives {eager.shape} {eager.dtype}, mmap gives {mapped.shape} {mapped.dtype}")
    for array in (eager, mapped):
        if array.ndim != 2 or array.dtype.str not in ("<f4", "<f2") or np.isfortran(array):
            raise AssertionError(f"{path}: unexpected array {array.shape} {array.dtype.str}")
    return eager, mapped


def segments(kind_dir):
    return sorted(glob.glob(os.path.join(kind_dir, "[0-9][0-9][0-9][0-9][0-9][0-9].npy")))


def dump(kind_dir):
    result = []
    for path in segments(kind_dir):
        eager, mapped = load(path)
        if not np.array_equal(eager, np.asarray(mapped)):
            raise AssertionError(f"{path}: np.load and mmap disagree")
        records = read_sidecar(path)
        if len(records) < eager.shape[0]:
            raise AssertionError(f"{path}: {eager.shape[0]} rows but only {len(records)} sidecar records")
        rows = []
        for i in range(eager.shape[0]):
            key, id_ = records[i]
            rows.append({
                "key": key.hex() if key is not None else None,
                "id": id_,
                "vector": [float(x) for x in eager[i]],
            })
        result.append({
            "file": os.path.basename(path),
            "shape": list(eager.shape),
            "dtype": eager.dtype.str,
            "file_size": os.path.getsize(path),
            "sidecar_records": len(records),
            "rows": rows,
        })
    print(json.dumps({"numpy": np.__version__, "segments": result}))


def check_rows(path, array, records, dims):
    if array.shape[1] != dims:
        raise AssertionError(f"{path}: {array.shape[1]} dims, expected {dims}")
    if len(records) < array.shape[0]:
        raise AssertionError(f"{path}: {array.shape[0]} rows but only {len(records)} sidecar records")
    columns = np.arange(dims, dtype=np.float64) / 8.0
    for i in range(array.shape[0]):
        _, id_ = records[i]
        n = int(id_[1:])
        if not np.array_equal(np.asarray(array[i], dtype=np.float64), n + columns):
            raise AssertionError(f"{path}: row {i} ({id_}) holds {array[i][:4]}..., not row {n}")


def watch(kind_dir, stop_file, dims):
    iteration = 0
    max_rows = 0
    while True:
        stopping = os.path.exists(stop_file)
        total = 0
        for path in segments(kind_dir):
            eager, mapped = load(path, same_shape=False)
            # The sidecar is read after the arrays: it only ever grows past the committed rows.
            records = read_sidecar(path)
            check_rows(path, eager, records, dims)
            check_rows(path, mapped, records, dims)
            total += max(eager.shape[0], mapped.shape[0])
        iteration += 1
        max_rows = max(max_rows, total)
        print(f"iteration {iteration} rows {total}", flush=True)
        if stopping:
            break
    print(json.dumps({"iterations": iteration, "max_rows": max_rows}), flush=True)


def main():
    try:
        if sys.argv[1] == "dump":
            dump(sys.argv[2])
        elif sys.argv[1] == "watch":
            watch(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        else:
            raise SystemExit(f"unknown mode {sys.argv[1]}")
    except AssertionError as failure:
        print(f"FAIL: {failure}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
