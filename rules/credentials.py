"""Credentials out of error texts, the one place for it: every error that is logged or stored (the log
filter, messages.checks, notifications.last_error, refunds' last_error, transcript and outbox output)
goes through scrub_credentials.

An unreachable API's error names the URL it called, and WeChat's URLs carry `access_token=…` or
`secret=<appsecret>`; WeChat Pay's carry signed Authorization headers. Values are replaced, names
kept, so that an error still says what failed.
"""
from __future__ import annotations

import re
import threading

REDACTED = "[redacted]"

# Parameter and field names whose values are credentials (compared case-insensitively, whole names).
SECRET_NAMES = (
    "access_token", "refresh_token", "component_access_token", "authorizer_access_token", "token",
    "ticket", "jsapi_ticket", "secret", "appsecret", "app_secret", "client_secret", "secret_key",
    "secretkey", "secret_id", "secretid", "sign", "signature", "msg_signature", "paysign", "pay_sign",
    "key", "api_key", "apikey", "apiv3_key", "api_v3_key", "private_key", "password", "passwd", "pwd",
    "authorization", "x-tc-authorization", "wechatpay-signature", "cookie", "set-cookie", "encoding_aes_key",
)
_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_NAMES, key=len, reverse=True))

# name=value in a query string or form body (also percent-encoded: name%3Dvalue).
_PARAM = re.compile(rf"(?i)(?<![\w-])({_NAMES})(=|%3D)(?!\[redacted\])([^&\s\"'<>#,;)\]}}]+)")
# "name": "value" / 'name': 'value' (JSON, a Python dict's repr).
_QUOTED = re.compile(rf"(?i)([\"'])({_NAMES})\1(\s*:\s*)([\"'])(.*?)(?<!\\)\4")
# Header lines: "Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,signature=…" up to the line's end.
_HEADER = re.compile(r"(?im)\b(authorization|x-tc-authorization|wechatpay-signature|cookie|set-cookie)(\s*:\s*)"
                     r"(?![\"'\s]*\[redacted\])[^\r\n]+")
_PEM = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|$)", re.S)

_known: tuple[str, ...] = ()  # longest first; replaced whole, so readers need no lock
_known_lock = threading.Lock()
MIN_KNOWN_LENGTH = 8  # shorter literals would blank out ordinary words


def remember_secrets(*values: str | None) -> None:
    """Configured secrets (appsecret, APIv3 key, SMS key…) are also removed wherever they appear as is."""
    global _known
    with _known_lock:
        fresh = {v for v in values if v and len(v) >= MIN_KNOWN_LENGTH and v != REDACTED}
        _known = tuple(sorted(set(_known) | fresh, key=len, reverse=True))


def _pem_redacted(match: re.Match) -> str:
    kind = match.group(1)
    return f"-----BEGIN {kind}PRIVATE KEY-----{REDACTED}-----END {kind}PRIVATE KEY-----"


def scrub_credentials(text: str | None) -> str | None:
    """The text with every credential value replaced by [redacted]; None stays None."""
    if not text:
        return text
    text = _PEM.sub(_pem_redacted, text)
    text = _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _QUOTED.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(1)}{m.group(3)}{m.group(4)}{REDACTED}{m.group(4)}",
                       text)
    text = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    for secret in _known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
