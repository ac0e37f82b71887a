"""Issue 14: photos encrypted at rest and read back through PhotoFiles, key rotation that survives
SIGKILL, the retention job, erasure on request, and the append-only audit log.

Set TEST_DATABASE_URL to run the database-facing ones on PostgreSQL."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from settings import ConfigError, settings_from_mapping
from staff import privacy
from store.crypto import KeyRing, file_key_id
from store.files import PhotoFiles
from store.models import AuditEvent, HandoverBatch, Message, Notification, Order, Photo, RosterEntry, utcnow
from tests.journey import TEST_PHOTO_KEY
from tests.staff_fixtures import ROWS, db, put_under_review, write_csv

PROJECT = Path(__file__).resolve().parents[1]
NEW_KEY = base64.b64encode(b"n" * 32).decode()


def jpeg(seed: int, size=(300, 400)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (seed * 40 % 256, 120, 200)).save(out, "JPEG", quality=85)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def approved_with_photo(app, cli, graduate, openid: str, data: bytes) -> int:
    """A paid candidate whose uploaded photo (stored the way uploads are) staff approved; the photo's id."""
    entry_id = put_under_review(app, graduate, openid)
    stored = app.extensions["collector"].services.photo_files.put(data)
    with db(app).session() as session:
        session.execute(update(Photo).where(Photo.roster_entry_id == entry_id)
                        .values(sha256=stored.sha256, path=stored.relative_path, size_bytes=stored.size_bytes))
        session.execute(update(Message).where(Message.openid == openid, Message.media_path.is_not(None))
                        .values(media_path=stored.relative_path))
    result = cli("review", "approve", graduate[1], "--by", "审核员甲")
    assert result.exit_code == 0, result.output
    with db(app).session() as session:
        return session.scalar(select(Photo.id).where(Photo.roster_entry_id == entry_id))


def photo_files_on_disk(app) -> list[Path]:
    root = app.extensions["collector"].settings.photo_dir
    return [path for path in root.rglob("*") if path.is_file() and not path.name.startswith(".")]


# --- photos encrypted at rest ---------------------------------------------------------------------------

def test_an_uploaded_photo_is_encrypted_on_disk_and_every_reader_gets_the_original(app, chat, roster, cli, fake_wechat,
                                                                                 imported):
    uploaded = jpeg(1, (480, 640))
    chat.walk_to_photo(roster[0])
    chat.send_photo(uploaded)
    [on_disk] = photo_files_on_disk(app)
    raw = on_disk.read_bytes()
    assert raw[:4] == b"PCE1" and b"\xff\xd8\xff" not in raw and b"JFIF" not in raw and uploaded[100:132] not in raw
    photo_dir = app.extensions["collector"].settings.photo_dir
    assert sha(app.extensions["collector"].services.photo_files.read(str(on_disk.relative_to(photo_dir)))) == sha(uploaded)

    # An approved photo: the hand-over zip, the review console and 查看照片 all see the original bytes.
    original = jpeg(2)
    photo_id = approved_with_photo(app, cli, ROWS[0], "o_pd_viewer", original)
    assert cli("handover", "build").exit_code == 0
    with db(app).session() as session:
        zip_path = app.extensions["collector"].settings.data_dir / session.scalar(select(HandoverBatch.path))
    with zipfile.ZipFile(zip_path) as archive:
        assert sha(archive.read(f"photos/{ROWS[0][2]}.jpg")) == sha(original)

    from tests.test_roster_preview import csrf_token
    from tests.browser.conftest import TEST_PASSWORD
    from staff import accounts
    with db(app).session() as session:
        accounts.add_user(session, "reviewer1", "admin", TEST_PASSWORD, by="test")
    client = app.test_client()
    client.post("/staff/login", data={"csrf_token": csrf_token(client, "/staff/login"), "name": "reviewer1",
                                      "password": TEST_PASSWORD})
    response = client.get(f"/staff/review/photo/{photo_id}/image")
    assert response.status_code == 200 and sha(response.data) == sha(original)

    from tests.conftest import simulator_for
    from tests.journey import Chat
    viewer = Chat(app, simulator_for(app), fake_wechat, "o_pd_viewer")
    viewer.say("查看照片")
    assert sha(original) in {sha(data) for data in fake_wechat.uploaded_media.values()}


def test_a_plaintext_file_from_before_encryption_is_still_read(tmp_path):
    files = PhotoFiles(tmp_path, KeyRing({"1": b"k" * 32}, "1"))
    data = jpeg(3)
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "old").write_bytes(data)
    assert files.read("ab/old") == data and files.key_id("ab/old") is None


def test_a_changed_encrypted_file_is_refused_not_returned(tmp_path):
    from store.crypto import DecryptError

    files = PhotoFiles(tmp_path, KeyRing({"1": b"k" * 32}, "1"))
    stored = files.put(os.urandom(200_000))
    path = files.path(stored.relative_path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DecryptError):
        files.read(stored.relative_path)
    path.write_bytes(bytes(raw[:-70_000]))  # cut short at no particular chunk boundary
    with pytest.raises(DecryptError):
        files.read(stored.relative_path)


def test_without_a_key_storing_a_photo_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"\[privacy\] keys"):
        PhotoFiles(tmp_path).put(jpeg(4))


@pytest.mark.parametrize("privacy, named", [
    ({"keys": {}, "active_key": ""}, "[privacy] keys"),
    # Without it the first message holding an ID or phone number would fail: its transcript line is sealed
    # with that number's lookup hash.
    ({"keys": {"1": TEST_PHOTO_KEY}, "active_key": "1", "lookup_key": ""}, "[privacy] lookup_key"),
], ids=["no encryption key", "no lookup key"])
def test_flask_serve_refuses_to_start_without_its_keys(make_app, tmp_path, privacy, named):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_app(privacy=privacy, server={"port": port})
    served = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "serve"], cwd=PROJECT, timeout=60,
                            env={**os.environ, "COLLECTOR_CONFIG": str(tmp_path / "config.toml")},
                            capture_output=True, text=True)
    assert served.returncode != 0 and named in served.stderr and "Serving on" not in served.stdout


@pytest.mark.parametrize("privacy, message", [
    ({"keys": {"1": "c2hvcnQ="}, "active_key": "1"}, "32 random bytes"),
    ({"keys": {"1": TEST_PHOTO_KEY}, "active_key": "2"}, "not among"),
    ({"keys": {"1": TEST_PHOTO_KEY}}, "active_key must name"),
])
def test_unusable_keys_are_config_errors(privacy, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping({"privacy": privacy})


def test_keys_may_come_from_a_key_file(tmp_path):
    key_file = tmp_path / "keys.toml"
    key_file.write_text(f'keys = {{ 2 = "{NEW_KEY}" }}\nactive_key = "2"\n', encoding="utf-8")
    privacy_settings = settings_from_mapping({"privacy": {"keys": {"1": TEST_PHOTO_KEY}, "active_key": "1",
                                                          "key_file": "keys.toml"}}, base_dir=tmp_path).privacy
    assert privacy_settings.active_key == "2" and set(privacy_settings.keys) == {"1", "2"}


def test_the_environment_may_name_the_key_file(tmp_path, monkeypatch):
    key_file = tmp_path / "elsewhere.toml"
    key_file.write_text(f'keys = {{ 7 = "{NEW_KEY}" }}\nactive_key = "7"\n', encoding="utf-8")
    monkeypatch.setenv("COLLECTOR_KEY_FILE", str(key_file))
    assert settings_from_mapping({}).privacy.active_key == "7"
    monkeypatch.setenv("COLLECTOR_KEY_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="missing.toml"):
        settings_from_mapping({})


def test_make_run_writes_photo_keys_into_its_config(tmp_path):
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(PROJECT / "config.example.toml", tmp_path)
    subprocess.run(["make", "--no-print-directory", "-f", str(PROJECT / "Makefile"), "config.toml"], cwd=tmp_path,
                   check=True, capture_output=True)
    from settings import load_settings

    written = load_settings(tmp_path / "config.toml").privacy
    assert written.active_key == "1" and len(base64.b64decode(written.keys["1"])) == 32
    assert len(base64.b64decode(written.lookup_key)) == 32
    older = tmp_path / "older"  # a config.toml from before photos were encrypted gets keys, once
    older.mkdir()
    (older / "config.toml").write_text('secret_key = "kept"\n[office]\nphone = "010-1"\n', encoding="utf-8")
    for _ in range(2):
        subprocess.run(["make", "--no-print-directory", "-f", str(PROJECT / "Makefile"), "photo-keys"], cwd=older,
                       check=True, capture_output=True)
    upgraded = load_settings(older / "config.toml")
    assert upgraded.privacy.active_key == "1" and upgraded.secret_key == "kept" and upgraded.office.phone == "010-1"
    assert (older / "config.toml").read_text(encoding="utf-8").count("[privacy]") == 1
    no_lookup = tmp_path / "no-lookup"  # keys from before transcripts were sealed, no lookup_key: one is added, once
    no_lookup.mkdir()
    (no_lookup / "config.toml").write_text(f'secret_key = "kept"\n[privacy]\nkeys = {{ 1 = "{TEST_PHOTO_KEY}" }}\n'
                                           'active_key = "1"\n[office]\nphone = "010-1"\n', encoding="utf-8")
    added = []
    for _ in range(2):
        subprocess.run(["make", "--no-print-directory", "-f", str(PROJECT / "Makefile"), "photo-keys"], cwd=no_lookup,
                       check=True, capture_output=True)
        added.append(load_settings(no_lookup / "config.toml").privacy)
    assert len(base64.b64decode(added[0].lookup_key)) == 32 and added[1].lookup_key == added[0].lookup_key
    assert added[1].keys == {"1": TEST_PHOTO_KEY} and load_settings(no_lookup / "config.toml").office.phone == "010-1"
    assert oct((no_lookup / "config.toml").stat().st_mode & 0o777) == "0o600"
    ring = KeyRing.from_settings(written)
    assert ring.lookup_hash("110101199003070018") == ring.lookup_hash("110101199003070018")
    assert ring.lookup_hash("110101199003070018") != KeyRing({}, "", b"x" * 32).lookup_hash("110101199003070018")


# --- key rotation --------------------------------------------------------------------------------------

ROTATE_SCRIPT = """
import sys, time
sys.path.insert(0, {project!r})
from app import create_app
from staff import privacy

app = create_app({config!r})
files = app.extensions["collector"].services.photo_files
encrypt = files.keys.encrypt_chunks
def slow(chunks):  # each chunk written announces itself, then takes a while: the kill lands inside a file
    for number, chunk in enumerate(encrypt(chunks)):
        print("chunk", number, flush=True)
        time.sleep(0.05)
        yield chunk
files.keys.encrypt_chunks = slow
privacy.rotate_photo_files(files)
print("finished", flush=True)
"""


def test_rotation_killed_mid_file_and_run_again_leaves_every_file_on_the_new_key(make_app, tmp_path):
    app = make_app()
    files = app.extensions["collector"].services.photo_files
    # Several chunks each (64 KB), so the kill can land between two chunks of one file.
    originals = {files.put(os.urandom(200_000 + n)).relative_path: None for n in range(8)}
    originals.update({files.put(jpeg(n, (200 + n, 300))).relative_path: None for n in range(4)})
    for relative in originals:
        originals[relative] = files.read(relative)
    plaintext = files.root / "zz" / "zz" / "legacy"  # a file from before encryption
    plaintext.parent.mkdir(parents=True)
    plaintext.write_bytes(jpeg(99))
    originals["zz/zz/legacy"] = plaintext.read_bytes()
    killed_writer = files.root / "zz" / "zz" / ".incoming-killed"  # an hour-old leftover of a killed writer
    killed_writer.write_bytes(b"PCE1half a file")
    os.utime(killed_writer, (time.time() - 7200, time.time() - 7200))

    rotated_app = make_app(privacy={"keys": {"1": TEST_PHOTO_KEY, "2": NEW_KEY}, "active_key": "2"})
    config = tmp_path / "config.toml"
    script = ROTATE_SCRIPT.format(project=str(PROJECT), config=str(config))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=PROJECT)
    files_started = 0
    while True:  # inside a large file, a few files done and more to go
        line = process.stdout.readline()
        assert line and line != "finished\n", "the rotation ended before it could be killed"
        files_started += line == "chunk 0\n"
        if files_started >= 3 and line == "chunk 2\n":
            break
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    for relative, data in originals.items():  # nothing lost: each file is on the old key or the new one
        assert PhotoFiles(files.root, KeyRing({"1": base64.b64decode(TEST_PHOTO_KEY),
                                               "2": base64.b64decode(NEW_KEY)})).read(relative) == data
    assert list(files.root.rglob(".incoming-*")), "the kill did not land inside a file"
    keys_now = [file_key_id(files.path(relative)) for relative in originals]
    assert "2" in keys_now and ("1" in keys_now or None in keys_now), keys_now

    result = rotated_app.test_cli_runner().invoke(args=["keys", "rotate", "--by", "管理员"])
    assert result.exit_code == 0, result.output
    new_files = rotated_app.extensions["collector"].services.photo_files
    for relative, data in originals.items():
        assert file_key_id(new_files.path(relative)) == "2"
        assert new_files.read(relative) == data
    assert not killed_writer.exists()
    again = rotated_app.test_cli_runner().invoke(args=["keys", "rotate", "--by", "管理员"])
    assert "已转换 0" in again.output
    status = rotated_app.test_cli_runner().invoke(args=["keys", "status"])
    assert status.output.split("\n")[2].split() == ["2", str(len(originals)), "当前"], status.output
    # Once rotated, the old key is no longer needed.
    only_new = PhotoFiles(files.root, KeyRing({"2": base64.b64decode(NEW_KEY)}, "2"))
    assert all(only_new.read(relative) == data for relative, data in originals.items())


# --- retention -----------------------------------------------------------------------------------------

def hand_over_days_ago(app, photo_id: int, days: int) -> None:
    with db(app).session() as session:
        batch_id = session.scalar(select(Photo.handover_batch_id).where(Photo.id == photo_id))
        session.execute(update(HandoverBatch).where(HandoverBatch.id == batch_id)
                        .values(finished_at=utcnow() - timedelta(days=days), created_at=utcnow() - timedelta(days=days)))


def test_retention_deletes_exactly_what_is_due_and_a_second_run_changes_nothing(make_app, tmp_path):
    app = make_app(retention={"photos_days": 30, "transcripts_days": 60, "payments_days": 365})
    cli = lambda *args: app.test_cli_runner().invoke(args=list(args))  # noqa: E731
    assert cli("roster", "import", str(write_csv(tmp_path / "roster.csv", ROWS))).exit_code == 0
    old_photo, young_photo = jpeg(10), jpeg(11)
    old_id = approved_with_photo(app, cli, ROWS[0], "o_old", old_photo)
    assert cli("handover", "build").exit_code == 0
    young_id = approved_with_photo(app, cli, ROWS[1], "o_young", young_photo)
    assert cli("handover", "build").exit_code == 0
    hand_over_days_ago(app, old_id, 45)  # photos (30 days) due, transcripts (60) and payments (365) not yet
    hand_over_days_ago(app, young_id, 10)  # nothing due

    report = cli("retention", "report")
    tz = app.extensions["collector"].settings.window.tz
    day = lambda days_from_now: (utcnow() + timedelta(days=days_from_now)).astimezone(tz).date().isoformat()  # noqa: E731
    lines = [line.split() for line in report.output.splitlines()[1:]]
    assert report.exit_code == 0
    assert ["照片", day(-15), "1"] in lines and ["照片", day(20), "1"] in lines, report.output  # due, and not yet
    # Two messages put_under_review wrote, and the approval's customer-service message.
    assert ["对话记录", day(15), "3"] in lines and ["对话记录", day(50), "3"] in lines, report.output
    assert ["支付记录中的个人信息", day(320), "1"] in lines, report.output
    assert ["报送压缩包", day(-15), "1"] in lines and ["报送压缩包", day(20), "1"] in lines and len(lines) == 8

    collector = app.extensions["collector"]
    first = collector.jobs.run("retention")
    assert first["photos"] == 1 and first["photo_files"] == 1 and first["handover_zips"] == 1
    zips = sorted((collector.settings.data_dir / "handover").glob("*.zip"))
    assert len(zips) == 1  # the young batch's zip is kept
    with db(app).session() as session:
        assert session.get(HandoverBatch, session.scalar(select(Photo.handover_batch_id).where(Photo.id == old_id))).path is None
    assert first["messages"] == 0 and first["orders"] == 0
    files = collector.services.photo_files
    with db(app).session() as session:
        old, young = session.get(Photo, old_id), session.get(Photo, young_id)
        assert old.path == "" and young.path != ""
        assert files.read(young.path) == young_photo
        assert session.scalar(select(Message.content).where(Message.openid == "o_old", Message.msg_type == "text"))
        assert session.scalar(select(Order.openid).where(Order.openid == "o_old")) == "o_old"
    assert len(photo_files_on_disk(app)) == 1
    from tests.conftest import simulator_for
    reply = simulator_for(app).text("o_old", "查看照片").content
    assert "已按保存期限删除" in reply and app.extensions["collector"].settings.office.phone in reply

    second = collector.jobs.run("retention")
    assert set(second.values()) == {0}

    hand_over_days_ago(app, old_id, 400)  # now everything of the old one is due
    third = collector.jobs.run("retention")
    assert third["messages"] >= 2 and third["orders"] == 1 and third["photos"] == 0
    with db(app).session() as session:
        order = session.scalar(select(Order).join(RosterEntry, RosterEntry.id == Order.roster_entry_id)
                               .where(RosterEntry.id_number == ROWS[0][1]))
        assert order.openid == privacy.ERASED_OPENID and order.amount_fen == 3000 and order.out_trade_no
        assert not session.scalar(select(Message.id).where(Message.openid == "o_old", Message.content != ""))
        assert session.scalar(select(Message.id).where(Message.openid == "o_young", Message.content != ""))
    assert set(collector.jobs.run("retention").values()) == {0}


# --- erasure -------------------------------------------------------------------------------------------

def test_erasure_leaves_the_graduate_nowhere_in_the_database_file_but_a_masked_audit_row(make_app, tmp_path):
    import shutil

    app = make_app()
    url = app.extensions["collector"].settings.database_url
    on_sqlite = app.extensions["collector"].db.engine.dialect.name == "sqlite"
    if not on_sqlite and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    cli = lambda *args: app.test_cli_runner().invoke(args=list(args))  # noqa: E731
    assert cli("roster", "import", str(write_csv(tmp_path / "roster.csv", ROWS))).exit_code == 0
    name, id_number = ROWS[0][0], ROWS[0][1]
    approved_with_photo(app, cli, ROWS[0], "o_erased", jpeg(20))
    from tests.staff_fixtures import PHONE
    from store.models import PhoneCode, ReminderCampaign, ReminderRecipient
    with db(app).session() as session:  # a reminder campaign that reached them, an SMS code sent to them
        entry_id = session.scalar(select(RosterEntry.id).where(RosterEntry.id_number == id_number))
        campaign = ReminderCampaign(segment="id_list", id_numbers=[id_number, ROWS[1][1]], text="请缴费",
                                    created_by="管理员")
        session.add(campaign)
        session.flush()
        session.add(ReminderRecipient(campaign_id=campaign.id, graduate_key=f"r{entry_id}", roster_entry_id=entry_id,
                                      openid="o_erased", phone=PHONE, name=name, planned_channel="sms"))
        session.add(PhoneCode(openid="o_erased", phone=PHONE, code_hash="0" * 64, expires_at=utcnow()))
        # An earlier account that typed the ID number and was unbound since.
        session.add(Message(openid="o_earlier", direction="in", channel="webhook", msg_type="text",
                            content=f"我是{name}，身份证 {id_number}"))

    database = Path(url.removeprefix("sqlite:///"))

    def file_bytes() -> bytes:
        """SQLite: the database file and its WAL. PostgreSQL: a dump."""
        if not on_sqlite:
            return subprocess.run(["pg_dump", "--data-only", url.replace("postgresql+psycopg://", "postgresql://")],
                                  check=True, capture_output=True).stdout
        wal = database.with_name(database.name + "-wal")
        return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    ring = KeyRing.from_settings(app.extensions["collector"].settings.privacy)
    id_hash = ring.lookup_hash(id_number)  # what stands for the ID number in the database
    before = file_bytes()
    assert name.encode("utf-8") in before and id_hash.encode() in before  # the grep can fail
    assert id_number.encode() not in before and PHONE.encode() not in before  # encrypted at rest
    refused = cli("erase", id_number, "--by", "管理员")
    assert refused.exit_code != 0
    result = cli("erase", id_number, "--by", "管理员", "--reason", "本人申请 2026-001")
    assert result.exit_code == 0, result.output

    app.extensions["collector"].db.dispose()
    raw = file_bytes()
    for secret in (name, id_number, PHONE, id_hash):
        assert secret.encode("utf-8") not in raw, secret
    with db(app).session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "privacy.erase")).all()
        assert event.target == f"{id_number[:6]}********{id_number[-4:]}" and name not in (event.detail or "")
        assert session.scalar(select(Order.amount_fen).where(Order.out_trade_no.is_not(None)))
        assert not session.scalars(select(Photo.path).where(Photo.path != "")).all()
    assert not photo_files_on_disk(app)
    assert ring.lookup_hash(ROWS[1][1]).encode() in file_bytes()  # the other graduates are untouched


# --- the audit log is append-only -----------------------------------------------------------------------

def test_the_database_refuses_to_change_or_delete_audit_events(app):
    database = app.extensions["collector"].db
    with database.session() as session:
        session.add(AuditEvent(actor="test", action="kept", target="x", created_at=utcnow()))
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            with database.session() as session:
                session.execute(text(statement))
    with database.session() as session:
        assert session.scalar(select(AuditEvent.actor).where(AuditEvent.action == "kept")) == "test"


def test_the_app_has_no_path_that_updates_or_deletes_audit_events():
    pattern = ("update(AuditEvent", "delete(AuditEvent", "UPDATE audit_events", "DELETE FROM audit_events")
    offenders = [str(path.relative_to(PROJECT)) for folder in ("bot", "console", "handlers", "jobs", "notify", "payments",
                                                                "rules", "staff", "store")
                 for path in (PROJECT / folder).rglob("*.py")
                 if any(p in path.read_text(encoding="utf-8") for p in pattern)]
    assert offenders == []


def test_flask_photo_explain_reads_a_stored_encrypted_photo_through_the_app(app, tmp_path):
    data = jpeg(5, (480, 640))
    stored = app.extensions["collector"].services.photo_files.put(data)
    path = app.extensions["collector"].services.photo_files.path(stored.relative_path)
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(data)
    outputs = []
    for source in (path, plain):
        out = tmp_path / f"{source.name}.png"
        result = app.test_cli_runner().invoke(args=["photo", "explain", str(source), "-o", str(out)])
        assert result.exit_code == 0, result.output
        outputs.append((result.output.replace(str(out), "OUT"), out.read_bytes()))
    assert outputs[0] == outputs[1]  # the same verdict and picture as the original file's


def test_retention_keeps_a_file_another_graduate_still_uses(make_app, tmp_path):
    app = make_app(retention={"photos_days": 30})
    cli = lambda *args: app.test_cli_runner().invoke(args=list(args))  # noqa: E731
    assert cli("roster", "import", str(write_csv(tmp_path / "roster.csv", ROWS))).exit_code == 0
    same = jpeg(30)  # content-addressed: both rows point at one file
    old_id = approved_with_photo(app, cli, ROWS[0], "o_old", same)
    assert cli("handover", "build").exit_code == 0
    young_id = approved_with_photo(app, cli, ROWS[1], "o_young", same)
    assert cli("handover", "build").exit_code == 0
    hand_over_days_ago(app, old_id, 45)
    done = app.extensions["collector"].jobs.run("retention")
    assert done["photos"] == 1 and done["photo_files"] == 0
    with db(app).session() as session:
        young = session.get(Photo, young_id)
        assert app.extensions["collector"].services.photo_files.read(young.path) == same


def test_the_example_config_documents_privacy_and_retention_with_their_defaults():
    from settings import PrivacySettings, RetentionSettings, load_settings

    example = load_settings(PROJECT / "config.example.toml")
    assert (example.privacy, example.retention) == (PrivacySettings(), RetentionSettings())


def test_sealed_values_stay_readable_under_an_old_key_and_refuse_tampering():
    from store.crypto import DecryptError

    old = KeyRing({"1": b"a" * 32}, "1")
    token = old.seal("110101199003070018")
    assert "110101199003070018" not in token and old.seal("110101199003070018") != token  # a fresh nonce each time
    rotated = KeyRing({"1": b"a" * 32, "2": b"b" * 32}, "2")
    assert rotated.open(token) == "110101199003070018" and rotated.seal("x").startswith("enc1:2:")
    with pytest.raises(DecryptError):
        rotated.open(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    with pytest.raises(DecryptError):
        KeyRing({"2": b"b" * 32}, "2").open(token)
