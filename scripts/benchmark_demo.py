"""How long the demo page takes to answer one photo, warm, through its HTTP API (a command, not a test).

Starts the page in this process on 127.0.0.1 with the store's champion and contenders (as ``run.py demo`` does),
sends the photo once to warm up, then ``--repeats`` times, and prints the median and the slowest answer, with
the time the page's own work took (faces, every contender's probabilities and maps).

Usage: python scripts/benchmark_demo.py PHOTO [--tracking-uri sqlite:///mlflow.db] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fercore.serving.demo import build_app, launch, load_contenders  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--model-name", default="fer2013-emotion")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    start = time.perf_counter()
    contenders = load_contenders(args.model_name, args.tracking_uri)
    load_s = time.perf_counter() - start
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app(contenders, args.model_name, Path(tempfile.mkdtemp(prefix="fer-demo-")))
    launch(app, "127.0.0.1", port, block=False)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    first = client.predict(handle_file(str(args.photo)), None, api_name="/analyse")[0]
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        message = client.predict(handle_file(str(args.photo)), None, api_name="/analyse")[0]
        times.append(time.perf_counter() - t)
    app.close()
    print(json.dumps({"models": [c.label for c in contenders], "load_s": round(load_s, 2), "first": first,
                      "last": message, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                      "repeats": args.repeats}, indent=1))


if __name__ == "__main__":
    main()
