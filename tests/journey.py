"""Helpers that keep conversation tests to a few lines: a config file, a roster, a candidate's phone."""
from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path
from urllib.parse import urlparse


# Fictional graduates with valid GB 11643 ID numbers.
GRADUATES = [
    {"name": "张三", "id_number": "110101199003074573", "exam_number": "012401234567", "level": "本科",
     "major": "汉语言文学"},
    {"name": "李四", "id_number": "110105198512210028", "exam_number": "012409876543", "level": "专科",
     "major": "工商企业管理"},
    {"name": "阿依古丽·买买提", "id_number": "650102199512120023", "exam_number": "012405550001",
     "level": "本科", "major": "计算机科学与技术"},
]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_value(v)}" for key, v in value.items()) + "}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


TEST_PHOTO_KEY = "dGVzdC1waG90by1rZXktMzItYnl0ZXMtbG9uZy0xMjM="  # 32 bytes, tests only
TEST_LOOKUP_KEY = "dGVzdC1sb29rdXAta2V5LTMyLWJ5dGVzLWxvbmctMTI="


def write_config(tmp_path: Path, *, database_url, api_base_url, token, appid, secret, aes_key, sections) -> Path:
    base = {
        # Most tests post plain requests; the safe-mode default refusing them is tested in test_replay.py.
        "wechat": {"token": token, "appid": appid, "secret": secret, "encoding_aes_key": aes_key,
                   "api_base_url": api_base_url, "reply_budget_seconds": 4.0, "mode": "compatible"},
        "payment": {"public_base_url": "http://collector.test"},
        # Background tasks run at once, in the caller; tests of the consumer itself turn this off.
        "jobs": {"immediate": True},
        # Photos are encrypted at rest (store/crypto.py): a fixed test key, never a real one.
        "privacy": {"keys": {"1": TEST_PHOTO_KEY}, "active_key": "1", "lookup_key": TEST_LOOKUP_KEY},
    }
    top = {}
    for name, values in sections.items():
        if isinstance(values, dict):
            base.setdefault(name, {}).update(values)
        else:  # a top-level key, e.g. redis_url="redis://…"
            top[name] = values
    lines = [f'database_url = {_toml_value(database_url)}', f'data_dir = {_toml_value(str(tmp_path / "data"))}',
             'secret_key = "test-secret-key"', 'log_level = "INFO"']
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in top.items())
    for name, values in base.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seed_roster(app, graduates=GRADUATES) -> list[dict]:
    """Loads graduates the way staff do: a CSV through `flask roster import`."""
    folder = Path(tempfile.mkdtemp(prefix="roster-"))
    csv_path = folder / "roster.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["姓名", "身份证号", "准考证号", "学历层次", "专业"])
        for g in graduates:
            writer.writerow([g["name"], g["id_number"], g["exam_number"], g["level"], g["major"]])
    result = app.test_cli_runner().invoke(args=["roster", "import", str(csv_path)])
    assert result.exit_code == 0 and f"新增 {len(graduates)}" in result.output, result.output
    return graduates


class Chat:
    """One candidate's phone talking to the real webhook through signed WeChat XML."""

    def __init__(self, app, wechat, fake_wechat, openid: str):
        self.app = app
        self.wechat = wechat
        self.fake = fake_wechat
        self.openid = openid
        self.last = None

    def say(self, text: str) -> str:
        self.last = self.wechat.text(self.openid, text)
        assert self.last.status == 200, self.last.body
        return self.last.content

    def subscribe(self) -> str:
        self.last = self.wechat.event(self.openid, "subscribe")
        assert self.last.status == 200, self.last.body
        return self.last.content

    def send_photo(self, data: bytes, delay: float = 0.0) -> str:
        media_id = self.fake.add_media(data, content_type="image/jpeg", filename="photo.jpg", delay=delay)
        self.last = self.wechat.image(self.openid, media_id)
        assert self.last.status == 200, self.last.body
        return self.last.content

    def walk_to_photo(self, graduate: dict) -> str:
        """subscribe → institution → level → identity → phone → confirm → notice; returns the last reply."""
        self.subscribe()
        self.say("北京市高等教育自学考试")
        self.say(graduate["level"])
        self.say(f"{graduate['name']} {graduate['id_number']}")
        self.say("13800138000")
        self.say("1")
        return self.say("我知道了")

    def pay_link(self, text: str) -> str:
        match = re.search(r"https?://\S+/pay/sandbox/\S+", text)
        assert match, f"no payment link in: {text}"
        return urlparse(match.group(0)).path

    def pay(self, link_path: str):
        return self.app.test_client().post(link_path)

    def state(self) -> str:
        from store.queries import find_candidate
        with self.app.extensions["collector"].db.session() as session:
            return find_candidate(session, self.openid).state

    def customer_service_texts(self) -> list[str]:
        return [m["text"]["content"] for m in self.fake.messages_to(self.openid) if m.get("msgtype") == "text"]
