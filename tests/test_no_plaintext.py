"""Issue 14's proof: after a roster import, candidates' journeys over the signed webhook (the ID number typed
plain, with spaces, with a small x; phone numbers; a photo; the payment; the approval), a support session and
a reminder campaign to an uploaded list of ID numbers, no ID or phone number used is anywhere in the database
in plain text (SQLite: the file and its WAL, read as bytes; PostgreSQL: `pg_dump`), while every look-up by
them still works: the roster match, one ID number for one account, the per-account limit, staff search.

Set TEST_DATABASE_URL to a postgresql URL to run it on PostgreSQL (pg_dump must be installed)."""
from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

import messages
from staff import lookup, support
from store.models import Candidate, RosterEntry
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat
from tests.staff_fixtures import write_csv

ZHANG, LI = GRADUATES[0], GRADUATES[1]
# An ID number whose check character is X: typed with a small x, it must not survive in either case.
WANG = {"name": "王晓", "id_number": "11010819920815108X", "exam_number": "012405550002", "level": "本科",
        "major": "法学"}
ROSTER_PHONES = {ZHANG["id_number"]: "13911112222", LI["id_number"]: "", WANG["id_number"]: "13933334444"}
ZHANG_PHONE = "13800138000"  # typed at the phone step
WANG_PHONE = "13700137000"  # typed with dashes, then said again with spaces to the support agent
CORRECTED_PHONE = "13600136000"  # set by the agent
# Valid ID numbers nobody on the roster has: a prober typing them hits the per-account limit.
STRANGERS = ("110102199501011002", "110102199501011010", "110102199501011029")
SECRETS = ([ZHANG["id_number"], LI["id_number"], WANG["id_number"], *STRANGERS]
           + [ZHANG_PHONE, WANG_PHONE, CORRECTED_PHONE] + [phone for phone in ROSTER_PHONES.values() if phone])
AGENT = "客服甲"


# --- reading the database as an attacker with the file would ------------------------------------------

def _fold_full_width(raw: bytes) -> bytes:
    """Full-width digits and X (what Chinese keyboards type, NFKC folds) as ASCII: a number typed that way
    is the same number."""
    for digit in range(10):
        raw = raw.replace(chr(0xFF10 + digit).encode("utf-8"), str(digit).encode("ascii"))
    return raw.replace("Ｘ".encode("utf-8"), b"X").replace("ｘ".encode("utf-8"), b"x")


def secret_pattern(secret: str) -> re.Pattern:
    """The number's digits in order with at most 3 bytes of non-digits between two (a space, a dash, a
    zero-width or ideographic space). An ID number is searched without its check character, so X and x
    and a number cut short by one are all found."""
    digits = secret[:17] if len(secret) == 18 else secret
    return re.compile(rb"[^0-9]{0,3}".join(re.escape(digit.encode("ascii")) for digit in digits))


@dataclass
class Stored:
    """The database as bytes (what is searched) and as a dump of rows (what says where a find lives)."""
    raw: bytes
    rows: list[tuple[str, bytes]]  # (table, the row as text)


def stored(app) -> Stored:
    database = app.extensions["collector"].db
    url = database.url
    if database.engine.dialect.name == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        raw = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = [(_table_of_insert(line), line.encode("utf-8")) for line in connection.iterdump()
                    if line.startswith("INSERT INTO")]
        finally:
            connection.close()
        return Stored(raw, rows)
    raw = pg_dump(url)
    return Stored(raw, _copy_rows(raw))


def pg_dump(url: str) -> bytes:
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed: the PostgreSQL database cannot be read as a dump")
    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    return subprocess.run(["pg_dump", "--no-owner", plain], check=True, capture_output=True, timeout=120).stdout


def _table_of_insert(line: str) -> str:
    return line.split('"')[1] if '"' in line.split("VALUES")[0] else line.split()[2]


def _copy_rows(dump: bytes) -> list[tuple[str, bytes]]:
    rows, table = [], None
    for line in dump.split(b"\n"):
        if line.startswith(b"COPY "):
            table = line.split()[1].decode().removeprefix("public.")
        elif line == b"\\.":
            table = None
        elif table:
            rows.append((table, line))
    return rows


def plaintext_finds(data: Stored, secrets=SECRETS) -> dict[str, list[str]]:
    """{secret: where it was found} for every secret readable in the stored bytes."""
    raw = _fold_full_width(data.raw)
    rows = [(table, _fold_full_width(row)) for table, row in data.rows]
    finds: dict[str, list[str]] = {}
    for secret in secrets:
        pattern = secret_pattern(secret)
        hits = list(pattern.finditer(raw))
        if not hits:
            continue
        tables = sorted({table for table, row in rows if pattern.search(row)})
        context = raw[max(0, hits[0].start() - 40): hits[0].end() + 40].decode("utf-8", "replace")
        finds[secret] = [f"{len(hits)}×", f"tables: {', '.join(tables) or 'none live (freed pages or old WAL frames)'}",
                         f"e.g. …{context!r}…"]
    return finds


def assert_no_plaintext(app, secrets=SECRETS) -> None:
    finds = plaintext_finds(stored(app), secrets)
    assert not finds, "personal numbers stored in plain text:\n" + "\n".join(
        f"  {secret}: {' | '.join(where)}" for secret, where in finds.items())


# --- the app and its people -------------------------------------------------------------------------

@pytest.fixture
def private_app(make_app, tmp_path):
    app = make_app(collection={"max_failed_matches_per_hour": 2},
                   reminders={"quiet_start": "00:00", "quiet_end": "00:00", "wechat_per_second": 500.0,
                              "sms_per_second": 500.0})
    rows = [[g["name"], g["id_number"], g["exam_number"], g["level"], g["major"], ROSTER_PHONES[g["id_number"]]]
            for g in (ZHANG, LI, WANG)]
    csv_path = write_csv(tmp_path / "roster.csv", rows, header=["姓名", "身份证号", "准考证号", "学历层次", "专业", "手机号"])
    result = app.test_cli_runner().invoke(args=["roster", "import", str(csv_path)])
    assert result.exit_code == 0 and "新增 3" in result.output, result.output
    return app


def cli(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def db(app):
    return app.extensions["collector"].db


def bound_openid(app, id_number: str) -> str | None:
    with db(app).read() as session:
        return session.scalar(select(RosterEntry.bound_openid).where(RosterEntry.id_number == id_number))


def zhang_pays_and_is_approved(app, fake_wechat, photo) -> Chat:
    """The ID number typed with spaces, the phone number plain; photo, payment, approval, 查看照片."""
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_zhang")
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    chat.say(ZHANG["level"])
    spaced = " ".join(ZHANG["id_number"][i:i + 4] for i in range(0, 18, 4))
    assert "手机号" in chat.say(f"我叫{ZHANG['name']}，身份证号 {spaced}")  # the roster matched
    assert ZHANG_PHONE in chat.say(ZHANG_PHONE)  # the card shows the number to its owner
    chat.say("1")
    chat.say("我知道了")
    reply = chat.send_photo(photo("webmorph_004_03_blue_ok.jpg"))
    assert "检查通过" in reply, reply
    assert chat.pay(chat.pay_link(reply)).status_code == 200
    assert chat.state() == "under_review"
    cli(app, "review", "approve", ZHANG["id_number"], "--by", "审核员甲")
    assert chat.state() == "approved"
    chat.last = chat.wechat.text(chat.openid, "查看照片")
    assert chat.last.msg_type == "image"
    return chat


def wang_reaches_the_photo_step(app, fake_wechat) -> Chat:
    """The ID number typed with a small x in one message with the name, the phone number with dashes."""
    chat = Chat(app, simulator_for(app), fake_wechat, openid="o_wang")
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    chat.say("本科")
    assert "手机号" in chat.say(f"{WANG['id_number'].lower()} {WANG['name']}")
    chat.say("-".join((WANG_PHONE[:3], WANG_PHONE[3:7], WANG_PHONE[7:])))
    chat.say("确认")
    chat.say("我知道了")
    assert chat.state() == "photo"
    return chat


def support_session(app, chat: Chat) -> None:
    """The candidate asks for a person; an agent takes over, both write numbers, the agent reads the
    transcript (the numbers come back whole), corrects the phone number, texts the candidate, hands back."""
    collector = app.extensions["collector"]
    chat.say("人工")
    with db(app).session() as session:
        support.take_over(session, chat.openid, AGENT, collector.outbox)
    chat.say(f"我的身份证号是{WANG['id_number'].lower()}，手机 {WANG_PHONE[:3]} {WANG_PHONE[3:7]} {WANG_PHONE[7:]}，"
             f"照片一直传不上去")
    with db(app).session() as session:
        support.reply(session, chat.openid, AGENT, f"收到，我们会打 {WANG_PHONE} 联系您", collector.outbox)
    with db(app).read() as session:
        shown = [event.text for event in support.candidate_file(session, chat.openid, collector.settings).events]
    assert any(WANG["id_number"].lower() in text and WANG_PHONE[7:] in text for text in shown), shown
    assert any(f"打 {WANG_PHONE} 联系" in text for text in shown), shown
    with db(app).session() as session:
        support.correct_phone(session, chat.openid, CORRECTED_PHONE, AGENT, collector.outbox)
    with db(app).session() as session:
        support.sms(session, chat.openid, AGENT, collector.outbox, collector.settings)
    with db(app).session() as session:
        support.hand_back(session, chat.openid, AGENT, collector.outbox, collector.settings)


def reminder_to_an_id_list(app, tmp_path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{ZHANG['id_number']}\n{LI['id_number']}\n{WANG['id_number'].lower()}\n", encoding="utf-8")
    created = cli(app, "remind", "create", "--segment", "id_list", "--text", "{姓名}同学，请于{截止时间}前完成采集。",
                  "--ids-file", str(ids), "--by", "张老师")
    assert "共 3 人" in created, created
    number = created.split("提醒活动 ")[1].split(" ")[0]
    cli(app, "remind", "send", number, "--by", "张老师")


# --- the proof ---------------------------------------------------------------------------------------

def test_no_id_or_phone_number_is_stored_in_plain_text_and_every_lookup_still_works(private_app, fake_wechat,
                                                                                   photo, tmp_path, caplog):
    app = private_app
    caplog.set_level(logging.DEBUG)  # every line any level could write, through the app's own handlers
    zhang = zhang_pays_and_is_approved(app, fake_wechat, photo)
    wang = wang_reaches_the_photo_step(app, fake_wechat)

    # One ID number, one account: a second account typing Zhang's is refused.
    other = Chat(app, simulator_for(app), fake_wechat, openid="o_second_account")
    other.subscribe()
    other.say("北京市高等教育自学考试")
    other.say("本科")
    assert "已在另一个微信号上采集" in other.say(f"{ZHANG['name']} {ZHANG['id_number']}")
    assert bound_openid(app, ZHANG["id_number"]) == zhang.openid
    assert bound_openid(app, WANG["id_number"]) == wang.openid

    # The per-account limit counts failed look-ups of ID numbers nobody has.
    prober = Chat(app, simulator_for(app), fake_wechat, openid="o_prober")
    prober.subscribe()
    prober.say("北京市高等教育自学考试")
    prober.say("本科")
    for stranger in STRANGERS[:2]:
        assert "核对" in prober.say(f"赵六 {stranger}")
    assert messages.TOO_MANY_ATTEMPTS.split("{")[0] in prober.say(f"赵六 {STRANGERS[2]}")

    support_session(app, wang)
    reminder_to_an_id_list(app, tmp_path)

    # Staff find the graduate by the full ID number (either case of x), the masked one with the name,
    # and the candidate by phone number.
    with db(app).read() as session:
        assert lookup.find_graduate(session, ZHANG["id_number"]).name == ZHANG["name"]
        assert lookup.find_graduate(session, WANG["id_number"].lower()).name == WANG["name"]
        assert lookup.find_graduate(session, "110101********4573 张三").name == ZHANG["name"]
        for text in (ZHANG["id_number"], ZHANG_PHONE, "110101********4573 张三"):
            assert [(hit.name, hit.openid) for hit in support.search(session, text)] == [("张三", zhang.openid)], text
        assert [hit.openid for hit in support.search(session, CORRECTED_PHONE)] == [wang.openid]
        assert session.scalar(select(Candidate.phone).where(Candidate.openid == wang.openid)) == f"+86{CORRECTED_PHONE}"

    assert_no_plaintext(app)
    assert_no_plaintext_in_logs_or_files(app, caplog.text)


def assert_no_plaintext_in_logs_or_files(app, log_text: str) -> None:
    """The log of the whole journey and every file the app wrote beside its database (the SMS log, the job
    queue, photos) hold no number in plain text either; the log does name the phones it sent to, masked,
    so this search had something to find."""
    assert "138****8000" in log_text and "136****6000" in log_text, log_text[-2000:]
    database = Path(app.extensions["collector"].db.url.removeprefix("sqlite:///")).resolve()
    files = [path for path in Path(app.config["SETTINGS"].data_dir).rglob("*")
             if path.is_file() and not path.resolve().name.startswith(database.name)]
    assert any(path.suffix == ".jsonl" for path in files), files  # the console SMS provider's log
    for where, raw in [("the log", log_text.encode("utf-8"))] + [(str(path), path.read_bytes()) for path in files]:
        finds = plaintext_finds(Stored(raw, []))
        assert not finds, f"personal numbers in plain text in {where}: {finds}"


def test_the_search_for_plaintext_finds_numbers_in_every_way_they_are_typed():
    """The grep above can fail: a number stored without the sealed types is found, whatever its spelling."""
    spellings = [ZHANG["id_number"], " ".join(ZHANG["id_number"][i:i + 6] for i in range(0, 18, 6)),
                 WANG["id_number"].lower(), "".join(chr(0xFF10 + int(d)) for d in ZHANG_PHONE),
                 "\u200b".join(WANG_PHONE)]
    found = plaintext_finds(Stored(("…".join(spellings)).encode("utf-8"), []),
                            [ZHANG["id_number"], WANG["id_number"], ZHANG_PHONE, WANG_PHONE, LI["id_number"]])
    assert sorted(found) == sorted([ZHANG["id_number"], WANG["id_number"], ZHANG_PHONE, WANG_PHONE])
    masked = Stored(b"110101********4573 138****8000 enc1:1:abc", [])
    assert not plaintext_finds(masked, [ZHANG["id_number"], ZHANG_PHONE])


# How else people type the numbers: an IME's full-width digits and ideographic spaces, a zero-width space
# from copy-paste (the identity step reads all of these, rules/text.normalize), brackets around an area code.
SPELLINGS = {
    "full-width ID number": "".join(chr(0xFF10 + int(c)) if c.isdigit() else "Ｘ" for c in WANG["id_number"]),
    "ID number in groups, ideographic spaces": "\u3000".join((ZHANG["id_number"][:6], ZHANG["id_number"][6:14],
                                                              ZHANG["id_number"][14:])),
    "ID number with zero-width spaces": "\u200b".join(ZHANG["id_number"]),
    "phone number with brackets": f"({ZHANG_PHONE[:3]}){ZHANG_PHONE[3:7]}-{ZHANG_PHONE[7:]}",
    "full-width phone number": "".join(chr(0xFF10 + int(c)) for c in ZHANG_PHONE),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_number_typed_any_way_the_bot_reads_is_not_stored_in_plain_text(app, spelling):
    typed = SPELLINGS[spelling]
    wechat = simulator_for(app)
    wechat.event("o_typist", "subscribe")
    assert wechat.text("o_typist", f"我的号码是{typed}").status == 200  # the transcript keeps every message
    with db(app).read() as session:
        events = support.candidate_file(session, "o_typist", app.extensions["collector"].settings).events
    assert any(typed in event.text for event in events)  # read back as it was typed
    assert_no_plaintext(app, [ZHANG["id_number"], WANG["id_number"], ZHANG_PHONE])
