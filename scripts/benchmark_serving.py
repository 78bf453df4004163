"""Latency of a served model (`make serve`): one request with one face and one with 256 faces.

Usage: python scripts/benchmark_serving.py [--url http://127.0.0.1:5001] [--repeats 20] [--faces 1 256]
Prints JSON: the median and 90th percentile of each request's wall time, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

import numpy as np


def _request(url: str, faces: np.ndarray) -> float:
    body = json.dumps({"inputs": faces.tolist()}).encode()
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    elapsed = time.perf_counter() - start
    assert len(answer["predictions"]) == len(faces)
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5001")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 256], help="faces per request, one size each")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out = {}
    for n in args.faces:
        faces = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
        _request(args.url, faces)  # warm-up
        times = sorted(_request(args.url, faces) for _ in range(args.repeats))
        out[f"{n}_faces"] = {"median_ms": round(statistics.median(times), 1),
                             "p90_ms": round(times[int(0.9 * (len(times) - 1))], 1), "repeats": args.repeats}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
