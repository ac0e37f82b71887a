"""Hand-over bench: build one batch of N approved photos (`flask handover build`'s function) on SQLite.

    .venv/bin/python bench/handover_bench.py [--photos 20000] [--normalised]

The parent makes N distinct small JPEGs (one 240×320 picture with a unique JPEG comment each, so every
file has its own SHA-256), stores them as the app stores uploads, and records N approved photos with their
roster entries (bulk inserts). A fresh child process then builds the batch, so its peak RSS is the build's
alone; it prints its RSS before the build (imports, app) as the baseline of the same run. The zip is
written file by file: peak RSS must stay far below the zip's size.
"""
from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

CONFIG = """database_url = "sqlite:///{tmp}/bench.db"
data_dir = "{tmp}/data"
log_level = "WARNING"
secret_key = "handover-bench-secret-key-0123456789abcdef"
[privacy]
keys = {{ 1 = "YmVuY2gtcGhvdG8ta2V5LTMyLWJ5dGVzLWxvbmctMTI=" }}
active_key = "1"
[handover]
normalised_copy = {normalised}
"""


def base_jpeg() -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 320), (90, 140, 210))
    ImageDraw.Draw(image).ellipse((70, 60, 170, 190), fill=(225, 190, 160))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def unique_jpeg(base: bytes, n: int) -> bytes:
    """The same picture with a COM segment right after SOI: a valid JPEG with bytes of its own."""
    comment = f"bench photo {n}".encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def seed(config: Path, count: int) -> int:
    from sqlalchemy import insert

    from app import create_app
    from store.migrate import upgrade
    from store.models import Candidate, Photo, RosterEntry, utcnow

    app = create_app(config)
    collector = app.extensions["collector"]
    upgrade(collector.settings.database_url)
    files, base, now = collector.services.photo_files, base_jpeg(), utcnow()  # encrypted, as uploads are
    stored = [files.put(unique_jpeg(base, n)) for n in range(1, count + 1)]
    with collector.db.session() as session:
        session.execute(insert(RosterEntry), [
            {"id": n, "name": f"考生{n}", "id_number": f"110101199001{n:06d}", "exam_number": f"0124{n:08d}",
             "level": "本科", "major": "汉语言文学", "created_at": now, "updated_at": now} for n in range(1, count + 1)])
        session.execute(insert(Candidate), [
            {"id": n, "openid": f"o_bench_{n}", "state": "approved", "roster_entry_id": n, "created_at": now,
             "updated_at": now} for n in range(1, count + 1)])
        session.execute(insert(Photo), [
            {"candidate_id": n, "roster_entry_id": n, "sha256": s.sha256, "path": s.relative_path,
             "size_bytes": s.size_bytes, "verdict": "pass", "report": {"verdict": "pass", "failures": [], "hints": []},
             "status": "approved", "reviewed_at": now, "reviewed_by": "bench", "created_at": now}
            for n, s in enumerate(stored, start=1)])
    collector.db.dispose()
    return sum(s.size_bytes for s in stored)


def build(config: Path) -> None:
    """Child process: the build alone, reporting time and RSS as one JSON line."""
    from app import create_app
    from staff import handover

    app = create_app(config)
    collector = app.extensions["collector"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    batch = handover.build_batch(collector.db, collector.settings, "bench")
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": elapsed, "rss_before_kb": before, "rss_peak_kb": peak, "photos": batch.photo_count,
                      "zip_bytes": batch.size_bytes}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--normalised", action="store_true", help="also write the 480×640 copies")
    parser.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_only:
        build(args.build_only)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.toml"
        config.write_text(CONFIG.format(tmp=folder, normalised=str(args.normalised).lower()), encoding="utf-8")
        started = time.perf_counter()
        photo_bytes = seed(config, args.photos)
        seeded = time.perf_counter() - started
        child = subprocess.run([sys.executable, __file__, "--build-only", str(config)], capture_output=True,
                               text=True, cwd=ROOT)
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            return 1
        result = json.loads(child.stdout.strip().splitlines()[-1])
    mb = 1024 * 1024
    kind = "originals + 480×640 copies" if args.normalised else "originals"
    print(f"hand-over: {result['photos']} approved photos ({photo_bytes / mb:.0f} MB, {kind}), SQLite, "
          f"seeded in {seeded:.0f} s")
    print(f"build {result['seconds']:.1f} s ({result['photos'] / result['seconds']:.0f} photos/s), "
          f"zip {result['zip_bytes'] / mb:.0f} MB; RSS before {result['rss_before_kb'] / 1024:.0f} MB, "
          f"peak {result['rss_peak_kb'] / 1024:.0f} MB (+{(result['rss_peak_kb'] - result['rss_before_kb']) / 1024:.0f} MB)")
    failed = result["photos"] != args.photos or (result["rss_peak_kb"] - result["rss_before_kb"]) * 1024 > \
        result["zip_bytes"] / 2
    if failed:
        print("FAILED: a photo is missing or the build held much of the zip in memory", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
