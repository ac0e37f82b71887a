"""Fixtures for the WeChat Pay tests: merchant and platform RSA keys, the fake WeChat Pay, and an app
served over real HTTP on 127.0.0.1 (WeChat Pay posts notifications to it; phones open its pages)."""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server

from standins.wechatpay import FakeWeChatPay
from tests.conftest import APPID, simulator_for
from tests.journey import Chat, seed_roster

MCHID = "1900000109"
MERCHANT_SERIAL_NO = "444F4864EA9B34415E8E9F3A0B1C2D3E4F5A6B7C"
PUBLIC_KEY_ID = "PUB_KEY_ID_0119000001092025112400000000000001"
APIV3_KEY = "0123456789abcdefghijABCDEFGHIJ01"  # 32 characters


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey
    platform: rsa.RSAPrivateKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(merchant=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                platform=rsa.generate_private_key(public_exponent=65537, key_size=2048))


def write_keys(folder: Path, keys: Keys) -> dict[str, str]:
    """The merchant's apiclient_key.pem and WeChat Pay's pub_key.pem, as the merchant platform hands them out."""
    private_path, public_path = folder / "apiclient_key.pem", folder / "pub_key.pem"
    private_path.write_bytes(keys.merchant.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public_path.write_bytes(keys.platform.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return {"private_key_path": str(private_path), "public_key_path": str(public_path)}


@pytest.fixture
def served():
    """A threaded HTTP server on 127.0.0.1 for the app, started before the app exists (the app's
    public_base_url must name its port): set `served.app` once it is built."""
    holder = SimpleNamespace(app=None)
    server = make_server("127.0.0.1", 0, lambda environ, start: holder.app(environ, start), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="served-app", daemon=True)
    thread.start()
    holder.url = f"http://127.0.0.1:{server.port}"
    yield holder
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def fake_pay(keys):
    with FakeWeChatPay(mchid=MCHID, appid=APPID, apiv3_key=APIV3_KEY, merchant_serial_no=MERCHANT_SERIAL_NO,
                       merchant_public_key=keys.merchant.public_key(), platform_private_key=keys.platform,
                       public_key_id=PUBLIC_KEY_ID) as fake:
        yield fake


def wechatpay_section(tmp_path: Path, keys: Keys, fake_pay: FakeWeChatPay, **overrides) -> dict:
    key_dir = tmp_path / "keys"
    key_dir.mkdir(exist_ok=True)
    return {"mchid": MCHID, "merchant_serial_no": MERCHANT_SERIAL_NO, "apiv3_key": APIV3_KEY,
            "public_key_id": PUBLIC_KEY_ID, "api_base_url": fake_pay.base_url, **write_keys(key_dir, keys),
            **overrides}


@pytest.fixture
def pay_app(make_app, served, tmp_path, keys, fake_pay, fake_wechat):
    app = make_app(payment={"gateway": "wechatpay", "public_base_url": served.url},
                   wechat={"oauth_base_url": fake_wechat.oauth_base_url,
                           "sns_api_base_url": fake_wechat.sns_api_base_url},
                   wechatpay=wechatpay_section(tmp_path, keys, fake_pay))
    served.app = app
    seed_roster(app)
    return app


def phone(app, fake_wechat, openid: str) -> Chat:
    return Chat(app, simulator_for(app), fake_wechat, openid=openid)


def pay_link(text: str) -> str:
    match = re.search(r"https?://\S+/pay/wechat/[\w.-]+", text)
    assert match, f"no WeChat Pay link in: {text}"
    return match.group(0)


def open_page(link: str, fake_wechat, openid: str) -> requests.Response:
    """The candidate taps the link in WeChat: the page sends the phone through OAuth and back."""
    fake_wechat.set_oauth_user(openid)
    return requests.get(link, timeout=10)


def page_params(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="pay-params">(.*?)</script>', html, re.S)
    assert match, f"no payment parameters on the page:\n{html}"
    return json.loads(match.group(1))


def trade_no(html: str) -> str:
    match = re.search(r"订单号：(\w+)", html)
    assert match, html
    return match.group(1)


def post_notification(url: str, headers: dict, body: bytes) -> requests.Response:
    return requests.post(url, data=body, headers={**headers, "Content-Type": "application/json"}, timeout=10)


def notify_url(served) -> str:
    return f"{served.url}/pay/notify"


def path_of(url: str) -> str:
    return urlsplit(url).path
