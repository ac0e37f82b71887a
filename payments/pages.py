"""What the sandbox and WeChat Pay pages share: the page head, the price tag, and the app's collector."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template_string, request
from werkzeug.exceptions import HTTPException

import messages
from payments.orders import ENDED_REASONS

# Both templates start with this and close </body></html> themselves; `t` is the page's texts.
HEAD = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t.title }}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:2em auto;padding:0 1em;color:#222}
.amount{font-size:2em;margin:.5em 0}button,a.button{display:inline-block;font-size:1.2em;padding:.6em 2em;
background:#07c160;color:#fff;border:0;border-radius:6px;text-decoration:none}.note{color:#666;font-size:.9em}</style>
</head><body>
<h1>{{ t.title }}</h1>
"""


def collector():
    return current_app.extensions["collector"]


def closed_text(t: dict[str, str], order) -> str:
    """What a closed order's page says: a new link is waiting, or the collection it was for ended
    (and any money paid for it goes back)."""
    if order.closed_reason not in ENDED_REASONS:
        return t["closed"]
    return t["ended_paid"] if order.transaction_id else t["ended"]


def price(fen: int) -> str:
    """The price tag on a page: always two decimals."""
    return f"{fen / 100:.2f}"


ERROR_PAGE = HEAD + "<p>{{ text }}</p>\n</body></html>"


def add_error_pages(blueprint: Blueprint, machine_endpoints: tuple[str, ...] = ()) -> None:
    """A candidate's pay page fails in Chinese, saying what to do (Flask's own pages are English); the
    blueprint's endpoints that programs read (`machine_endpoints`) keep their plain answers."""
    def page(error: HTTPException):
        if request.endpoint in machine_endpoints:
            return error
        title, text = messages.PAY_ERROR_PAGES[error.code]
        return render_template_string(ERROR_PAGE, t={"title": title}, text=text), error.code

    for code in messages.PAY_ERROR_PAGES:
        blueprint.register_error_handler(code, page)
