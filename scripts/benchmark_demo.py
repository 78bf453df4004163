"""How long the demo page takes to answer one photo, warm, through its HTTP API (a command, not a test).

Starts ``run.py demo`` on 127.0.0.1 in a process of its own (as a user does; a client in the page's own process
would share its cores and its interpreter), sends the photo once to warm up, then ``--repeats`` times, and prints
the median and the slowest answer, with the time the page's own work took (faces, every model's probabilities and
maps: the page's message) and how long the page took to start.

Usage: python scripts/benchmark_demo.py PHOTO [--tracking-uri sqlite:///mlflow.db] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_page(tracking_uri: str, model_name: str, port: int) -> subprocess.Popen:
    """``run.py demo`` in a process of its own, as a user starts it; returns once the page answers."""
    page = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "demo", "--tracking-uri", tracking_uri,
                             "--model-name", model_name, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    print(page.stdout.readline().strip(), flush=True)  # "Models: ...", once they are loaded
    while page.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return page
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"run.py demo exited with {page.returncode} before serving the page")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--model-name", default="fer2013-emotion")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    page = start_page(args.tracking_uri, args.model_name, port)
    start_s = time.perf_counter() - start
    # the answers' files, as a browser gets them; gradio_client also leaves an empty folder per file in the temp dir
    downloads = tempfile.TemporaryDirectory(prefix="fer-demo-benchmark-")
    tempfile.tempdir = downloads.name
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=downloads.name)
        first = client.predict(handle_file(str(args.photo)), None, api_name="/analyse")[0]
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            message = client.predict(handle_file(str(args.photo)), None, api_name="/analyse")[0]
            times.append(time.perf_counter() - t)
    finally:
        page.terminate()
        page.wait()
        downloads.cleanup()
    print(json.dumps({"page_start_s": round(start_s, 2), "first": first, "last": message,
                      "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                      "repeats": args.repeats}, indent=1))


if __name__ == "__main__":
    main()
