"""Reminder campaign bench: planning a campaign of 30 000 recipients (time, peak memory), then sending through
the fake WeChat API and the fake Tencent Cloud SMS over loopback at the configured rates (achieved vs
configured rate per channel, CPU per message).

    .venv/bin/python bench/reminders_bench.py [--recipients 30000] [--send-seconds 30] [--wechat-rate 20] [--sms-rate 10]

A throw-away SQLite database gets the roster, seeded set-based: a third bound to accounts that wrote an hour
ago (customer-service messages), a third bound to accounts silent for three days (template messages), a
third never bound with a phone on the roster (SMS). The campaign ("not_approved") is planned by the real
`staff.reminders.send` (one INSERT … SELECT), then driven by the real worker function (`drive`, what the
"remind" task runs) for --send-seconds (0: until every recipient is sent). The fakes share this process, so
CPU per message includes their side. Every message the fakes accepted is checked against the outbox: each
recipient once.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

from sqlalchemy import func, insert, select  # noqa: E402

import outbox_bench  # noqa: E402
from app import create_app  # noqa: E402
from staff import reminders  # noqa: E402
from standins.sms import FakeTencentSms  # noqa: E402
from standins.wechat_api import FakeWeChatAPI  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.models import Candidate, Message, Notification, ReminderRecipient, RosterEntry, utcnow  # noqa: E402

APPID, SECRET, SMS = outbox_bench.APPID, outbox_bench.SECRET, outbox_bench.SMS
TEMPLATE_ID = "TPL_BENCH"
TEMPLATE_FIELDS = ("first", "keyword1", "keyword2", "keyword3", "remark")
TEXT = "{姓名}同学，毕业照片采集将于{截止时间}截止，请尽快完成。"


def config_text(tmp: Path, wechat: FakeWeChatAPI, sms: FakeTencentSms, wechat_rate: float, sms_rate: float) -> str:
    return outbox_bench.config_text(tmp, wechat, sms, sms_template='template_reminder = "T_REMIND"',
                                    queue_name="bench-reminders") + f"""[reminders]
quiet_start = "00:00"
quiet_end = "00:00"
template_id = "{TEMPLATE_ID}"
wechat_per_second = {wechat_rate}
sms_per_second = {sms_rate}
"""


def seed(app, count: int) -> None:
    db = app.extensions["collector"].db
    now = utcnow()
    roster, candidates, heard = [], [], []
    for i in range(count):
        kind = i % 3  # 0: writes recently, 1: silent, 2: never followed (phone on the roster)
        openid = f"o_bench_{i:06d}" if kind < 2 else None
        roster.append({"id": i + 1, "name": "王小明", "id_number": f"1101011990{i:08d}", "exam_number": f"E{i}",
                       "level": "本科" if i % 2 else "专科", "major": "法学", "bound_openid": openid,
                       "bound_at": now if openid else None, "phone": f"+86139{i:08d}" if kind == 2 else None,
                       "created_at": now, "updated_at": now})
        if openid:
            candidates.append({"openid": openid, "state": "photo", "roster_entry_id": i + 1, "name": "王小明",
                               "created_at": now, "updated_at": now})
            heard.append({"openid": openid, "direction": "in", "channel": "webhook", "msg_type": "text",
                          "content": "进度", "created_at": now - (timedelta(hours=1) if kind == 0 else timedelta(days=3))})
    with db.session() as session:
        session.execute(insert(RosterEntry), roster)
        session.execute(insert(Candidate), candidates)
        session.execute(insert(Message), heard)


def plan(app) -> tuple[int, float, float, int]:
    collector = app.extensions["collector"]
    with collector.db.session() as session:
        campaign = reminders.create(session, collector.settings, reminders.Audience("not_approved"), TEXT, "bench")
        campaign_id = campaign.id
    rss_before = resident_mb()
    tracemalloc.start()
    started = time.perf_counter()
    with collector.db.session() as session:
        planned = reminders.send(session, collector.settings, campaign_id, "bench").planned_count
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return campaign_id, seconds, peak / 2**20, resident_mb() - rss_before


def resident_mb() -> float:
    """This process's resident memory now (Linux), which includes SQLite's page cache."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def send(app, campaign_id: int, seconds: float) -> dict:
    collector = app.extensions["collector"]
    cpu, wall = time.process_time(), time.perf_counter()
    driven = reminders.drive(collector, campaign_id, max_seconds=seconds or None)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    with collector.db.read() as session:
        by_via = dict(session.execute(select(Notification.delivered_via, func.count())
                                      .where(Notification.status == "sent").group_by(Notification.delivered_via)).all())
    return {"driven": driven, "cpu": cpu, "wall": wall, "by_via": by_via}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=30000)
    parser.add_argument("--send-seconds", type=float, default=30.0, help="0: send to everyone")
    parser.add_argument("--wechat-rate", type=float, default=20.0, help="[reminders] wechat_per_second (default as config)")
    parser.add_argument("--sms-rate", type=float, default=10.0, help="[reminders] sms_per_second (default as config)")
    args = parser.parse_args()
    with FakeWeChatAPI(APPID, SECRET) as wechat, FakeTencentSms(SMS["secret_id"], SMS["secret_key"], SMS["sdk_app_id"],
                                                               SMS["sign_name"], {"T_REMIND": 2}) as sms, \
            tempfile.TemporaryDirectory(prefix="reminders-bench-") as folder:
        wechat.add_template(TEMPLATE_ID, TEMPLATE_FIELDS)
        tmp = Path(folder)
        config = tmp / "config.toml"
        config.write_text(config_text(tmp, wechat, sms, args.wechat_rate, args.sms_rate), encoding="utf-8")
        app = create_app(config)
        upgrade(app.extensions["collector"].settings.database_url)
        seed(app, args.recipients)
        campaign_id, plan_seconds, peak_mb, rss_mb = plan(app)
        with app.extensions["collector"].db.read() as session:
            planned = session.scalar(select(func.count()).select_from(ReminderRecipient))
        print(f"planning {planned} recipients (one INSERT … SELECT, SQLite): {plan_seconds:.2f} s; "
              f"peak Python memory {peak_mb:.1f} MB, resident memory +{rss_mb:.1f} MB")
        result = send(app, campaign_id, args.send_seconds)
        custom = result["by_via"].get("custom", 0)
        template = result["by_via"].get("template", 0)
        texts = result["by_via"].get("sms", 0)
        total = custom + template + texts
        wall = result["wall"]
        print(f"sending for {wall:.1f} s ({result['driven'].outcome}): {total} messages, {total / wall:.1f}/s; "
              f"WeChat {custom + template} ({custom} customer-service, {template} template) = "
              f"{(custom + template) / wall:.1f}/s of {args.wechat_rate:g}/s configured; "
              f"SMS {texts} = {texts / wall:.1f}/s of {args.sms_rate:g}/s configured; "
              f"CPU {1000 * result['cpu'] / max(total, 1):.1f} ms per message (fakes included)")
        once = (len(wechat.sent_messages) == custom and len(wechat.templates_sent) == template
                and len(sms.sent) == texts
                and len({m["touser"] for m in wechat.sent_messages} | {t["touser"] for t in wechat.templates_sent})
                == custom + template and len({s.phone for s in sms.sent}) == texts)
        print("each recipient at most once: " + ("yes" if once else "NO"))
        app.extensions["collector"].db.dispose()
        return 0 if once else 1


if __name__ == "__main__":
    sys.exit(main())
