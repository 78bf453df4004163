"""A bounded load test of a served model (``make serve``): concurrent clients on 127.0.0.1 for a fixed time.

Usage: python scripts/load_test_serving.py [--port 5001] [--clients 8] [--seconds 30] [--faces 1 32] [--out FILE]

For each face count, ``--clients`` threads send requests of that many random 48x48 faces back to back for
``--seconds`` (after one warm-up request each). Prints JSON per face count: requests, errors (with the first
few messages), throughput, and the p50 / p90 / p99 / max latency in milliseconds. Only 127.0.0.1 is accepted.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np


def _request(url: str, body: bytes, timeout: float) -> float:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
    return (time.perf_counter() - start) * 1000


def load(port: int, clients: int, seconds: float, faces: int, timeout: float) -> dict:
    url = f"http://127.0.0.1:{port}/invocations"
    rng = np.random.default_rng(faces)
    body = json.dumps({"inputs": rng.integers(0, 256, (faces, 48, 48)).tolist()}).encode()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            try:
                ms = _request(url, body, timeout)
                with lock:
                    latencies.append(ms)
            except (urllib.error.URLError, OSError) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    _request(url, body, timeout)  # warm-up
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    ordered = sorted(latencies)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None  # noqa: E731
    return {"faces_per_request": faces, "clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies),
            "errors": len(errors), "first_errors": errors[:3], "requests_per_s": round(len(latencies) / elapsed, 2),
            "faces_per_s": round(len(latencies) * faces / elapsed, 1), "p50_ms": pick(0.5), "p90_ms": pick(0.9),
            "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 1) if ordered else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--timeout", type=float, default=60, help="client timeout per request, seconds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = [load(args.port, args.clients, args.seconds, n, args.timeout) for n in args.faces]
    for r in results:
        print(json.dumps(r))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
