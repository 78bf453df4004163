"""`run.py predict` at volume: wall time, photos and faces per second and peak memory on N generated photos.

Usage: python scripts/benchmark_predict.py --photos 1000 10000 [--model URI] [--tracking-uri URI] [--out FILE]

The photos are scikit-image's astronaut (one face) and coffee (none), scaled to 256-400 px, mirrored and
brightened in turns, written as JPEG into a temporary folder. Each count runs one cold
``python run.py predict FOLDER --json OUT`` under ``/usr/bin/time -v``; the JSON lines are counted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]


def make_photos(folder: Path, n: int) -> None:
    """``n`` JPEGs in sub-folders of 1,000."""
    from skimage import data

    bases = [Image.fromarray(data.astronaut()), Image.fromarray(data.coffee())]
    for i in range(n):
        img = bases[i % 2]
        side = 256 + (i * 37) % 145
        img = img.resize((side, int(side * img.height / img.width)))
        if i % 3 == 1:
            img = ImageOps.mirror(img)
        if i % 5 == 2:
            img = Image.fromarray(np.clip(np.asarray(img, np.int16) + 25, 0, 255).astype(np.uint8))
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        img.save(sub / f"photo_{i:05d}.jpg", quality=90)


def run(folder: Path, out: Path, model: str | None, tracking_uri: str | None) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, str(ROOT / "run.py"), "predict", str(folder), "--json", str(out)]
    cmd += ["--model", model] if model else []
    cmd += ["--tracking-uri", tracking_uri] if tracking_uri else []
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    faces = sum(len(r["faces"]) for r in lines)
    return {"photos": len(lines), "faces": faces, "wall_s": round(wall, 1), "photos_per_s": round(len(lines) / wall, 1),
            "faces_per_s": round(faces / wall, 1), "peak_rss_mb": round(rss_kb / 1024), "answered_by":
            done.stdout.splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--model")
    parser.add_argument("--tracking-uri")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = []
    for n in args.photos:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "photos"
            folder.mkdir()
            make_photos(folder, n)
            results.append(run(folder, Path(tmp) / "out.jsonl", args.model, args.tracking_uri))
            print(json.dumps(results[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
