"""Reads through nginx until told to stop, as a researcher's process keeps reading while a follower dies: every reply
is compared byte for byte with the first, and any error or difference fails the run.

    /usr/bin/python3 routed_reads.py NGINX_ADDRESS MODEL IDS_COMMA_SEPARATED READY_FILE STOP_FILE

Creates READY_FILE after its first 50 reads, stops when STOP_FILE exists, prints the counts, exits 1 on any failure.
"""
import os
import sys

from embedding_cache import Client


def main(address, model, ids, ready_file, stop_file):
    ids = ids.split(",")
    reads, failures = 0, []
    with Client(address) as cache:
        first = cache.get(model, ids=ids)
        assert first.found.all(), "the rows must be served before the run starts"
        expected = first.vectors.tobytes()
        while not os.path.exists(stop_file):
            try:
                got = cache.get(model, ids=ids)
                if not got.found.all() or got.vectors.tobytes() != expected:
                    failures.append("a reply differs from the first")
            except Exception as e:  # every error counts: the clients must retry reads themselves
                failures.append(repr(e))
            reads += 1
            if reads == 50:
                open(ready_file, "w").close()
    print(f"python reads through nginx: {reads}, failures: {len(failures)}")
    for failure in failures[:10]:
        print(failure)
    sys.exit(1 if failures or reads < 50 else 0)


if __name__ == "__main__":
    main(*sys.argv[1:])
