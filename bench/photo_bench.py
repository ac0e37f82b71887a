"""Photo checker speed and memory, pinned to one core.

    .venv/bin/python bench/photo_bench.py [--rounds N]

Inputs: the 480x640 sample photos, and 12 MP phone-sized JPEGs (3000x4000 portrait and 4000x3000
landscape, quality 92) made by upscaling and padding sample photos. Reports median and p95 per photo
and the peak resident memory of this process.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

import rules.photo  # noqa: E402

PHOTOS = Path(os.environ.get("COLLECTOR_SHARED_PHOTOS", REPO / ".." / "shared" / "photos"))
TARGETS_MS = {"480x640": 150.0, "12 MP": 600.0}


def small_inputs(limit: int) -> list[bytes]:
    files = sorted(p for p in PHOTOS.glob("*.jpg") if _size(p) == (480, 640))
    return [p.read_bytes() for p in files[:limit]]


def large_inputs(limit: int) -> list[bytes]:
    sources = sorted(PHOTOS.glob("*_ok.jpg"))[:limit]
    out = []
    for i, path in enumerate(sources):
        with Image.open(path) as im:
            im = im.convert("RGB")
        if i % 2 == 0:
            big = im.resize((3000, 4000), Image.Resampling.BICUBIC)
        else:  # landscape: the portrait centred on a canvas of its background colour
            portrait = im.resize((2250, 3000), Image.Resampling.BICUBIC)
            big = Image.new("RGB", (4000, 3000), im.getpixel((5, 5)))
            big.paste(portrait, ((4000 - 2250) // 2, 0))
        buffer = io.BytesIO()
        big.save(buffer, "JPEG", quality=92)
        out.append(buffer.getvalue())
    return out


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def time_checks(inputs: list[bytes], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        for data in inputs:
            started = time.perf_counter()
            rules.photo.check(data)
            times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=40, help="how many 480x640 inputs")
    parser.add_argument("--large", type=int, default=8, help="how many 12 MP inputs")
    args = parser.parse_args()
    if not PHOTOS.exists():
        print(f"sample photos not found at {PHOTOS} (set COLLECTOR_SHARED_PHOTOS)", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    # Make the 12 MP inputs in a child process so that their decoded pixels do not count in this
    # process's peak memory, which should be the checker's alone.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        large = pool.submit(large_inputs, args.large).result()
    groups = {"480x640": small_inputs(args.photos), "12 MP": large}
    started = time.perf_counter()
    rules.photo.warm_up()
    print(f"model load (warm_up): {(time.perf_counter() - started) * 1000:.0f} ms, pinned to CPU 0")
    failed = False
    for name, inputs in groups.items():
        time_checks(inputs[:2], 1)  # first-call effects out of the measurement
        times = time_checks(inputs, args.rounds)
        median, high = statistics.median(times), p95(times)
        ok = median < TARGETS_MS[name]
        failed |= not ok
        print(f"{name:8s} n={len(times):4d}  median {median:6.1f} ms  p95 {high:6.1f} ms  "
              f"(target median < {TARGETS_MS[name]:.0f} ms: {'ok' if ok else 'MISSED'})")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS (ru_maxrss): {peak_mb:.0f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
