"""The system under test as it runs in production: `flask serve` processes on free ports of 127.0.0.1,
each with its own config file, and the huey consumer `flask jobs work`, all on one database."""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import requests
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TOKEN = "loadtest-token"
APPID = "wx_loadtest_000001"
SECRET = "loadtest-secret"
AES_KEY = "bG9hZHRlc3Qgb2YgdGhlIHBob3RvIGNvbGxlY3RvciEh"[:43]
STARTUP_SECONDS = 60
SMS_ACCOUNT = {"secret_id": "AKIDloadtest", "secret_key": "loadtest-sms-secret", "sdk_app_id": "1400000008",
               "sign_name": "北京自考"}
# The outbox's SMS templates ([sms] template_<kind>) and their parameter counts at the fake provider.
SMS_TEMPLATES = {"payment_done": "T_PAID", "approved": "T_APPROVED", "rejected": "T_REJECTED",
                 "review_delay": "T_DELAY"}
SMS_PARAMETERS = {"T_PAID": 2, "T_APPROVED": 1, "T_REJECTED": 2, "T_DELAY": 1}


class ClusterError(Exception):
    """The system under test could not be set up; the message says why."""


@dataclass(frozen=True)
class Profile:
    name: str  # "sqlite", "postgres" or "cohort" (the production profile)
    servers: int  # `flask serve` processes, or gunicorn workers when `gunicorn`
    database_url: str = ""  # empty: an SQLite file in the run's folder
    redis_url: str = ""
    gunicorn: bool = False  # one `flask serve --prod` (gunicorn, `servers` sync workers) instead of several
    consumers: int = 1  # `flask jobs work` processes
    sms_endpoint: str = ""  # the fake Tencent Cloud SMS (host:port); empty: the console provider

    @property
    def processes(self) -> int:
        """Server processes the load balancer spreads candidates over."""
        return 1 if self.gunicorn else self.servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def require_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise ClusterError(f"{what} must be on 127.0.0.1, not {host!r}: the load test touches nothing else")


@dataclass
class Process:
    """One child process, restartable with the same command and config (as a supervisor would)."""
    name: str
    command: list[str]
    config: Path
    log: Path
    port: int | None = None
    popen: subprocess.Popen | None = None
    starts: int = 0
    cwd: Path = ROOT  # the code it runs (a snapshot of the committed tree, for the long runs)

    def start(self) -> None:
        env = dict(os.environ, COLLECTOR_CONFIG=str(self.config), PYTHONUNBUFFERED="1")
        with self.log.open("ab") as log:
            log.write(f"\n=== loadtest: start #{self.starts + 1} of {self.name} ===\n".encode())
            self.popen = subprocess.Popen(self.command, cwd=self.cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no atexit, no cleanup, sockets closed by the kernel."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Cluster:
    workdir: Path
    profile: Profile
    api_base_url: str
    queue_name: str = field(default_factory=lambda: f"loadtest-{secrets.token_hex(4)}")
    servers: list[Process] = field(default_factory=list)
    consumers: list[Process] = field(default_factory=list)
    code: Path = ROOT  # where every process's code is: this tree, or snapshot_code()'s copy

    @property
    def consumer(self) -> Process | None:
        return self.consumers[0] if self.consumers else None

    @property
    def database_url(self) -> str:
        return self.profile.database_url or f"sqlite:///{self.workdir / 'collector.db'}"

    # --- set-up --------------------------------------------------------------------------------

    def configure(self) -> None:
        ports = [free_port() for _ in range(self.profile.processes)]
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        serve = ["serve", "--prod"] if self.profile.gunicorn else ["serve"]
        for index, port in enumerate(ports):
            name = "web" if self.profile.gunicorn else f"server-{index}"
            config = self._write_config(name, port, public_port=ports[0])
            self.servers.append(Process(name, flask + serve, config, self.workdir / f"{name}.log", port=port,
                                        cwd=self.code))
        for index in range(self.profile.consumers):
            name = "consumer" if self.profile.consumers == 1 else f"consumer-{index}"
            config = self._write_config(name, free_port(), public_port=ports[0])
            self.consumers.append(Process(name, flask + ["jobs", "work"], config, self.workdir / f"{name}.log",
                                          cwd=self.code))

    def _write_config(self, name: str, port: int, public_port: int) -> Path:
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        top = {"database_url": self.database_url, "data_dir": str(self.workdir / "data"),
               "secret_key": _run_secret(self.workdir), "log_level": "INFO", "redis_url": self.profile.redis_url}
        sections = {
            "wechat": {"token": TOKEN, "appid": APPID, "secret": SECRET, "encoding_aes_key": AES_KEY,
                       "api_base_url": self.api_base_url},
            "payment": {"gateway": "sandbox", "public_base_url": f"http://{HOST}:{public_port}"},
            # A slow photo check whose process died is redone after a minute, not five: the run is short.
            "jobs": {"immediate": False, "queue_name": self.queue_name, "sweep_every_minutes": 1,
                     "lost_work_after_minutes": 1},
            "server": {"host": HOST, "port": port},
        }
        if self.profile.gunicorn:
            sections["server"].update(engine="gunicorn", workers=self.profile.servers, worker_class="sync")
        if self.profile.sms_endpoint:
            sections["sms"] = dict(SMS_ACCOUNT, provider="tencent", endpoint=self.profile.sms_endpoint, scheme="http",
                                   **{f"template_{kind}": template for kind, template in SMS_TEMPLATES.items()})
        if _knows_setting("notifications", "lease_seconds"):
            # A delivery whose sender was killed is taken over after 30 s, not two minutes: the run is short,
            # and each of a send's HTTP calls gives up after 5 s, so 30 s does not cut a live attempt short.
            sections["notifications"] = {"lease_seconds": 30}
        if _knows_setting("collection", "max_roster_lookups_per_minute"):
            # The whole cohort is legitimate and looks itself up within a minute or two: the global limit
            # on roster look-ups (default 120 a minute) would hold most of it back. It has its own tests.
            sections["collection"] = {"max_roster_lookups_per_minute": 0}
        if _knows_section("privacy"):  # photos and personal data are stored encrypted under these keys
            sections["privacy"] = {"keys": {"k1": _run_secret(self.workdir, "photo_key", _key)}, "active_key": "k1",
                                   "lookup_key": _run_secret(self.workdir, "lookup_key", _key)}
        lines = [f"{key} = {_toml(value)}" for key, value in top.items()]
        for section, values in sections.items():
            lines += ["", f"[{section}]"] + [f"{key} = {_toml(value)}" for key, value in values.items()]
        path = folder / "config.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def flask(self, *args: str, timeout: float = 300) -> str:
        """A staff command against the run's database; its output. ClusterError if it fails."""
        env = dict(os.environ, COLLECTOR_CONFIG=str(self.consumer.config))
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=self.code, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ClusterError(f"`flask {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def prepare_database(self) -> None:
        """A fresh schema: the PostgreSQL database is emptied (it must be a scratch one), then migrated."""
        if self.profile.database_url:
            require_loopback(self.profile.database_url, "the PostgreSQL database")
            engine = create_engine(self.profile.database_url)
            try:
                with engine.begin() as connection:
                    connection.execute(text("DROP SCHEMA public CASCADE"))
                    connection.execute(text("CREATE SCHEMA public"))
            finally:
                engine.dispose()
        self.flask("db", "upgrade")

    # --- processes -----------------------------------------------------------------------------

    def start(self) -> None:
        for consumer in self.consumers:
            consumer.start()
        for server in self.servers:
            server.start()
        for server in self.servers:
            self.wait_until_healthy(server)

    def wait_until_healthy(self, server: Process, seconds: float = STARTUP_SECONDS) -> float:
        """Seconds until /healthz answers 200; ClusterError if the process dies or stalls."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if not server.alive():
                raise ClusterError(f"{server.name} exited with {server.popen.returncode}:\n{server.tail()}")
            try:
                if requests.get(server.url + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise ClusterError(f"{server.name} did not answer /healthz within {seconds:.0f}s:\n{server.tail()}")

    def stop(self) -> None:
        for process in self.processes():
            process.stop()

    def processes(self) -> list[Process]:
        return [*self.servers, *self.consumers]

    def terminate_connections(self) -> int:
        """`pg_terminate_backend` on every connection to the run's database but this one's own (the
        app's web workers, consumers and reviewer), as a failover or an administrator would."""
        return terminate_connections(self.profile.database_url)


def terminate_connections(database_url: str, pid: int | None = None) -> int:
    """`pg_terminate_backend` on every other connection to the database at `database_url`, or only on
    the backend `pid`; how many were terminated."""
    with admin_connection(database_url) as connection:
        return len(connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (CAST(:pid AS integer) IS NULL OR pid = :pid)"), {"pid": pid}).all())


@contextlib.contextmanager
def admin_connection(database_url: str, database: str | None = None) -> Iterator[Connection]:
    """An AUTOCOMMIT connection to `database_url`'s server (VACUUM, CREATE and ALTER DATABASE refuse a
    transaction), to `database` on it if given (the maintenance database "postgres", for statements about
    the database in the URL)."""
    url = make_url(database_url)
    engine = create_engine(url.set(database=database) if database else url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def snapshot_code(workdir: Path) -> tuple[Path, str]:
    """The committed tree (`git archive HEAD`) in the run's folder, and its commit. A long run on a shared
    checkout would otherwise restart a killed process on whatever code is on disk by then."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    target = workdir / "code"
    target.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, commit


def child_pids(pid: int) -> list[int]:
    """The live children of a process (gunicorn's workers under its master), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, …
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


def _run_secret(workdir: Path, name: str = "secret_key", make=lambda: secrets.token_urlsafe(32)) -> str:
    """One value per run, shared by every process's config."""
    path = workdir / name
    if not path.exists():
        path.write_text(make())
    return path.read_text()


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _knows_section(name: str) -> bool:
    """Whether this tree's settings have a [name] section (the harness runs against older trees too)."""
    import settings

    return any(item.name == name for item in dataclasses.fields(settings.Settings))


def _knows_setting(section: str, name: str) -> bool:
    import settings

    for item in dataclasses.fields(settings.Settings):
        if item.name == section:
            section_type = item.type if isinstance(item.type, type) else getattr(settings, str(item.type), None)
            return section_type is not None and any(f.name == name for f in dataclasses.fields(section_type))
    return False


def _toml(value) -> str:
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)  # strings, numbers and booleans are written alike
