"""Loads an exported .npy with plain numpy and prints its rows as hex strings (JSON), for comparison.

usage: load_npy.py FILE.npy
"""
import json
import sys

import numpy as np

vectors = np.load(sys.argv[1])
assert vectors.ndim == 2 and vectors.flags["C_CONTIGUOUS"], vectors.shape
mapped = np.load(sys.argv[1], mmap_mode="r")
assert np.array_equal(vectors, mapped)
json.dump([row.tobytes().hex() for row in vectors], sys.stdout)
