"""Client side of the `hits` benchmark: every measurement is taken here, from Debian's python3 with grpcio,
numpy and redis-py, the way a researcher's script would fetch vectors.

Run by the `hits` verb (HitPathBenchmark.cs) as `python3 hit_path_client.py CONFIG.json RESULTS.json`; the verb
starts the peers, writes CONFIG.json, and turns RESULTS.json into the report. Nothing here starts or stops a
server. Progress goes to stderr.

Peers (names are the report's keys):
  floor          a bare gRPC server returning a precomputed GetResponse of N rows (no lookup), via Client.get
  redis          Redis MGET of N string keys, joined into an (N, dims) array
  embcache-get   EmbeddingCache Get by ids, via Client.get
  embcache-embed EmbeddingCache Embed of texts that are all cached, via Client.embed
  local-get      open_cache(...).get(ids): ids to rows in the client, gathered from the cache's memory maps
  local-lookup   open_cache(...).lookup_texts(texts) of cached texts: content keys hashed in the client
  mmap-segments  gather of N rows from the cache's own segment files (rows known): the in-process limit
  mmap-npy       gather of N rows from one plain .npy opened with np.load(mmap_mode="r"): the in-process limit
"""
import json
import multiprocessing
import os
import sys
import threading
import time

import numpy as np

CONCURRENCY_PEERS = ("embcache-get", "redis", "floor")


def log(message):
    print(message, file=sys.stderr, flush=True)


def cpu_seconds_of(pid):
    """utime + stime of a process from /proc/PID/stat, in seconds; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_ticks():
    """(busy, total) jiffies of all cores from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


class Connections:
    """The network peers' clients, opened once per process (the measurement driver, or a worker)."""

    def __init__(self, config):
        sys.path.insert(0, config["python_path"])
        import grpc
        from embedding_cache import Client, _proto

        self.config = config
        self.dims = config["dims"]
        self.model = config["model"]
        self.floor = Client(config["floor"])
        # The floor's reply taken as bytes, not parsed: what grpcio alone costs to move the payload.
        path, self.get_request, _ = _proto.methods()["Get"]
        self.floor_channel = grpc.insecure_channel(config["floor"].removeprefix("http://"), [("grpc.max_receive_message_length", -1)])
        self.floor_bytes = self.floor_channel.unary_unary(path, request_serializer=self.get_request.SerializeToString)
        self.embcache = Client(config["embcache"])
        self.redis = None
        if "redis" not in config["skip_peers"]:
            import redis  # redis-py, which parses replies with hiredis when it is installed
            self.redis = redis.Redis(host=config["redis"]["host"], port=config["redis"]["port"])

    def fetcher(self, peer):
        """The call a peer makes for one request, from a Request (ids, texts, rows) to an (N, dims) array."""
        model, dims = self.model, self.dims
        if peer == "floor":
            return lambda r: self.floor.get(model, ids=r.ids).vectors
        if peer == "floor-bytes":
            return lambda r: self.floor_bytes(self.get_request(model=model, ids=r.ids))
        if peer == "embcache-get":
            return lambda r: self.embcache.get(model, ids=r.ids).vectors
        if peer == "embcache-embed":
            return lambda r: self.embcache.embed(model, r.texts, kind="document")
        if peer == "redis":
            return lambda r: np.frombuffer(b"".join(self.redis.mget(r.ids)), "<f4").reshape(len(r.ids), dims)
        raise KeyError(peer)

    def close(self):
        self.floor.close()
        self.floor_channel.close()
        self.embcache.close()
        if self.redis is not None:
            self.redis.close()


class Request:
    __slots__ = ("rows", "ids", "texts", "cache_rows")

    def __init__(self, rows, ids, texts=None, cache_rows=None):
        self.rows = rows
        self.ids = ids
        self.texts = texts
        self.cache_rows = cache_rows


class Requests:
    """Random requests of N rows: dataset rows, their ids, their rows in the cache files, cached texts."""

    def __init__(self, config, seed, texts=None, cache_rows_of=None):
        self.rows = config["rows"]
        self.id_format = config["id_format"]
        self.texts = texts
        self.cache_rows_of = cache_rows_of
        self.rng = np.random.default_rng(seed)

    def make(self, n):
        rows = self.rng.integers(0, self.rows, n)
        ids = [self.id_format.format(int(i)) for i in rows]
        texts = None
        if self.texts is not None:
            texts = [self.texts[int(i)] for i in self.rng.choice(len(self.texts), n, replace=False)]
        cache_rows = self.cache_rows_of[rows] if self.cache_rows_of is not None else None
        return Request(rows, ids, texts, cache_rows)


def run_latency(config, connections, local, requests, dataset, results):
    text_rows = {text: row for row, text in enumerate(requests.texts)}  # text i was Put with dataset row i
    peers = [p for p in config["peers"] if p not in config["skip_peers"]]
    fetch = {p: local[p] if p in local else connections.fetcher(p) for p in peers}
    sizes = config["sizes"]

    # Correctness first: every peer that serves real vectors must return exactly the dataset's rows.
    for peer in peers:
        if peer == "floor-bytes":
            continue  # bytes of a precomputed payload: nothing to compare
        request = requests.make(32)
        got = np.asarray(fetch[peer](request))
        if got.shape != (32, config["dims"]):
            raise SystemExit(f"{peer}: returned shape {got.shape}, expected (32, {config['dims']})")
        if peer in ("embcache-embed", "local-lookup"):
            expected = dataset[[text_rows[t] for t in request.texts]]
        elif peer == "floor":
            continue  # a precomputed payload: not the requested rows, by design
        else:
            expected = dataset[request.rows]
        if not np.array_equal(got, expected):
            raise SystemExit(f"{peer}: returned vectors that differ from the dataset's rows")
    log(f"checked: {', '.join(p for p in peers if not p.startswith('floor'))} return the dataset's exact rows")

    # One untimed round: connections, JIT and code paths warm before the clock starts.
    for n in sizes:
        for peer in peers:
            for _ in range(3):
                fetch[peer](requests.make(n))

    records = []
    for round_index in range(config["rounds"]):
        started = time.perf_counter()
        for n in sizes:
            calls = config["calls"][str(n)]
            # Rotate the order every round so that no peer always runs first or right after another.
            order = peers[round_index % len(peers):] + peers[:round_index % len(peers)]
            for peer in order:
                # Each peer draws its own random rows, so none finds rows another peer just pulled into the CPU cache.
                batch = [requests.make(n) for _ in range(calls)]
                call = fetch[peer]
                latencies = []
                for request in batch:
                    t0 = time.perf_counter_ns()
                    call(request)
                    latencies.append((time.perf_counter_ns() - t0) / 1000)
                records.append({"round": round_index, "n": n, "peer": peer, "latencies_us": latencies})
        log(f"latency round {round_index + 1}/{config['rounds']} in {time.perf_counter() - started:.1f} s")
    results["latency"] = records


def warm(config, connections, local_views, dataset):
    """Reads every row once through every peer that maps files, so all measure a warm steady state."""
    started = time.perf_counter()
    rows, chunk = config["rows"], 10_000
    for start in range(0, rows, chunk):
        ids = [config["id_format"].format(i) for i in range(start, min(rows, start + chunk))]
        if "embcache-get" not in config["skip_peers"]:
            connections.embcache.get(config["model"], ids=ids)
    for view in [dataset] + local_views:
        for start in range(0, len(view), 65_536):
            np.asarray(view[start:start + 65_536]).sum()
    log(f"warmed: every row read once by the server and the client's memory maps in {time.perf_counter() - started:.1f} s")


# ---- concurrency -------------------------------------------------------------------------------------------

def client_loop(fetch, requests, start_at, seconds):
    """Calls until the deadline; returns (latencies in us, finish time)."""
    latencies = []
    while time.time() < start_at:
        time.sleep(0.0005)
    deadline = start_at + seconds
    index = 0
    while True:
        request = requests[index % len(requests)]
        index += 1
        t0 = time.perf_counter_ns()
        fetch(request)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
        if time.time() >= deadline:
            return latencies, time.time()


def worker_main(config, worker_index, pipe):
    """A client process: opens its own connections, then runs ('run', peer, start_at, seconds) commands."""
    connections = Connections(config)
    requests = Requests(config, config["seed"] * 1000 + worker_index)
    prepared = [requests.make(config["concurrency"]["size"]) for _ in range(256)]
    fetchers = {p: connections.fetcher(p) for p in CONCURRENCY_PEERS}
    for peer in CONCURRENCY_PEERS:
        if peer not in config["skip_peers"]:
            fetchers[peer](prepared[0])
    pipe.send("ready")
    while True:
        command = pipe.recv()
        if command[0] == "stop":
            connections.close()
            return
        _, peer, start_at, seconds = command
        cpu0 = time.process_time()
        latencies, finished = client_loop(fetchers[peer], prepared, start_at, seconds)
        pipe.send((latencies, finished, time.process_time() - cpu0))


class ProcessClients:
    def __init__(self, config, count):
        context = multiprocessing.get_context("spawn")  # grpc must not be forked with live channels
        self.pipes, self.processes = [], []
        started = time.perf_counter()
        for index in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=worker_main, args=(config, index, theirs), daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)
        for pipe in self.pipes:
            if pipe.recv() != "ready":
                raise SystemExit("a client process failed to start")
        log(f"{count} client processes ready in {time.perf_counter() - started:.1f} s")

    def run(self, clients, peer, seconds):
        start_at = time.time() + 0.2
        for pipe in self.pipes[:clients]:
            pipe.send(("run", peer, start_at, seconds))
        replies = [pipe.recv() for pipe in self.pipes[:clients]]
        latencies = [lat for reply in replies for lat in reply[0]]
        return latencies, max(r[1] for r in replies) - start_at, sum(r[2] for r in replies)

    def close(self):
        for pipe in self.pipes:
            pipe.send(("stop",))
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def run_threads(connections, config, clients, peer, seconds, prepared_per_thread):
    fetch = connections.fetcher(peer)
    start_at = time.time() + 0.1
    outputs = [None] * clients

    def body(index):
        outputs[index] = client_loop(fetch, prepared_per_thread[index], start_at, seconds)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(clients)]
    cpu0 = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = time.process_time() - cpu0
    latencies = [lat for output in outputs for lat in output[0]]
    return latencies, max(o[1] for o in outputs) - start_at, cpu


def run_concurrency(config, connections, results):
    settings = config["concurrency"]
    peers = [p for p in CONCURRENCY_PEERS if p not in config["skip_peers"]]
    counts = settings["clients"]
    modes = settings["modes"]
    seconds = settings["seconds"]
    requests = Requests(config, config["seed"] + 7)
    prepared = [[requests.make(settings["size"]) for _ in range(64)] for _ in range(max(counts))]
    pool = ProcessClients(config, max(counts)) if "processes" in modes else None
    records = []
    try:
        for round_index in range(settings["rounds"]):
            for clients in counts:
                for mode in modes:
                    order = peers[round_index % len(peers):] + peers[:round_index % len(peers)]
                    for peer in order:
                        server_pid = config["pids"][peer]
                        server_cpu0 = cpu_seconds_of(server_pid)
                        busy0, total0 = machine_ticks()
                        if mode == "threads":
                            latencies, elapsed, client_cpu = run_threads(connections, config, clients, peer, seconds, prepared)
                        else:
                            latencies, elapsed, client_cpu = pool.run(clients, peer, seconds)
                        busy1, total1 = machine_ticks()
                        server_cpu1 = cpu_seconds_of(server_pid)
                        records.append({
                            "round": round_index, "clients": clients, "mode": mode, "peer": peer,
                            "calls": len(latencies), "seconds": elapsed, "latencies_us": latencies,
                            "server_cpu_s": None if server_cpu0 is None or server_cpu1 is None else server_cpu1 - server_cpu0,
                            "clients_cpu_s": client_cpu,
                            "machine_busy": (busy1 - busy0) / max(1, total1 - total0),
                        })
                        log(f"  {clients:>2} {mode:<9} {peer:<13} {len(latencies) / elapsed:8.0f} calls/s")
            log(f"concurrency round {round_index + 1}/{settings['rounds']} done")
    finally:
        if pool is not None:
            pool.close()
    results["concurrency"] = records


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    sys.path.insert(0, config["python_path"])
    from embedding_cache import open_cache

    results = {"python": sys.version.split()[0], "numpy": np.__version__}
    import grpc
    results["grpcio"] = grpc.__version__
    results["redis_py"] = results["hiredis"] = None
    if "redis" not in config["skip_peers"]:
        import redis
        results["redis_py"] = redis.__version__
        try:
            import hiredis
            results["hiredis"] = hiredis.__version__
        except ImportError:
            pass

    started = time.perf_counter()
    dataset = np.load(config["npy"], mmap_mode="r")
    files = open_cache(config["artifacts"], config["model"], "document")
    all_ids = [config["id_format"].format(i) for i in range(config["rows"])]
    cache_rows = files.rows_of(ids=all_ids)
    if (cache_rows < 0).any():
        raise SystemExit(f"{int((cache_rows < 0).sum())} dataset ids are not in the cache files")
    del all_ids
    results["open_cache_seconds"] = time.perf_counter() - started
    log(f"open_cache: {len(files):,} rows in {results['open_cache_seconds']:.1f} s (sidecars read, ids indexed)")
    with open(config["texts_file"]) as f:
        texts = json.load(f)

    connections = Connections(config)
    local = {
        "local-get": lambda r: files.get(r.ids)[0],
        "local-lookup": lambda r: files.lookup_texts(r.texts)[0],
        "mmap-segments": lambda r: files.vectors[r.cache_rows],
        "mmap-npy": lambda r: dataset[r.rows],
    }
    requests = Requests(config, config["seed"], texts=texts, cache_rows_of=cache_rows)
    warm(config, connections, [files.vectors], dataset)
    if "latency" in config["phases"]:
        run_latency(config, connections, local, requests, dataset, results)
    if "concurrency" in config["phases"]:
        run_concurrency(config, connections, results)
    connections.close()
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
