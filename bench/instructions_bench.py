"""Instructions per webhook message, the app against the bare Flask app, counted by valgrind's callgrind.

    .venv/bin/python bench/instructions_bench.py [--messages 200 600] [--text 帮助] [--modes plain aes]

`make bench`'s webhook rows read CPU time, and on a shared 2-core machine those move by 20-50 % between two
runs of the same code (the bare app's own rows too). An instruction count does not: the same code, given the
same requests, executes the same instructions whatever else the machine is doing. So this bench is the
one to compare a change to the hot path before and after (run it in both trees); `make bench` stays the one
for throughput and latency.

For each target (the bare app of bench/bare_app.py, then the app on a throw-away SQLite database) and mode
(plain requests in compatible mode with the replay guard, AES requests in safe mode, as deployed): the
parent records signed requests with the WeChat simulator (their candidates subscribed first), then runs a
child under callgrind twice, with the smaller and the larger message count. The child builds the app, sends
the same warm-up requests, then calls the WSGI app with each request, as a server would, with a fresh
environ. The difference of the two totals over the difference of the counts is the instructions per
message: start-up, imports and warm-up cancel out. Each child gets its own copy of the database, so both
see the same tables.

With --database-url (PostgreSQL) and --redis-url, the app runs on them instead: the subscribed database is
a template each run copies (CREATE DATABASE … TEMPLATE), and each run gets its own emptied Redis database
(the one in the URL, plus one and two). What is counted is then the app's side only: psycopg and the Redis
client, not the servers' own work.

What it leaves out: the server (gunicorn's parsing and socket work, the same for both targets), the
database and Redis servers' CPU, and the face models (not loaded: they are the photo step's, and the
collector would otherwise walk them; a served process freezes them, app._warm_up_then_freeze).
Needs valgrind (Debian's package); about a minute and a half per pair of runs.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable
sys.path.insert(0, str(ROOT / "bench"))

import webhook_bench  # noqa: E402
from standins.simulator import WeChatSimulator  # noqa: E402

WARM_UP_REQUESTS = 50  # sent by both runs before the counted ones: caches filled, statements compiled
CANDIDATES = 16
CLOCK_SKEW_SECONDS = 3600  # the recorded requests must still be fresh when the slower child replays them
TOTAL = re.compile(r"Collected : (\d+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, nargs=2, default=(200, 600), metavar=("SMALL", "LARGE"))
    parser.add_argument("--text", default=webhook_bench.TEXT)
    parser.add_argument("--modes", nargs="+", choices=("plain", "aes"), default=("plain", "aes"))
    parser.add_argument("--database-url", default="", help="PostgreSQL for the app (default: SQLite)")
    parser.add_argument("--redis-url", default="", help="Redis for the app, with PostgreSQL (default: none)")
    parser.add_argument("--child", nargs=4, metavar=("TARGET", "CONFIG", "REQUESTS", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--subscribe", metavar="MODE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        replay(*args.child)
        return
    if args.subscribe:
        subscribe_in_process(args.subscribe)
        return
    small, large = sorted(args.messages)
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions_bench: valgrind is not installed (apt-get install valgrind)")
    services = ServiceUrls(args.database_url, args.redis_url)
    print(f"instructions per message, callgrind, {small} and {large} messages of {args.text!r} after "
          f"{WARM_UP_REQUESTS} warm-up requests, {services.describe()}, in process (no server)")
    print(f"{'target':8}{'mode':6}{'instructions/msg':>18}")
    per_message: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="instructions-bench-") as tmp:
        for mode in args.modes:
            for target in ("bare", "app"):
                per_message[target, mode] = measure(Path(tmp) / f"{target}-{mode}", target, mode, args.text,
                                                    small, large, services)
                print(f"{target:8}{mode:6}{per_message[target, mode]:18,.0f}", flush=True)
    for mode in args.modes:
        print(f"app/bare {mode}: {per_message['app', mode] / per_message['bare', mode]:.2f}x the instructions")


class ServiceUrls:
    """Where the app's database and Redis are: a throw-away SQLite file, or copies on the given servers."""

    TEMPLATE = "instructions_template"

    def __init__(self, database_url: str, redis_url: str):
        if redis_url and not database_url:
            raise SystemExit("instructions_bench: --redis-url goes with --database-url (PostgreSQL)")
        self.database_url = database_url
        self.redis_url = redis_url

    def describe(self) -> str:
        if not self.database_url:
            return "SQLite"
        return f"PostgreSQL{' + Redis' if self.redis_url else ''}"

    def template(self, workdir: Path) -> tuple[str, str]:
        """The URLs the subscribed state is built in."""
        if not self.database_url:
            return f"sqlite:///{workdir / 'db' / 'bench.db'}", ""
        self._recreate_database(self.TEMPLATE)
        return self._database(self.TEMPLATE), self._redis(0)

    def copy_for_run(self, workdir: Path, run_dir: Path, run: int) -> tuple[str, str]:
        """The URLs of run number `run`'s own copy of the template's state."""
        if not self.database_url:
            if (workdir / "db").exists():  # the app's database (the bare app has none)
                shutil.copytree(workdir / "db", run_dir / "db")
            return f"sqlite:///{run_dir / 'db' / 'bench.db'}", ""
        name = f"instructions_run_{run}"
        self._recreate_database(name, template=self.TEMPLATE)
        return self._database(name), self._redis(run + 1)

    def _database(self, name: str) -> str:
        return make_url(self.database_url).set(database=name).render_as_string(hide_password=False)

    def _redis(self, offset: int) -> str:
        if not self.redis_url:
            return ""
        import redis

        url = urlsplit(self.redis_url)
        number = int(url.path.strip("/") or 0) + offset
        address = url._replace(path=f"/{number}").geturl()
        redis.Redis.from_url(address).flushdb()
        return address

    def _recreate_database(self, name: str, template: str | None = None) -> None:
        with webhook_bench.admin_connection(self.database_url, database="postgres") as admin:
            admin.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def measure(workdir: Path, target: str, mode: str, text: str, small: int, large: int,
            services: ServiceUrls) -> float:
    workdir.mkdir(parents=True)
    uses_services = target == "app"  # the bare app has no database
    database_url, redis_url = services.template(workdir) if uses_services else ("sqlite://", "")
    config = write_config(workdir, mode, database_url, redis_url)
    if uses_services:
        webhook_bench.upgrade_database("app", {**os.environ, "COLLECTOR_CONFIG": str(config)})
        subscribe(config, mode)
    requests_file = workdir / "requests.json"
    requests_file.write_text(json.dumps(record(mode, text, WARM_UP_REQUESTS + large)), encoding="utf-8")
    runs = []
    for run, count in enumerate((small, large)):
        run_dir = workdir / f"run-{count}"
        run_dir.mkdir()
        run_urls = services.copy_for_run(workdir, run_dir, run) if uses_services else ("", "")
        runs.append((count, run_config(config, run_dir, (database_url, redis_url), run_urls), requests_file))
    with ThreadPoolExecutor(max_workers=2) as pool:
        totals = dict(pool.map(lambda run: (run[0], count_instructions(target, *run)), runs))
    return (totals[large] - totals[small]) / (large - small)


def write_config(workdir: Path, mode: str, database_url: str, redis_url: str) -> Path:
    options = argparse.Namespace(database_url=database_url, redis_url=redis_url, workers=1)
    # No WeChat API is reached: the messages are answered passively.
    config = webhook_bench.write_config(workdir, "http://127.0.0.1:9", options, 0,
                                        webhook_bench.wechat_mode_for(mode, argparse.Namespace(wechat_mode=None)))
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[wechat]\n", f"[wechat]\nmax_clock_skew_seconds = {CLOCK_SKEW_SECONDS}\n"),
                      encoding="utf-8")
    return config


def run_config(config: Path, run_dir: Path, template_urls: tuple[str, str], run_urls: tuple[str, str]) -> Path:
    """The config with the run's own copy of the database, Redis and data directory."""
    text = config.read_text(encoding="utf-8")
    for template_url, run_url in zip(template_urls, run_urls):
        if template_url and run_url:
            text = text.replace(json.dumps(template_url), json.dumps(run_url))
    text = text.replace(json.dumps(str(config.parent / "data")), json.dumps(str(run_dir / "data")))
    copy = run_dir / config.name
    copy.write_text(text, encoding="utf-8")
    return copy


def subscribe(config: Path, mode: str) -> None:
    """The candidates' first contact, through the app itself (so the counted messages find their rows)."""
    subprocess.run([sys.executable, __file__, "--subscribe", mode], cwd=ROOT, check=True,
                   env={**os.environ, "COLLECTOR_CONFIG": str(config)})


def subscribe_in_process(mode: str) -> None:
    client = build("app").test_client()

    def send(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        response = client.open(path, method=method, data=body, headers={"Content-Type": "text/xml"})
        return response.status_code, response.data

    simulator = WeChatSimulator(webhook_bench.TOKEN, webhook_bench.APPID, webhook_bench.AES_KEY, send,
                                aes=mode == "aes")
    for number in range(CANDIDATES):
        reply = simulator.event(openid(number), "subscribe")
        if reply.status != 200:
            raise SystemExit(f"instructions_bench: subscribing failed with {reply.status}")


def record(mode: str, text: str, count: int) -> list[list[str]]:
    """`count` signed requests, [query string, base64 body], from CANDIDATES candidates in turn."""
    recorded: list[list[str]] = []

    def keep(_method: str, path: str, body: bytes) -> tuple[int, bytes]:
        recorded.append([urlsplit(path).query, base64.b64encode(body).decode()])
        return 200, b"success"

    simulator = WeChatSimulator(webhook_bench.TOKEN, webhook_bench.APPID, webhook_bench.AES_KEY, keep,
                                aes=mode == "aes")
    for number in range(count):
        simulator.text(openid(number % CANDIDATES), text)
    return recorded


def openid(number: int) -> str:
    return f"o_instructions_{number:04d}"


def count_instructions(target: str, count: int, config: Path, requests_file: Path) -> int:
    out = config.parent / "callgrind.out"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
               "--child", target, str(config), str(requests_file), str(count)]
    run = subprocess.run(command, cwd=ROOT, env={**os.environ, "COLLECTOR_CONFIG": str(config)},
                         capture_output=True, text=True)
    found = TOTAL.search(run.stderr)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"instructions_bench: the {target} run of {count} failed ({run.returncode}):\n"
                         f"{run.stderr[-3000:]}")
    return int(found.group(1))


# -- the child, under callgrind ----------------------------------------------------------------------

def replay(target: str, _config: str, requests_file: str, count: str) -> None:
    count = int(count)
    wsgi_app = build(target)
    recorded = json.loads(Path(requests_file).read_text(encoding="utf-8"))
    for query, body in recorded[:WARM_UP_REQUESTS + count]:
        call(wsgi_app, query, base64.b64decode(body))
    if target == "app":
        import app as collector

        if collector._warm_up_thread is not None:
            collector._warm_up_thread.join()


def build(target: str):
    if target == "bare":
        import bare_app

        return bare_app.create_app()
    import app as collector
    import rules.photo

    rules.photo.warm_up = lambda: None  # the face models are the photo step's (see the module's docstring)
    return collector.create_app()


def call(wsgi_app, query: str, body: bytes) -> None:
    environ = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": "/wechat", "QUERY_STRING": query,
               "CONTENT_TYPE": "text/xml", "CONTENT_LENGTH": str(len(body)), "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
               "HTTP_HOST": "127.0.0.1:8000", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
               "wsgi.input": BytesIO(body), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
               "wsgi.multiprocess": True, "wsgi.run_once": False}
    statuses = []
    chunks = wsgi_app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not statuses or not statuses[0].startswith("200"):
        raise SystemExit(f"instructions_bench: a request was answered {statuses}")


if __name__ == "__main__":
    main()
