"""Writes vectors the way a sentence-transformers user has them: np.save of a float32 (rows, dims) array,
plus the ids as a JSON array.

usage: make_npy.py OUT.npy OUT.ids.json ROWS DIMS SEED
"""
import json
import sys

import numpy as np

out_npy, out_ids, rows, dims, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
vectors = np.random.default_rng(seed).standard_normal((rows, dims)).astype(np.float32)
np.save(out_npy, vectors)
with open(out_ids, "w") as f:
    json.dump([f"passage-{i}" for i in range(rows)], f)
