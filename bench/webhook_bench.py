"""Webhook throughput/latency bench: the real app under the production server, driven like WeChat drives it,
against a bare Flask app answering "success" under the same server and settings in the same run.

    .venv/bin/python bench/webhook_bench.py [--requests 2000] [--seconds 30] [--clients 8 64]
        [--server gunicorn|waitress] [--workers 2] [--database-url URL] [--redis-url URL] [--text 帮助]
        [--paced-share 0.1 0.2 0.3] [--rounds 3] [--wechat-mode production|compatible]

Starts a fake WeChat API, then for plain and AES requests two servers side by side, the bare baseline and
the app (gunicorn with `--workers` sync workers through `serving.py`, or waitress with 16 threads), each
with a throw-away config (and a throw-away SQLite database unless --database-url names a scratch one)
whose `[wechat] mode` is the one such requests are served under when deployed (plain: compatible, with the
replay guard; AES: safe). Then `--rounds` rounds: in each, for each client count, one run on each server
back to back, the order flipped every round (bare, app; then app, bare). In a run every client (its own
openid) subscribes untimed, then sends the text with fresh MsgIds, timed, until the run's request budget
or time limit is used up. Clients are threads spread over several processes so the client side's GIL is
not the bottleneck, each request on a new connection through http.client (see lean_transport: the clients
share the cores with the server, so their CPU is kept small and printed, `client`). The server's CPU per
request is read from its processes' CPU times (/proc) once every client has subscribed and at the run's
end, and PostgreSQL's and Redis's (`db+redis`: every such process on this machine, so keep it otherwise
quiet), and the share of the machine's CPU time its hypervisor gave to other guests meanwhile (`steal%`:
on a virtual machine with a busy host every figure of the row is worse) and the share nothing used
(`idle%`, idle and iowait: a closed-loop run that leaves CPU idle is bound by waiting, on a lock or a
disk, not by the CPU its processes use). Prints one row per run, then the
app's throughput as a share of the baseline's: each round's share from its two adjacent runs, and the
median of the rounds. A virtual machine's speed drifts (2x within a quarter of an hour here on 1 Dec
2026); adjacent runs see the same machine, and a median is not moved by one slow stretch. Exits non-zero
if any request failed.

Those runs are closed loops: each client sends its next message the moment it has the reply, so the server
is always saturated and a request's latency is mostly its wait behind the other clients' (with 2 workers
and 64 clients, p50 ≈ 64 / throughput, for the bare app too). WeChat does not wait for one candidate's
reply before forwarding another's: candidates' messages arrive on their own. So each target also runs
paced (open loop) at the largest client count: the clients send at random (Poisson) times at a total rate
of `--paced-share` × the bare app's median closed-loop throughput in this run (0.3: the throughput
target), on both servers, every round, and a request's latency counts from when it was due, so time spent
behind a slow reply counts too. Those rows (clients shown as e.g. "64p") give the p99 a webhook has at
that load.

Every message's transaction is durable: on PostgreSQL its COMMIT waits for the WAL's fsync. A disk whose
fsync stalls (this VM's took over 30 ms in 24 of 41 idle seconds, up to 584 ms, on 30 Nov 2026) stalls
every commit behind it, whatever the app does. So each paced run also times lone durable writes beside it
(DurabilityProbe) and prints their p99 next to the app's.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from urllib.parse import urlsplit

import requests
from sqlalchemy import create_engine
from wechatpy.exceptions import InvalidSignatureException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `bot` importable

from loadtest.cluster import admin_connection  # noqa: E402
from standins.simulator import XML_CONTENT_TYPE, ReplyError, WeChatSimulator, http_transport  # noqa: E402
from standins.wechat_api import FakeWeChatAPI  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "bench-token"
APPID = "wx_bench_appid_0001"
SECRET = "bench-secret"
AES_KEY = "cGhvdG8tY29sbGVjdG9yIHdlYmhvb2sgYmVuY2ghISE"  # 43 characters: base64 of 32 bytes, no "="
SERVER_THREADS = 16
TEXT = "帮助"
STARTUP_TIMEOUT_SECONDS = 30
WECHAT_TIMEOUT_SECONDS = 5.0  # WeChat gives up on a webhook after 5 s
MAX_ERROR_SAMPLES = 3
PACED_SECONDS = 10  # a paced run sends at least this long at its rate


@dataclass(frozen=True)
class RunSpec:
    mode: str  # "plain" or "aes"
    clients: int
    requests: int
    seconds: float
    text: str = TEXT
    rate: float = 0.0  # paced: the clients' total requests per second (0: closed loop)
    client: str = "lean"  # the timed clients' HTTP: "lean" (http.client) or "requests"


@dataclass
class WorkerResult:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0  # failed timed requests
    setup_errors: int = 0  # failed untimed subscribes
    error_samples: list[str] = field(default_factory=list)
    started: float = math.inf
    finished: float = 0.0
    client_cpu_seconds: float = 0.0  # the client processes' own CPU during the timed requests


# --- server under test ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wechat_mode_for(mode: str, args: argparse.Namespace) -> str:
    """The account's [wechat] mode a run's requests are served under."""
    if args.wechat_mode == "compatible":
        return "compatible"
    # As deployed: an account set to AES runs safe mode (the replay guard is not needed, msg_signature
    # covers the body); one taking plain requests runs compatible or plain mode, with the replay guard.
    return "safe" if mode == "aes" else "compatible"


def write_config(workdir: Path, api_base_url: str, args: argparse.Namespace, port: int, wechat_mode: str,
                 label: str = "app") -> Path:
    config = workdir / f"bench-{label}-{wechat_mode}.toml"
    values = {
        "database_url": args.database_url or f"sqlite:///{workdir / 'bench.db'}",
        "data_dir": str(workdir / "data"),
        "secret_key": secrets.token_hex(32),  # the placeholder one is refused
        "redis_url": args.redis_url,
    }
    wechat = {"token": TOKEN, "appid": APPID, "secret": SECRET, "encoding_aes_key": AES_KEY, "api_base_url": api_base_url,
              "mode": wechat_mode}
    server = {"host": HOST, "port": port, "threads": SERVER_THREADS, "workers": args.workers, "worker_class": "sync"}
    jobs = {"queue_name": f"webhook-bench-{secrets.token_hex(4)}"}  # its own Redis keys
    lines = [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    lines += ["", "[wechat]"] + [f"{key} = {json.dumps(value)}" for key, value in wechat.items()]
    lines += ["", "[server]"] + [f"{key} = {json.dumps(value)}" for key, value in server.items()]
    lines += ["", "[jobs]"] + [f"{key} = {json.dumps(value)}" for key, value in jobs.items()]
    # Personal data is sealed at rest (store/sealed.py): throw-away keys, so the bench pays for it as production does.
    lines += ["", "[privacy]", f'keys = {{ "1" = {json.dumps(random_key())} }}', 'active_key = "1"',
              f"lookup_key = {json.dumps(random_key())}"]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def random_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def upgrade_database(app: str, env: dict[str, str]) -> None:
    """`flask --app app db upgrade`, if the app has that command."""
    flask = [sys.executable, "-m", "flask", "--app", app]
    commands = subprocess.run(flask + ["--help"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    if "\n  db " not in commands.stdout:
        print("note: the app has no `flask db` command; skipping the database upgrade")
        return
    upgrade = subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True)
    if upgrade.returncode != 0:
        raise SystemExit(f"bench: `flask db upgrade` failed ({upgrade.returncode}):\n{upgrade.stderr[-3000:]}")


def start_server(app: str, port: int, env: dict[str, str], log_path: Path, server: str) -> subprocess.Popen:
    if server == "gunicorn":  # the production server, options from the config's [server]
        command = [sys.executable, str(ROOT / "bench" / "serve_factory.py"), app]
    else:
        command = [
            sys.executable, "-m", "waitress",
            f"--listen={HOST}:{port}", f"--threads={SERVER_THREADS}",
            "--call", app,
        ]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_answering(server: subprocess.Popen, base_url: str, log_path: Path) -> None:
    """Until the webhook passes WeChat's URL verification; SystemExit if the server dies or stalls."""
    simulator = make_simulator(requests_transport(base_url), aes=False)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"the server exited with code {server.returncode}", log_path)
        try:
            if simulator.verify_url("bench-ready").content == "bench-ready":
                return
        except requests.ConnectionError:
            pass  # not listening yet
        time.sleep(0.2)
    fail(f"the server did not answer within {STARTUP_TIMEOUT_SECONDS}s", log_path)


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def fail(reason: str, log_path: Path) -> None:
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-3000:] if log_path.exists() else ""
    raise SystemExit(f"bench: {reason}\n--- server log (tail) ---\n{tail}")


# --- clients (run in worker processes) --------------------------------------------------------


def make_simulator(transport, aes: bool) -> WeChatSimulator:
    return WeChatSimulator(TOKEN, APPID, AES_KEY, transport, aes=aes)


def requests_transport(base_url: str):
    return http_transport(base_url, session=requests.Session(), timeout=WECHAT_TIMEOUT_SECONDS)


def lean_transport(base_url: str):
    """The timed clients' transport: http.client, a new connection per request (as WeChat connects, and
    gunicorn's sync workers close each one). The load generator shares the machine's cores with the
    server under test: through `requests` a client spent 1.5-2.0 ms of CPU per request, as much as the
    app, and those cycles were taken from the server in the paced runs."""
    parts = urlsplit(base_url)

    def send(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WECHAT_TIMEOUT_SECONDS)
        try:
            connection.request(method, path, body=body or None, headers={"Content-Type": XML_CONTENT_TYPE})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    return send


class Tickets:
    """A process's share of the run's requests, handed out to its client threads until used or late."""

    def __init__(self, count: int, deadline: float):
        self._left = count
        self._deadline = deadline
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.time() >= self._deadline:
                return False
            self._left -= 1
            return True


def worker(base_url: str, spec: RunSpec, clients: int, quota: int, ready, go, results) -> None:
    """One client process: `clients` threads, each one user; reports a WorkerResult on `results`."""
    result = WorkerResult()
    lock = threading.Lock()
    transport = lean_transport if spec.client == "lean" else requests_transport
    simulators = [make_simulator(transport(base_url), aes=spec.mode == "aes") for _ in range(clients)]
    openids = ["o_bench_" + secrets.token_hex(10) for _ in range(clients)]
    for simulator, openid in zip(simulators, openids):
        problem = attempt(lambda: simulator.event(openid, "subscribe"))
        if problem is not None:
            result.setup_errors += 1
            keep_sample(result, f"subscribe: {problem}")
    ready.put(os.getpid())
    go.wait()
    cpu_before = time.process_time()
    tickets = Tickets(quota, deadline=time.time() + spec.seconds)
    loop, extra = (client_loop, ()) if not spec.rate else (paced_client_loop, (spec.rate / spec.clients,))
    threads = [
        threading.Thread(target=loop, args=(sim, openid, spec.text, tickets, result, lock) + extra)
        for sim, openid in zip(simulators, openids)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.client_cpu_seconds = time.process_time() - cpu_before
    results.put(result)


def client_loop(simulator: WeChatSimulator, openid: str, text: str, tickets: Tickets, result: WorkerResult, lock) -> None:
    while tickets.take():
        started = time.time()
        problem = attempt(lambda: simulator.text(openid, text))
        record(result, lock, started, time.time(), problem)


def paced_client_loop(simulator: WeChatSimulator, openid: str, text: str, tickets: Tickets, result: WorkerResult,
                      lock, rate: float) -> None:
    """One candidate sending at random times, `rate` a second on average; latency from when each was due."""
    chance = random.Random()
    due = time.time() + chance.expovariate(rate)
    while tickets.take():
        time.sleep(max(0.0, due - time.time()))
        problem = attempt(lambda: simulator.text(openid, text))
        record(result, lock, due, time.time(), problem)
        due += chance.expovariate(rate)


def record(result: WorkerResult, lock, since: float, finished: float, problem: str | None) -> None:
    """One request's outcome; its latency counts from `since` (when it was sent, or due)."""
    with lock:
        result.started = min(result.started, since)
        result.finished = max(result.finished, finished)
        if problem is None:
            result.latencies_ms.append((finished - since) * 1000)
        else:
            result.errors += 1
            keep_sample(result, problem)


def attempt(push) -> str | None:
    """Send one push; what went wrong, or None if the webhook answered 200 with a valid reply."""
    try:
        reply = push()
    except (OSError, http.client.HTTPException, requests.RequestException, ReplyError,
            InvalidSignatureException) as exc:
        return repr(exc)
    return None if reply.status == 200 else f"HTTP {reply.status}: {reply.body[:120]!r}"


def keep_sample(result: WorkerResult, problem: str) -> None:
    if len(result.error_samples) < MAX_ERROR_SAMPLES:
        result.error_samples.append(problem)


# --- orchestration ----------------------------------------------------------------------------


def run(base_url: str, spec: RunSpec, max_processes: int, on_go=lambda: None) -> WorkerResult:
    """The run's clients subscribe (untimed), then `on_go()` is called and the timed requests start."""
    context = multiprocessing.get_context("spawn")
    processes = max(1, min(spec.clients, max_processes))
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    workers = []
    for index in range(processes):
        clients = spread(spec.clients, processes, index)
        quota = spread(spec.requests, processes, index)
        process = context.Process(target=worker, args=(base_url, spec, clients, quota, ready, go, results))
        process.start()
        workers.append(process)
    for _ in workers:
        ready.get(timeout=120)
    on_go()
    go.set()
    merged = WorkerResult()
    for _ in workers:
        merge(merged, results.get(timeout=spec.seconds + 120))
    for process in workers:
        process.join()
    return merged


def spread(total: int, parts: int, index: int) -> int:
    """Share `index` of `total` split into `parts` as evenly as possible."""
    return total // parts + (1 if index < total % parts else 0)


def merge(into: WorkerResult, part: WorkerResult) -> None:
    into.latencies_ms += part.latencies_ms
    into.errors += part.errors
    into.setup_errors += part.setup_errors
    into.error_samples += part.error_samples
    into.started = min(into.started, part.started)
    into.finished = max(into.finished, part.finished)
    into.client_cpu_seconds += part.client_cpu_seconds


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[max(index, 0)]


def table_row(label: str, spec: RunSpec, measured: "Measured") -> str:
    result = measured.result
    latencies = sorted(result.latencies_ms)
    done = len(latencies) + result.errors
    clients = f"{spec.clients}p" if spec.rate else str(spec.clients)
    return (
        f"{label:<8}{spec.mode:<6}{clients:>8}{done:>10}{throughput(result):>12.1f}"
        f"{percentile(latencies, 0.50):>10.1f}{percentile(latencies, 0.99):>10.1f}{measured.cpu_ms:>10.2f}"
        f"{measured.services_ms:>10.2f}{1000 * result.client_cpu_seconds / max(1, done):>10.2f}{result.errors:>8}"
        f"{measured.steal_percent:>8.1f}{measured.idle_percent:>7.1f}"
    )


def throughput(result: WorkerResult) -> float:
    elapsed = result.finished - result.started
    return len(result.latencies_ms) / elapsed if elapsed > 0 else math.nan


# --- the server's CPU time ----------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (gunicorn's master and workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server's processes so far (live ones: workers are not restarted)."""
    return sum(cpu_ticks(Path(f"/proc/{member}/stat"))[1] for member in process_tree(pid)) / CLOCK_TICKS


def cpu_ticks(stat: Path) -> tuple[str, int]:
    """A process's name and user + system CPU time in clock ticks, from /proc/PID/stat ("", 0 if gone)."""
    try:
        head, tail = stat.read_text().rsplit(")", 1)
    except OSError:
        return "", 0
    fields = tail.split()
    return head.split("(", 1)[1], int(fields[11]) + int(fields[12])  # utime, stime


SERVICES = ("postgres", "redis-server")  # the local database and Redis the app talks to


def services_cpu_seconds() -> float:
    """User + system CPU time so far of this machine's PostgreSQL and Redis processes (0 when the app
    uses neither: SQLite runs inside the server's processes)."""
    ticks = (cpu_ticks(stat) for stat in Path("/proc").glob("[0-9]*/stat"))
    return sum(used for name, used in ticks if name in SERVICES) / CLOCK_TICKS


@dataclass(frozen=True)
class Measured:
    result: WorkerResult
    cpu_ms: float  # the server's CPU per request
    services_ms: float  # PostgreSQL's and Redis's CPU per request
    steal_percent: float  # of the machine's CPU time, taken by the hypervisor for other guests (/proc/stat)
    idle_percent: float  # of the machine's CPU time, used by nothing (idle and iowait)


def measured_run(base_url: str, spec: RunSpec, processes: int, server_pid: int) -> Measured:
    """CPU is counted from when every client has subscribed: a subscribe registers a candidate, and 64 of
    them would be charged to 2 000 text messages (0.1-0.2 ms each)."""
    before = {}

    def take_before() -> None:
        before.update(server=cpu_seconds(server_pid), services=services_cpu_seconds(), machine=machine_ticks())

    result = run(base_url, spec, processes, on_go=take_before)
    requests_done = max(1, len(result.latencies_ms) + result.errors)
    steal, idle, total = (after - earlier for earlier, after in zip(before["machine"], machine_ticks()))
    return Measured(result, (cpu_seconds(server_pid) - before["server"]) * 1000 / requests_done,
                    (services_cpu_seconds() - before["services"]) * 1000 / requests_done,
                    100 * steal / total if total else math.nan, 100 * idle / total if total else math.nan)


def machine_ticks() -> tuple[int, int, int]:
    """The machine's stolen, unused (idle and iowait) and total CPU ticks so far. On a virtual machine whose
    host is busy the guest waits for a CPU (steal) and every process runs slower on the CPU it gets (one
    machine here: 0 % steal at the start of a session, 3-21 % an hour later, when the same code cost 40 %
    more CPU per message)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    steal = fields[7] if len(fields) > 7 else 0  # user nice system idle iowait irq softirq steal ...
    return steal, fields[3] + fields[4], sum(fields[:8])


class DurabilityProbe:
    """While a paced run goes on: how long a lone durable write takes on this machine, so a p99 can be read
    against the floor the disk sets. On PostgreSQL, one-row INSERT + COMMIT on a connection of its own (the
    COMMIT waits for the WAL's fsync, as every message's does); on SQLite, whose commits do not fsync in WAL
    mode with synchronous=NORMAL but whose checkpoints do, an 8 KiB write + fdatasync beside the database.
    PROBE_EVERY_SECONDS apart: a few dozen a second, too few to load the machine."""

    PROBE_EVERY_SECONDS = 0.05

    def __init__(self, database_url: str, directory: Path):
        self.database_url = database_url
        self.directory = directory
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "DurabilityProbe":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        what = "commit" if self.database_url else "fsync"
        latencies = sorted(self.latencies_ms)
        if not latencies:
            return f"lone {what}: none measured"
        return (f"lone {what} p50 {percentile(latencies, 0.5):.1f} p99 {percentile(latencies, 0.99):.1f} "
                f"max {latencies[-1]:.1f} ms")

    def p99(self) -> float:
        return percentile(sorted(self.latencies_ms), 0.99)

    def _run(self) -> None:
        with self._commit() if self.database_url else self._fsync() as write:
            while not self._stop.wait(self.PROBE_EVERY_SECONDS):
                started = time.perf_counter()
                write()
                self.latencies_ms.append((time.perf_counter() - started) * 1000)

    @contextlib.contextmanager
    def _commit(self):
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_durability_probe (at timestamptz)")
                connection.commit()

                def write() -> None:
                    connection.exec_driver_sql("INSERT INTO bench_durability_probe VALUES (now())")
                    connection.commit()

                yield write
        finally:
            engine.dispose()

    @contextlib.contextmanager
    def _fsync(self):
        path = self.directory / "durability-probe"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        block = b"\0" * 8192
        try:
            def write() -> None:
                os.pwrite(descriptor, block, 0)
                os.fdatasync(descriptor)

            yield write
        finally:
            os.close(descriptor)
            path.unlink(missing_ok=True)


def report_autovacuum(database_url: str) -> None:
    """A server with autovacuum off (this machine's was, on 30 Nov 2026) lets every run's dead claim rows
    and unanalysed tables slow the next: say so, since the bench vacuums its scratch database itself."""
    with admin_connection(database_url) as connection:
        if connection.exec_driver_sql("SHOW autovacuum").scalar() != "on":
            print("note: the PostgreSQL server runs with autovacuum off (production must not); the bench runs "
                  "VACUUM ANALYZE on its database after each warm-up")


def vacuum(database_url: str) -> None:
    """VACUUM ANALYZE, as autovacuum would have: each message leaves a dead claim row (the claim is
    inserted, then settled, in its transaction). After the warm-up, not before: tables analysed while
    empty give the hot statements, which psycopg prepares, generic plans that scan the whole table, kept
    by the server's connections until the next ANALYZE."""
    with admin_connection(database_url) as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")


def wait_until_idle(pid: int, limit_seconds: float = 60.0) -> None:
    """Until the server spends under 2 % of a CPU (the app loads its photo models after its first request)."""
    deadline = time.monotonic() + limit_seconds
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per run (default 2000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per run (default 30)")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64], help="client counts (default 8 64)")
    parser.add_argument("--modes", nargs="+", choices=["plain", "aes"], default=["plain", "aes"])
    parser.add_argument("--warmup", type=int, default=200, help="untimed plain requests first (default 200)")
    parser.add_argument("--app", default="app:create_app", help="the app factory (default app:create_app)")
    parser.add_argument("--baseline", default="bench.bare_app:create_app",
                        help="the baseline's factory, served beside the app by the same server ('' for none)")
    parser.add_argument("--server", choices=["gunicorn", "waitress"], default="gunicorn",
                        help="gunicorn (sync workers, as `flask serve --prod`) or waitress (16 threads)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--database-url", default="", help="a scratch database (default: a new SQLite file)")
    parser.add_argument("--redis-url", default="", help="Redis for the app (default: none)")
    parser.add_argument("--wechat-mode", choices=["production", "compatible"], default="production",
                        help="production (default): plain requests under compatible mode, AES under safe mode, as "
                             "deployed; compatible: both under compatible mode (AES requests pay the replay guard too)")
    parser.add_argument("--paced-share", type=float, nargs="*", default=[0.1, 0.2, 0.3],
                        help="paced runs at these shares of the bare app's throughput (default 0.1 0.2 0.3: the "
                             "last is the throughput target; none: no paced runs)")
    parser.add_argument("--client", choices=["lean", "requests"], default="lean",
                        help="the timed clients' HTTP: lean (http.client, default) or requests (as the bench sent "
                             "until 1 Dec 2026: 1.5-2 ms of client CPU a request, which bound the bare app)")
    parser.add_argument("--paced-seconds", type=float, default=PACED_SECONDS,
                        help=f"a paced run sends at least this long at its rate (default {PACED_SECONDS})")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of runs, bare and app back to back, order flipped each round (default 3)")
    parser.add_argument("--text", default=TEXT, help=f"the timed text message (default {TEXT!r})")
    parser.add_argument(
        "--processes", type=int, default=max(2, os.cpu_count() or 2), help="client processes (default: CPU count)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    targets = [("bare", args.baseline), ("app", args.app)] if args.baseline else [("app", args.app)]
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp, FakeWeChatAPI(APPID, SECRET) as fake:
        workdir = args.workdir = Path(tmp)  # also where the SQLite runs' durability probe writes
        ports = {label: free_port() for label, _ in targets}
        base_urls = {label: f"http://{HOST}:{port}" for label, port in ports.items()}
        configs = {(label, mode): write_config(workdir, fake.base_url, args, ports[label], wechat_mode_for(mode, args),
                                              label)
                   for label, _ in targets for mode in args.modes}
        upgrade_database(args.app, {**os.environ, "COLLECTOR_CONFIG": str(configs[("app", args.modes[0])])})
        print(f"webhook {base_urls['app']}/wechat  server={describe_server(args)}  client processes<={args.processes}  "
              f"cpus={os.cpu_count()}  text={args.text!r}  database={'SQLite' if not args.database_url else args.database_url.split('@')[-1]}"
              f"{'  redis' if args.redis_url else ''}  rounds={args.rounds}  client={args.client}  [wechat] mode: "
              + ", ".join(f"{mode} requests {wechat_mode_for(mode, args)}" for mode in args.modes))
        if args.database_url:
            report_autovacuum(args.database_url)
        print(f"{'target':<8}{'mode':<6}{'clients':>8}{'requests':>10}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}"
              f"{'cpu ms':>10}{'db+redis':>10}{'client':>10}{'errors':>8}{'steal%':>8}{'idle%':>7}{'round':>7}")
        failures, rates = 0, {}
        for mode in args.modes:
            with contextlib.ExitStack() as servers:
                pids = {}
                for label, factory in targets:
                    log_path = workdir / f"server-{label}-{mode}.log"
                    env = {**os.environ, "COLLECTOR_CONFIG": str(configs[(label, mode)])}
                    server = start_server(factory, ports[label], env, log_path, args.server)
                    servers.callback(stop_server, server)
                    wait_until_answering(server, base_urls[label], log_path)
                    pids[label] = server.pid
                failures += run_mode(mode, base_urls, args, pids, rates)
            if failures:
                for label, _ in targets:
                    log_path = workdir / f"server-{label}-{mode}.log"
                    print(f"--- {label} server log (tail) ---\n"
                          f"{log_path.read_text(encoding='utf-8', errors='replace')[-3000:]}")
                break
        print_ratios(rates)
    return 1 if failures else 0


def describe_server(args: argparse.Namespace) -> str:
    return f"gunicorn {args.workers} sync workers" if args.server == "gunicorn" else f"waitress threads={SERVER_THREADS}"


def run_mode(mode: str, base_urls: dict, args: argparse.Namespace, pids: dict, rates: dict) -> int:
    """Both servers are up side by side; each round runs every client count on each, back to back, the
    order flipped every round (bare, app; app, bare; ...). The host's speed drifts (2x within a quarter of
    an hour on 1 Dec 2026): a ratio taken from two adjacent runs sees the same machine, and the median of
    the rounds' ratios is not moved by one slow stretch."""
    failures = 0
    for label, base_url in base_urls.items():
        failures += warm_up(label, mode, base_url, args, pids[label])
    if failures:
        return failures
    labels = list(base_urls)
    for round_number in range(1, args.rounds + 1):
        order = round_order(labels, round_number)
        for clients in args.clients:
            for label in order:
                spec = RunSpec(mode, clients, args.requests, args.seconds, args.text, client=args.client)
                measured = measured_run(base_urls[label], spec, args.processes, pids[label])
                print(table_row(label, spec, measured) + f"{round_number:>7}", flush=True)
                rates.setdefault((label, mode, clients), []).append((throughput(measured.result), measured.cpu_ms))
                failures += report_problems(measured.result)
    if failures:
        return failures
    return run_paced(mode, base_urls, args, pids, rates)


def warm_up(label: str, mode: str, base_url: str, args: argparse.Namespace, pid: int) -> int:
    if not args.warmup:
        return 0
    spec = RunSpec(mode, min(args.clients), args.warmup, args.seconds, args.text, client=args.client)
    result = run(base_url, spec, args.processes)
    failures = report_problems(result, f"{label} warm-up ")
    if args.database_url:
        vacuum(args.database_url)
    wait_until_idle(pid)
    return failures


def run_paced(mode: str, base_urls: dict, args: argparse.Namespace, pids: dict, rates: dict) -> int:
    """Paced runs at the largest client count, one per --paced-share of the bare app's median closed-loop
    throughput, on each server in turn, every round (the order flipped as in run_mode)."""
    clients = max(args.clients)
    bare = rates.get(("bare", mode, clients))
    if not bare:
        return 0
    bare_rate = median(rate for rate, _ in bare)
    failures = 0
    labels = list(base_urls)
    for round_number in range(1, args.rounds + 1):
        order = round_order(labels, round_number)
        for share in args.paced_share:
            for label in order:
                rate = share * bare_rate
                spec = RunSpec(mode, clients, max(args.requests, int(rate * args.paced_seconds)), args.seconds,
                               args.text, rate=rate, client=args.client)
                with DurabilityProbe(args.database_url, args.workdir) as probe:
                    measured = measured_run(base_urls[label], spec, args.processes, pids[label])
                result = measured.result
                print(table_row(label, spec, measured) + f"{round_number:>7}   offered {rate:.0f}/s ({share:g}x bare)"
                      f"   {probe.summary()}", flush=True)
                latencies = sorted(result.latencies_ms)
                rates.setdefault((label, mode, ("paced", share)), []).append(
                    (rate, percentile(latencies, 0.50), percentile(latencies, 0.99), probe.p99()))
                failures += report_problems(result)
    return failures


def round_order(labels: list[str], round_number: int) -> list[str]:
    """The servers in the order this round runs them: as given in odd rounds, reversed in even ones."""
    return labels if round_number % 2 else labels[::-1]


def spread_of(values: list[float], digits: int) -> str:
    """"1.23" for one value, "1.20-1.31" for several: every round's figure is in the range."""
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if len(values) == 1 else f"{low:.{digits}f}-{high:.{digits}f}"


def print_ratios(rates: dict) -> None:
    """The app against the bare baseline: each round's throughput share (from the two adjacent runs) and
    the app's CPU per request, as the median of the rounds and their range; then the paced runs' latency."""
    pairs = {key[1:]: (shares_by_round(value, rates.get(("bare",) + key[1:])), value) for key, value in rates.items()
             if key[0] == "app" and not _paced(key)}
    pairs = {key: pair for key, pair in pairs.items() if pair[0]}
    if not pairs:
        return
    print(f"{'app/bare':<10}{'clients':>8}{'throughput':>12}{'rounds':>16}{'cpu ms app':>12}{'rounds':>14}"
          f"{'cpu ms bare':>12}   (medians of the rounds, each round's share from its two adjacent runs)")
    for (mode, clients), (shares, app) in pairs.items():
        app_cpu = [cpu for _, cpu in app]
        bare_cpu = [cpu for _, cpu in rates[("bare", mode, clients)]]
        print(f"{mode:<10}{clients:>8}{median(shares):>11.3f}x{spread_of(shares, 3):>16}{median(app_cpu):>12.2f}"
              f"{spread_of(app_cpu, 2):>14}{median(bare_cpu):>12.2f}")
    paced = {(key[1], key[2][1]): (value, rates.get(("bare",) + key[1:])) for key, value in rates.items()
             if key[0] == "app" and _paced(key)}
    if paced:
        print(f"{'paced':<8}{'share':>6}{'req/s':>8}{'app p50':>10}{'app p99':>10}{'rounds':>16}{'bare p99':>10}"
              f"{'lone write p99':>16}   (ms, medians of the rounds; latency from when due; a lone durable "
              "write's in the app's runs, see DurabilityProbe)")
    for (mode, share), (app, bare) in paced.items():
        p99s = [p99 for _, _, p99, _ in app]
        bare_p99 = median(p99 for _, _, p99, _ in bare) if bare else math.nan
        print(f"{mode:<8}{share:>5g}x{app[0][0]:>8.0f}{median(p50 for _, p50, _, _ in app):>10.1f}{median(p99s):>10.1f}"
              f"{spread_of(p99s, 1):>16}{bare_p99:>10.1f}{median(write for _, _, _, write in app):>16.1f}")
    print_targets(pairs, paced)


def shares_by_round(app: list, bare: list | None) -> list[float]:
    """Round r's throughput share: the app's run over the bare app's run of the same round."""
    return [app_run[0] / bare_run[0] for app_run, bare_run in zip(app, bare or [])]


# Issue 15's targets for a text step, against the bare app in the same run.
TARGET_SHARE, TARGET_CPU_MS, TARGET_P99_MS = 0.3, 2.0, 50.0


def print_targets(pairs: dict, paced: dict) -> None:
    """One line per mode: each target met or not, with the figure that decides it, a median of the rounds.
    The p99 is the paced runs' at the target share (a closed loop's p99 is its clients' queue, see the
    module docstring)."""
    for mode in dict.fromkeys(mode for mode, _ in pairs):
        shares = [median(shares) for (m, _), (shares, _) in pairs.items() if m == mode]
        cpus = [median(cpu for _, cpu in app) for (m, _), (_, app) in pairs.items() if m == mode]
        p99s = {share: median(p99 for _, _, p99, _ in app) for (m, share), (app, _) in paced.items() if m == mode}
        under = [share for share, p99 in sorted(p99s.items()) if p99 < TARGET_P99_MS]
        at_target = p99s.get(TARGET_SHARE)
        verdicts = [_verdict(f"throughput >= {TARGET_SHARE}x", min(shares) >= TARGET_SHARE, f"min {min(shares):.3f}x"),
                    _verdict(f"cpu <= {TARGET_CPU_MS:g} ms", max(cpus) <= TARGET_CPU_MS, f"max {max(cpus):.3f}")]
        if at_target is not None:
            app = paced[(mode, TARGET_SHARE)][0]
            write_p99 = median(write for _, _, _, write in app)
            verdicts.append(_verdict(f"paced p99 < {TARGET_P99_MS:g} ms at {TARGET_SHARE}x", at_target < TARGET_P99_MS,
                                     (f"{at_target:.1f} ms; under {TARGET_P99_MS:g} ms up to "
                                      f"{max(under):g}x" if under else f"{at_target:.1f} ms")
                                     + f"; a lone durable write's p99 meanwhile {write_p99:.1f} ms"))
        print(f"targets {mode:<6}" + "   ".join(verdicts))


def _verdict(target: str, met: bool, figure: str) -> str:
    return f"{target}: {'met' if met else 'NOT met'} ({figure})"


def _paced(key: tuple) -> bool:
    return isinstance(key[2], tuple)


def report_problems(result: WorkerResult, label: str = "") -> int:
    """Print what failed in a run; the number of failed requests."""
    if result.setup_errors:
        print(f"    {label}{result.setup_errors} untimed subscribe(s) failed")
    for sample in result.error_samples:
        print(f"    {label}error: {sample}")
    return result.errors + result.setup_errors


if __name__ == "__main__":
    sys.exit(main())
