"""One run of the cohort against a fresh cluster: set up, walk every candidate, optionally kill a server
mid-run, let notifications settle, check the database."""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from loadtest import cohort
from loadtest.cluster import (APPID, AES_KEY, ROOT, SECRET, SMS_ACCOUNT, SMS_PARAMETERS, TOKEN, Cluster, ClusterError,
                              Process, Profile, child_pids, snapshot_code)
from loadtest.journey import MESSAGES_PER_WALK, Progress, is_approval, is_payment_notice, walk
from loadtest.report import Fault, RunResult
from loadtest.verify import check_database, check_deliveries, unrecorded_window
from loadtest.wechat import Backends, FakeWeChat, Inbox, Phone
from standins.sms import FakeTencentSms

SHARED_PHOTOS = ROOT.parent / "shared" / "photos"
PHOTOS_USED = 8
CUSTOM_WAIT_SECONDS = 20.0  # how long a message without a passive reply waits for a customer-service one
# After the last walk: payment notifications still on their way. A process killed between the payment's
# commit and queueing its delivery leaves it to the outbox sweep, which runs once a minute.
SETTLE_SECONDS = 75.0
# Then the outbox itself, whatever kind its rows are: a row whose sender was killed mid-attempt stays
# "sending" for the run's lease (cluster.py sets 30 s), then waits for the sweep (once a minute).
OUTBOX_SETTLE_SECONDS = 120.0
# The production profile also waits for the reviewer's last verdicts and every notification's delivery.
REVIEW_SETTLE_SECONDS = 240.0


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
    # The production profile: staff review during the run (every reject_every-th graduate's first photo
    # is rejected, every cli_every-th approval goes through `flask review approve`), SMS through the
    # fake Tencent Cloud SMS, and its faults at these shares of the messages.
    review: bool = False
    reject_every: int = 10
    cli_every: int = 250
    fake_sms: bool = False
    fault_at: tuple[float, float, float] = (0.3, 0.5, 0.7)  # web worker, consumer, database connections
    snapshot: bool = False  # run the committed tree (git archive HEAD) instead of the working tree


def run(profile: Profile, label: str, kill: bool, options) -> RunResult:
    workdir = Path(tempfile.mkdtemp(prefix="loadtest-"))
    try:
        with ExitStack() as stack:
            fake = stack.enter_context(FakeWeChat(APPID, SECRET))
            inbox = stack.enter_context(Inbox(fake))
            sms = None
            if options.fake_sms:
                sms = stack.enter_context(FakeTencentSms(*SMS_ACCOUNT.values(), SMS_PARAMETERS))
                profile = dataclasses.replace(profile, sms_endpoint=sms.endpoint)
            cluster = Cluster(workdir, profile, fake.base_url)
            if options.snapshot:
                cluster.code, commit = snapshot_code(workdir)
                print(f"   code: the committed tree at {commit} (git archive HEAD)", flush=True)
            try:
                return drive(cluster, fake, inbox, label, kill, options, sms)
            finally:
                cluster.stop()
    finally:
        if options.keep:
            print(f"   kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def drive(cluster: Cluster, fake: FakeWeChat, inbox: Inbox, label: str, kill: bool, options,
          sms=None) -> RunResult:
    cluster.configure()
    cluster.prepare_database()
    people = cohort.graduates(options.candidates, tag=cluster.queue_name.split("-")[-1])
    imported = cluster.flask("roster", "import", str(cohort.write_roster(cluster.workdir / "roster.csv", people)))
    if f"新增 {len(people)}" not in imported:
        raise ClusterError(f"the roster import did not add {len(people)} graduates:\n{imported}")
    photos, note = choose_photos(cluster, options.photos)
    cluster.start()
    reviewer = start_reviewer(cluster, options) if options.review else None
    try:
        return _drive(cluster, fake, inbox, label, kill, options, sms, people, photos, note, reviewer)
    finally:
        if reviewer is not None:
            reviewer.stop()


def _drive(cluster: Cluster, fake: FakeWeChat, inbox: Inbox, label: str, kill: bool, options, sms, people, photos,
           note, reviewer) -> RunResult:
    reject_every = options.reject_every if options.review else 0
    load_before = os.getloadavg()[0]
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
        return walk(person, phone, add_photo if photos else None, progress, reject_every)

    started = time.monotonic()
    chaos = None
    if kill:
        chaos = (ProductionChaos(cluster, backends, progress, options.fault_at, options.restart_after, started)
                 if cluster.profile.gunicorn else
                 Chaos(cluster, backends, progress, options.kill_at, options.restart_after, started))
    pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="candidate")
    try:
        walks = list(pool.map(one, enumerate(people)))
    finally:
        progress.stop.set()  # on an interrupt: running walks end at their next step
        pool.shutdown(wait=True, cancel_futures=True)
        if chaos:
            chaos.finish()
    seconds = time.monotonic() - started
    load_after = os.getloadavg()[0]
    settle(inbox, walks)
    if reviewer is not None:
        settle_reviews(cluster, inbox, walks)
        reviewer.stop()  # (SIGTERM, or SIGKILL after 15 s)
    else:
        wait_for_outbox(cluster.database_url, time.monotonic() + OUTBOX_SETTLE_SECONDS)
    cluster.stop()
    result = RunResult(label, len(people), options.concurrency, cluster.profile.servers, seconds, walks, inbox,
                       fault=chaos.fault if chaos else None,
                       server_tracebacks=sum(p.log.read_text(errors="replace").count("Traceback")
                                             for p in cluster.processes() if p.log.exists()),
                       events=getattr(chaos, "events", []), load=f"{load_before:.1f} at the start, "
                                                                   f"{load_after:.1f} at the end of the walks")
    if reviewer is not None:
        result.reviews = reviewer_counts(reviewer)
        if reviewer.popen.returncode not in (0, -signal.SIGTERM):
            result.notes.append(f"the reviewer exited with {reviewer.popen.returncode}: {reviewer.tail(600)}")
    if note:
        result.notes.append(note)
    if fake.broken_connections:
        result.notes.append(f"the fake WeChat API saw {fake.broken_connections} connection(s) broken off "
                            f"(a killed server's downloads and sends)")
    result.database = check_database(cluster.database_url, walks, options.review, reject_every)
    if options.review or sms is not None:
        sms_sent = sms.sent if sms is not None else None
        result.notified = check_deliveries(walks, inbox, sms_sent, options.review, reject_every)
        result.unrecorded = unrecorded_window(cluster.database_url, walks, fake.accepted, sms_sent, result.seconds,
                                              len(cluster.consumers))
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


def start_reviewer(cluster: Cluster, options) -> Process:
    """A member of staff reviewing through the staff functions and CLI, as its own process."""
    command = [sys.executable, "-m", "loadtest.reviewer", "--reject-every", str(options.reject_every),
               "--cli-every", str(options.cli_every)]
    reviewer = Process("reviewer", command, cluster.consumer.config, cluster.workdir / "reviewer.log",
                       cwd=cluster.code)
    reviewer.start()
    return reviewer


def reviewer_counts(reviewer: Process) -> Counter:
    counts = Counter()
    for line in reviewer.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            kind = event["kind"]
            counts[f"{event['verdict']} ({event['via']})" if kind == "decided" else f"{kind} at {event.get('step', '')}"
                   if kind == "error" else kind] += 1
    return counts


def settle_reviews(cluster: Cluster, inbox: Inbox, walks) -> None:
    """Wait (bounded) for every paying candidate's approval message and for the outbox to be empty."""
    deadline = time.monotonic() + REVIEW_SETTLE_SECONDS
    for trail in walks:
        if trail.paid:
            inbox.wait(trail.graduate.openid, 0, max(0.0, deadline - time.monotonic()), is_approval)
    wait_for_outbox(cluster.database_url, deadline)


def wait_for_outbox(database_url: str, deadline: float) -> None:
    """Until every notification is sent, or the (monotonic) deadline; the database check counts what is left."""
    engine = create_engine(database_url)
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                if not connection.execute(text("SELECT count(*) FROM notifications WHERE status <> 'sent'")).scalar():
                    return
            time.sleep(1)
    finally:
        engine.dispose()


class ProductionChaos:
    """The production profile's faults, one after the other at shares of the messages done: a gunicorn
    worker killed with SIGKILL (its master starts another), a huey consumer killed with SIGKILL and
    started again a few seconds later (as systemd would), and every database connection of the app
    terminated with pg_terminate_backend."""

    def __init__(self, cluster: Cluster, backends: Backends, progress: Progress, at: tuple[float, float, float],
                 restart_after: float, started: float):
        self.cluster, self.backends, self.progress = cluster, backends, progress
        self.at, self.restart_after, self.started = at, restart_after, started
        self.fault: Fault | None = None  # (the issue-8 single kill; these faults are in events)
        self.events: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def _wait_for(self, share: float) -> bool:
        while self.progress.fraction < share:
            if self._done.wait(0.05):
                return False
        return True

    def _run(self) -> None:
        faults = (self._kill_web_worker, self._kill_consumer, self._terminate_connections)
        for share, fault in zip(self.at, faults):
            if not self._wait_for(share):
                return
            try:
                fault()
            except Exception as exc:  # reported, and the run goes on
                self.events.append(f"{fault.__name__.strip('_')} failed: {exc!r}")

    def _now(self) -> float:
        return time.monotonic() - self.started

    def _kill_web_worker(self) -> None:
        web = self.cluster.servers[0]
        workers = child_pids(web.popen.pid)
        if not workers:
            raise ClusterError("gunicorn has no workers to kill")
        victim = random.choice(workers)
        in_flight = self.backends.in_flight(0)
        at = self._now()
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        back = None
        while time.monotonic() - killed < 60:
            alive = [pid for pid in child_pids(web.popen.pid) if pid != victim]
            if len(alive) >= len(workers):
                back = time.monotonic() - killed
                break
            time.sleep(0.05)
        replaced = f"replaced by its master after {back:.1f} s" if back is not None else "not replaced within 60 s"
        self.events.append(f"SIGKILL gunicorn worker {victim} (1 of {len(workers)}) at {at:.0f} s with "
                           f"{in_flight} request(s) in flight at the server; {replaced}")

    def _kill_consumer(self) -> None:
        consumer = self.cluster.consumers[-1]
        at = self._now()
        consumer.kill()
        time.sleep(self.restart_after)
        consumer.start()
        self.events.append(f"SIGKILL huey consumer {consumer.name} at {at:.0f} s; started again "
                           f"{self.restart_after:.0f} s later")

    def _terminate_connections(self) -> None:
        at = self._now()
        terminated = self.cluster.terminate_connections()
        self.events.append(f"pg_terminate_backend on {terminated} connection(s) to the app's database at {at:.0f} s")

    def finish(self) -> None:
        self._done.set()
        self._thread.join(timeout=120)


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
