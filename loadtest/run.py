"""One run of the cohort against a fresh cluster: set up, walk every candidate, optionally kill a server
mid-run, let notifications settle, check the database."""
from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from loadtest import cohort
from loadtest.cluster import APPID, AES_KEY, ROOT, SECRET, TOKEN, Cluster, ClusterError, Profile
from loadtest.journey import MESSAGES_PER_WALK, Progress, is_payment_notice, walk
from loadtest.report import Fault, RunResult
from loadtest.verify import check_database
from loadtest.wechat import Backends, FakeWeChat, Inbox, Phone

SHARED_PHOTOS = ROOT.parent / "shared" / "photos"
PHOTOS_USED = 8
CUSTOM_WAIT_SECONDS = 20.0  # how long a message without a passive reply waits for a customer-service one
# After the last walk: payment notifications still on their way. A process killed between the payment's
# commit and queueing its delivery leaves it to the outbox sweep, which runs once a minute.
SETTLE_SECONDS = 75.0


@dataclass(frozen=True)
class Options:
    candidates: int = 300
    concurrency: int = 48
    kill_at: float = 0.4  # kill when this share of the messages is done
    restart_after: float = 3.0  # seconds from the kill to the restart
    custom_wait: float = CUSTOM_WAIT_SECONDS
    photos: Path = SHARED_PHOTOS
    keep: bool = False  # keep the run's folder (configs, logs, database)
    time_limit: float = 900.0  # seconds of walking; past it every walk stops and the run fails


def run(profile: Profile, label: str, kill: bool, options) -> RunResult:
    workdir = Path(tempfile.mkdtemp(prefix="loadtest-"))
    try:
        with FakeWeChat(APPID, SECRET) as fake, Inbox(fake) as inbox:
            cluster = Cluster(workdir, profile, fake.base_url)
            try:
                return drive(cluster, fake, inbox, label, kill, options)
            finally:
                cluster.stop()
    finally:
        if options.keep:
            print(f"   kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def drive(cluster: Cluster, fake: FakeWeChat, inbox: Inbox, label: str, kill: bool, options) -> RunResult:
    cluster.configure()
    cluster.prepare_database()
    people = cohort.graduates(options.candidates, tag=cluster.queue_name.split("-")[-1])
    imported = cluster.flask("roster", "import", str(cohort.write_roster(cluster.workdir / "roster.csv", people)))
    if f"新增 {len(people)}" not in imported:
        raise ClusterError(f"the roster import did not add {len(people)} graduates:\n{imported}")
    photos, note = choose_photos(cluster, options.photos)
    cluster.start()
    backends = Backends([server.url for server in cluster.servers])
    progress = Progress(len(people) * MESSAGES_PER_WALK, options.time_limit)
    photo_cycle = itertools.cycle(photos)
    photo_lock = threading.Lock()

    def add_photo() -> str:
        with photo_lock:
            data = next(photo_cycle)
        return fake.add_media(data, content_type="image/jpeg", filename="photo.jpg")

    def one(index_and_person):
        index, person = index_and_person
        phone = Phone(person.openid, index % len(cluster.servers), backends, inbox, TOKEN, APPID, AES_KEY,
                      options.custom_wait)
        return walk(person, phone, add_photo if photos else None, progress)

    started = time.monotonic()
    chaos = Chaos(cluster, backends, progress, options.kill_at, options.restart_after, started) if kill else None
    pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="candidate")
    try:
        walks = list(pool.map(one, enumerate(people)))
    finally:
        progress.stop.set()  # on an interrupt: running walks end at their next step
        pool.shutdown(wait=True, cancel_futures=True)
        if chaos:
            chaos.finish()
    seconds = time.monotonic() - started
    settle(inbox, walks)
    cluster.stop()
    result = RunResult(label, len(people), options.concurrency, len(cluster.servers), seconds, walks, inbox,
                       fault=chaos.fault if chaos else None,
                       server_tracebacks=sum(p.log.read_text(errors="replace").count("Traceback")
                                             for p in cluster.processes() if p.log.exists()))
    if note:
        result.notes.append(note)
    if fake.broken_connections:
        result.notes.append(f"the fake WeChat API saw {fake.broken_connections} connection(s) broken off "
                            f"(a killed server's downloads and sends)")
    result.database = check_database(cluster.database_url, walks)
    return result


def choose_photos(cluster: Cluster, folder: Path) -> tuple[list[bytes], str | None]:
    """Labelled compliant photos the checker passes under the run's config."""
    candidates = cohort.labelled_compliant_photos(folder)
    if not candidates:
        return [], (f"photo and payment steps skipped: no labelled photos at {folder} (see its README); a synthetic "
                    f"image has no face for the checker to find")
    step = max(1, len(candidates) // PHOTOS_USED)
    chosen = candidates[::step][:PHOTOS_USED]
    lines = cluster.flask("photo", "check", "--json", *map(str, chosen)).splitlines()
    passing = [json.loads(line)["file"] for line in lines if line.startswith("{")
               and json.loads(line)["verdict"] == "pass"]
    if not passing:
        raise ClusterError(f"none of {len(chosen)} labelled compliant photos passes the checker")
    note = None if len(passing) == len(chosen) else \
        f"{len(chosen) - len(passing)} of {len(chosen)} labelled compliant photos fail the checker; not used"
    return [Path(path).read_bytes() for path in passing], note


def settle(inbox: Inbox, walks) -> None:
    """Wait (bounded) for each paying candidate's payment notification."""
    deadline = time.monotonic() + SETTLE_SECONDS
    for trail in walks:
        if trail.paid:
            inbox.wait(trail.graduate.openid, 0, max(0.0, deadline - time.monotonic()), is_payment_notice)


class Chaos:
    """Kills one server process with SIGKILL once a share of the messages is done, while it is working
    on a request, and starts it again a few seconds later, as a supervisor would."""

    def __init__(self, cluster: Cluster, backends: Backends, progress: Progress, at: float, restart_after: float,
                 started: float):
        self.cluster, self.backends, self.progress = cluster, backends, progress
        self.at, self.restart_after, self.started = at, restart_after, started
        self.target = len(cluster.servers) - 1
        self.fault: Fault | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.progress.fraction < self.at:
            if self._done.wait(0.05):
                return
        busy_deadline = time.monotonic() + 10
        while self.backends.in_flight(self.target) == 0 and time.monotonic() < busy_deadline:
            time.sleep(0.005)
        server = self.cluster.servers[self.target]
        in_flight = self.backends.in_flight(self.target)
        server.kill()
        killed = time.monotonic()
        self.fault = Fault(server.name, killed - self.started, in_flight)
        time.sleep(self.restart_after)
        server.start()
        try:
            self.cluster.wait_until_healthy(server)
            self.fault.back_after = time.monotonic() - killed
        except ClusterError as exc:
            print(f"   restart failed: {exc}", flush=True)

    def finish(self) -> None:
        self._done.set()
        self._thread.join(timeout=120)
