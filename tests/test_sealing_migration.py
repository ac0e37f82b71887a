"""Issue 14: an existing database (revision 0013, numbers in plain text) is converted in place by
`flask db upgrade`, and re-sealed under a new key by `flask keys rotate`; both are killed with SIGKILL
part-way and run again. Afterwards every number is sealed under the active key, the hashes look the
graduates up, no row was lost or added, and no ID or phone number is left readable in the database
(SQLite: the file and its WAL; PostgreSQL: pg_dump).

The database is filled at 0013 with plain Core inserts on its reflected schema (not the models, which
describe the newest one). bench/sealing_bench.py runs the same with 50 000 graduates and prints the time.
Set TEST_DATABASE_URL to a postgresql URL to run it on PostgreSQL."""
from __future__ import annotations

import base64
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, func, select, text

from rules.identity import check_digit
from store import migrate
from store.crypto import KeyRing
from tests.journey import TEST_LOOKUP_KEY, TEST_PHOTO_KEY, write_config
from tests.test_no_plaintext import Stored, _fold_full_width, pg_dump

PROJECT = Path(__file__).resolve().parents[1]
# 5 000 keeps the suite quick (about 25 s a database); SEALING_TEST_GRADUATES=50000 runs the size
# (about 2 minutes a database), and bench/sealing_bench.py times 50 000 uninterrupted.
GRADUATES = int(os.environ.get("SEALING_TEST_GRADUATES", "5000"))
NEW_KEY = base64.b64encode(b"rotated-key-for-tests-32-bytes!!").decode()
WHEN = datetime(2026, 6, 1, 8, 0, tzinfo=timezone.utc)
PROGRESS = re.compile(r"\d+/\d+")  # "roster_entries：已加密证件号、手机号 1000/5000 …", "roster_entries: 已检查 1000/5000 …"
LEVELS = ("本科", "专科")


# --- the cohort at revision 0013 -------------------------------------------------------------------------

def id_number(n: int) -> str:
    """A valid ID number, one per n (birth day and sequence from n)."""
    born = date(1985, 1, 1) + timedelta(days=n % 5000)
    first17 = f"110101{born:%Y%m%d}{n // 5000 % 1000:03d}"
    return first17 + check_digit(first17)


def roster_phone(n: int) -> str:
    return f"139{n:08d}"


def typed_phone(n: int) -> str:
    return f"138{n:08d}"


def as_typed(number: str, n: int) -> str:
    """Plain, in groups of four with spaces, or with dashes: how people type it."""
    if n % 3 == 1:
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    if n % 3 == 2:
        return "-".join((number[:6], number[6:14], number[14:])) if len(number) == 18 else \
            "-".join((number[:3], number[3:7], number[7:]))
    return number


@dataclass
class Cohort:
    graduates: int
    id_numbers: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)  # every phone number stored, 11 digits
    counts: dict[str, int] = field(default_factory=dict)
    candidates: dict[str, int] = field(default_factory=dict)  # id number → roster entry id, for the bound ones
    texts: dict[int, str] = field(default_factory=dict)  # message id → content, a sample


def fill_at_0013(url: str, graduates: int, rows_per_insert: int = 5000) -> Cohort:
    """The roster; an account bound to every second graduate, which typed its ID and phone numbers (three
    ways) and was answered with the confirm card; an SMS outbox row for each; for every tenth a support
    reply quoting the number, a reminder, an SMS code and a reply kept for WeChat's retries; a reminder
    campaign to an uploaded list. All in the 0013 schema."""
    engine = create_engine(url)
    schema = MetaData()
    schema.reflect(engine)
    t = schema.tables
    cohort = Cohort(graduates)
    roster, candidates, messages, notifications, recipients, codes, replies = [], [], [], [], [], [], []
    for n in range(1, graduates + 1):
        number = id_number(n)
        cohort.id_numbers.append(number)
        phone = roster_phone(n) if n % 2 else None
        if phone:
            cohort.phones.append(phone)
        roster.append({"id": n, "name": f"考生{n}", "id_number": number, "exam_number": f"0124{n:08d}",
                       "level": LEVELS[n % 2], "major": "法学", "phone": f"+86{phone}" if phone else None,
                       "bound_openid": f"o_{n}" if n % 2 == 0 else None, "bound_at": WHEN if n % 2 == 0 else None,
                       "created_at": WHEN, "updated_at": WHEN})
        if n % 2:
            continue
        typed = typed_phone(n)
        cohort.phones.append(typed)
        cohort.candidates[number] = n
        candidates.append({"id": n, "openid": f"o_{n}", "state": "under_review", "level": LEVELS[n % 2],
                           "name": f"考生{n}", "id_number": number, "phone": f"+86{typed}", "roster_entry_id": n,
                           "created_at": WHEN, "updated_at": WHEN})
        for direction, content in (("in", f"我叫考生{n}，身份证号 {as_typed(number, n)}"),
                                   ("in", f"手机 {as_typed(typed, n)}"),
                                   ("out", f"请认真核对您的信息：\n身份证号：{number[:6]}********{number[-4:]}\n"
                                           f"手机号：{typed}\n信息无误回复 1"),
                                   ("in", "我知道了")):
            messages.append({"openid": f"o_{n}", "direction": direction, "channel": "webhook", "msg_type": "text",
                             "content": content, "created_at": WHEN})
        notifications.append({"dedupe_key": f"approved:{n}:sms", "kind": "approved", "channel": "sms",
                              "openid": f"o_{n}", "phone": f"+86{typed}", "payload": {"template": "approved",
                                                                                     "params": [f"考生{n}"]},
                              "status": "sent", "attempts": 1, "next_attempt_at": WHEN, "created_at": WHEN})
        if n % 10 == 0:  # a support agent's reply quoting the number: its text is in the outbox row too
            notifications.append({"dedupe_key": f"support:{n}:wechat", "kind": "support", "channel": "wechat",
                                  "openid": f"o_{n}", "phone": None,
                                  "payload": {"text": f"收到，我们会打 {typed} 联系您"}, "status": "sent",
                                  "attempts": 1, "next_attempt_at": WHEN, "created_at": WHEN})
            recipients.append({"graduate_key": f"r{n}", "roster_entry_id": n, "openid": f"o_{n}",
                               "phone": f"+86{typed}", "name": f"考生{n}", "planned_channel": "sms", "status": "queued"})
            codes.append({"openid": f"o_{n}", "phone": f"+86{typed}", "code_hash": "0" * 64, "tries": 0,
                          "created_at": WHEN, "expires_at": WHEN})
            replies.append({"key": f"msg:{n}", "done": True, "created_at": WHEN,
                            "reply_xml": f"<xml><Content><![CDATA[手机号：{typed}]]></Content></xml>"})
    with engine.begin() as connection:
        for table, rows in (("roster_entries", roster), ("candidates", candidates), ("messages", messages),
                            ("notifications", notifications), ("phone_codes", codes), ("inbound_keys", replies)):
            for start in range(0, len(rows), rows_per_insert):
                connection.execute(t[table].insert(), rows[start:start + rows_per_insert])
        campaign = connection.execute(t["reminder_campaigns"].insert().values(
            segment="id_list", id_numbers=cohort.id_numbers[:200], text="{姓名}同学，请尽快完成采集。", status="done",
            planned_count=len(recipients), created_by="张老师", created_at=WHEN)).inserted_primary_key[0]
        if recipients:
            connection.execute(t["reminder_recipients"].insert(),
                               [dict(row, campaign_id=campaign) for row in recipients])
        cohort.counts = table_counts(connection)
        sample = random.Random(14).sample(range(1, len(messages) + 1), min(200, len(messages)))
        cohort.texts = dict(connection.execute(select(t["messages"].c.id, t["messages"].c.content)
                                               .where(t["messages"].c.id.in_(sample))).all())
    engine.dispose()
    return cohort


def table_counts(connection) -> dict[str, int]:
    schema = MetaData()
    schema.reflect(connection)
    return {name: connection.scalar(select(func.count()).select_from(table))
            for name, table in schema.tables.items() if name not in ("alembic_version", "seal_progress")}


# --- the commands, as separate processes -----------------------------------------------------------------

def config_for(folder: Path, url: str, keys: dict[str, str], active: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, database_url=url, api_base_url="http://127.0.0.1:9", token="t", appid="wx0",
                        secret="s", aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                        sections={"privacy": {"keys": keys, "active_key": active, "lookup_key": TEST_LOOKUP_KEY}})


# Whatever the SQLite build's default, the commands must not leave old plaintext in freed pages.
WITHOUT_SECURE_DELETE = Path(__file__).parent / "sqlite_without_secure_delete"


def flask(config: Path, *args: str) -> subprocess.Popen:
    path = os.pathsep.join(filter(None, (str(WITHOUT_SECURE_DELETE), os.environ.get("PYTHONPATH"))))
    env = dict(os.environ, COLLECTOR_CONFIG=str(config), PYTHONUNBUFFERED="1", PYTHONPATH=path)
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", *args], cwd=PROJECT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_after_progress(config: Path, *args: str, lines: int = 2) -> list[str]:
    """Runs the command and SIGKILLs it once it printed `lines` progress lines; what it printed."""
    process = flask(config, *args)
    seen = []
    while True:
        line = process.stdout.readline()
        if not line:
            process.wait(30)
            raise AssertionError(f"`flask {' '.join(args)}` ended before it could be killed:\n{''.join(seen)}")
        seen.append(line)
        if sum(bool(PROGRESS.search(printed)) for printed in seen) >= lines:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    return seen


def run_to_the_end(config: Path, *args: str) -> tuple[str, float]:
    started = time.perf_counter()
    process = flask(config, *args)
    output, _ = process.communicate(timeout=1800)
    elapsed = time.perf_counter() - started
    assert process.returncode == 0, output
    return output, elapsed


# --- what the database holds ------------------------------------------------------------------------

SEALED = {"roster_entries": ("id_number", "phone"), "candidates": ("id_number", "phone"),
          "notifications": ("phone",), "reminder_recipients": ("phone",), "phone_codes": ("phone",)}


def key_ids(url: str) -> dict[str, int]:
    """How many sealed values each key id seals (None: a value in plain text), over every sealed column."""
    engine = create_engine(url)
    found: dict[str, int] = {}
    with engine.connect() as connection:
        for table, columns in SEALED.items():
            for column in columns:
                for (value,) in connection.execute(text(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL")):
                    key = value.split(":")[1] if value.startswith("enc1:") else None
                    found[key] = found.get(key, 0) + 1
    engine.dispose()
    return found


def numbers_in(raw: bytes, id_numbers, phones) -> dict[str, int]:
    """Which of these numbers the bytes hold in plain text (runs of digits, single spaces or dashes
    between), by kind. An ID number is found by its first 17 characters, so X, x or none at the end."""
    prefixes, phones = {number[:17] for number in id_numbers}, set(phones)
    found = {"id_numbers": set(), "phones": set()}
    for run in re.finditer(rb"[0-9](?:[ \-]?[0-9]){10,}", _fold_full_width(raw)):
        digits = re.sub(rb"[ \-]", b"", run.group(0)).decode("ascii")
        for start in range(len(digits) - 10):
            if digits[start:start + 11] in phones:
                found["phones"].add(digits[start:start + 11])
            if digits[start:start + 17] in prefixes:
                found["id_numbers"].add(digits[start:start + 17])
    return {kind: len(numbers) for kind, numbers in found.items() if numbers}


def database_bytes(url: str) -> Stored:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        return Stored(path.read_bytes() + (wal.read_bytes() if wal.exists() else b""), [])
    return Stored(pg_dump(url), [])


def assert_everything_sealed_under(url: str, cohort: Cohort, key: str, ring: KeyRing) -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        assert table_counts(connection) == cohort.counts  # nothing lost, nothing added
        hashes = dict(connection.execute(text("SELECT id, id_number_hash FROM roster_entries")).all())
        assert hashes == {n: ring.lookup_hash(number) for n, number in enumerate(cohort.id_numbers, start=1)}
        bound = dict(connection.execute(text("SELECT id, id_number_hash FROM candidates")).all())
        assert bound == {n: ring.lookup_hash(number) for number, n in cohort.candidates.items()}
        phone_hashes = set(connection.scalars(text("SELECT phone_hash FROM roster_entries WHERE phone IS NOT NULL")))
        assert phone_hashes == {ring.lookup_hash(f"+86{roster_phone(n)}") for n in range(1, cohort.graduates + 1, 2)}
        [listed] = connection.scalars(text("SELECT id_numbers FROM reminder_campaigns")).all()
        assert listed.count(f"enc1:{key}:") == 200
        contents = connection.scalars(text("SELECT content FROM messages")).all()
        assert all("enc1:" in content for content in contents if content != "我知道了")
        assert not any(re.search(f"enc1:(?!{key}:)", content) for content in contents)
    engine.dispose()
    assert set(key_ids(url)) == {key}, key_ids(url)
    finds = numbers_in(database_bytes(url).raw, cohort.id_numbers, cohort.phones)
    assert not finds, f"numbers left in plain text in the database: {finds}"


def assert_lookups_work(config: Path, cohort: Cohort) -> None:
    """Through the app's models: the roster match's query, a candidate by ID and by phone number, and the
    transcript read back as it was typed."""
    from app import create_app
    from store import queries
    from store.models import Candidate, Message

    app = create_app(config)
    database = app.extensions["collector"].db
    try:
        with database.read() as session:
            for n in random.Random(7).sample(range(1, cohort.graduates + 1), 50):
                entry = queries.roster_by_id_number(session, id_number(n))
                assert entry is not None and (entry.id, entry.name) == (n, f"考生{n}")
                if n % 2 == 0:
                    person = session.scalar(select(Candidate).where(Candidate.id_number == id_number(n)))
                    assert person.openid == f"o_{n}" and person.phone == f"+86{typed_phone(n)}"
                    assert session.scalar(select(Candidate.openid).where(
                        Candidate.phone == f"+86{typed_phone(n)}")) == f"o_{n}"
            read = dict(session.execute(select(Message.id, Message.content).where(Message.id.in_(cohort.texts))).all())
            assert read == cohort.texts
    finally:
        database.dispose()


# --- the test ----------------------------------------------------------------------------------------

@pytest.fixture
def url(database_url):
    engine = create_engine(database_url)
    if engine.dialect.name == "postgresql":  # the 0013 schema's triggers and functions too
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return database_url


def test_upgrade_and_rotation_killed_part_way_finish_on_the_next_run(url, tmp_path):
    migrate.upgrade(url, "0013")
    cohort = fill_at_0013(url, GRADUATES)
    old_ring = KeyRing({"1": base64.b64decode(TEST_PHOTO_KEY)}, "1", base64.b64decode(TEST_LOOKUP_KEY))
    config = config_for(tmp_path / "v1", url, {"1": TEST_PHOTO_KEY}, "1")

    kill_after_progress(config, "db", "upgrade")
    halfway = key_ids(url)
    assert halfway.get("1") and halfway.get(None), f"the kill did not land part-way: {halfway}"
    run_to_the_end(config, "db", "upgrade")
    assert_everything_sealed_under(url, cohort, "1", old_ring)
    assert_lookups_work(config, cohort)
    again, _ = run_to_the_end(config, "db", "upgrade")
    assert "rewritten" not in again and key_ids(url) == {"1": sum(halfway.values())}  # nothing left to do

    both = config_for(tmp_path / "v2", url, {"1": TEST_PHOTO_KEY, "2": NEW_KEY}, "2")
    kill_after_progress(both, "keys", "rotate", "--by", "管理员")
    halfway = key_ids(url)
    assert halfway.get("1") and halfway.get("2"), f"the kill did not land part-way: {halfway}"
    assert_lookups_work(both, cohort)  # the old key still reads what is not yet rotated
    run_to_the_end(both, "keys", "rotate", "--by", "管理员")
    only_new = config_for(tmp_path / "v3", url, {"2": NEW_KEY}, "2")
    new_ring = KeyRing({"2": base64.b64decode(NEW_KEY)}, "2", base64.b64decode(TEST_LOOKUP_KEY))
    cohort.counts["audit_events"] = cohort.counts.get("audit_events", 0) + 1  # the rotation's audit row
    assert_everything_sealed_under(url, cohort, "2", new_ring)
    assert_lookups_work(only_new, cohort)  # the old key is no longer needed
