"""Outbox delivery bench: how fast queued notifications reach the fake WeChat API and fake Tencent
Cloud SMS over loopback, through the real channels and clients.

    .venv/bin/python bench/outbox_bench.py [--notices 400] [--sweepers 1 4]

For each sweeper count, a throw-away SQLite database gets `--notices` approval notices (each one
WeChat row and one SMS row, written by Outbox.add as staff approvals write them), then that many
sweeps (what `flask jobs run outbox` runs) go at once, in threads, until every row is sent. Prints
rows delivered per second, CPU per row (of this process, which also runs both fakes), and checks
that each fake accepted every message exactly once.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make the project importable

from app import create_app  # noqa: E402
from notify import notices  # noqa: E402
from standins.sms import FakeTencentSms  # noqa: E402
from standins.wechat_api import FakeWeChatAPI  # noqa: E402
from store.migrate import upgrade  # noqa: E402
from store.models import Candidate, Message, utcnow  # noqa: E402

APPID, SECRET = "wx_bench_appid_0001", "bench-secret"
SMS = {"secret_id": "AKIDbench", "secret_key": "bench-sms-key", "sdk_app_id": "1400000001", "sign_name": "北京自考"}


def config_text(tmp: Path, wechat: FakeWeChatAPI, sms: FakeTencentSms,
                sms_template: str = 'template_approved = "T_APPROVED"', queue_name: str = "bench") -> str:
    """The bench's config on the local fakes; other benches append sections of their own."""
    return f"""database_url = "sqlite:///{tmp / 'bench.db'}"
data_dir = "{tmp / 'data'}"
log_level = "WARNING"
[wechat]
appid = "{APPID}"
secret = "{SECRET}"
api_base_url = "{wechat.base_url}"
[sms]
provider = "tencent"
secret_id = "{SMS['secret_id']}"
secret_key = "{SMS['secret_key']}"
sdk_app_id = "{SMS['sdk_app_id']}"
sign_name = "{SMS['sign_name']}"
endpoint = "{sms.endpoint}"
scheme = "http"
{sms_template}
[jobs]
immediate = false
queue_name = "{queue_name}"
"""


def seed(app, count: int) -> None:
    """Candidates who wrote recently (inside the 48-hour window) and left a phone number; one
    approval notice each, queued but not delivered (no consumer runs)."""
    collector = app.extensions["collector"]
    with collector.db.session() as session:
        for i in range(count):
            openid = f"o_bench_{i:05d}"
            session.add(Candidate(openid=openid, state="approved", phone=f"+86139{i:08d}"))
            session.add(Message(openid=openid, direction="in", channel="webhook", msg_type="text", content="进度",
                                created_at=utcnow()))
    with collector.db.session() as session:
        for i in range(count):
            collector.outbox.add(session, notices.approved(collector.settings, f"o_bench_{i:05d}", i, "王小明"))


def sweep_until_done(outbox) -> None:
    while True:
        counts = outbox.sweep()
        if not counts.get("sent") and not counts.get("retry"):
            return


def run(count: int, sweepers: int) -> tuple[float, float, int, int]:
    with tempfile.TemporaryDirectory() as folder, FakeWeChatAPI(APPID, SECRET) as wechat, \
            FakeTencentSms(SMS["secret_id"], SMS["secret_key"], SMS["sdk_app_id"], SMS["sign_name"],
                           {"T_APPROVED": 1}) as sms:
        tmp = Path(folder)
        config = tmp / "config.toml"
        config.write_text(config_text(tmp, wechat, sms), encoding="utf-8")
        app = create_app(config)
        upgrade(app.extensions["collector"].settings.database_url)
        seed(app, count)
        outbox = app.extensions["collector"].outbox
        started, cpu_started = time.perf_counter(), time.process_time()
        threads = [threading.Thread(target=sweep_until_done, args=(outbox,)) for _ in range(sweepers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        delivered_wechat, delivered_sms = len(wechat.sent_messages), len(sms.sent)
        app.extensions["collector"].db.dispose()
    return elapsed, cpu, delivered_wechat, delivered_sms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notices", type=int, default=400)
    parser.add_argument("--sweepers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print(f"outbox: {args.notices} notices = {2 * args.notices} rows (WeChat + SMS), SQLite, fakes on loopback")
    print("| sweepers | seconds | rows/s | CPU ms/row | WeChat sent | SMS sent |")
    print("|---|---|---|---|---|---|")
    failed = False
    for sweepers in args.sweepers:
        elapsed, cpu, wechat, sms = run(args.notices, sweepers)
        rows = 2 * args.notices
        print(f"| {sweepers} | {elapsed:.2f} | {rows / elapsed:.0f} | {1000 * cpu / rows:.1f} | {wechat} | {sms} |")
        failed |= (wechat, sms) != (args.notices, args.notices)
    if failed:
        print("FAILED: some notice was not delivered exactly once", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
