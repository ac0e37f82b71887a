"""The sandbox payment gateway of the embedded default: a page served by the app that completes the
payment when the candidate presses pay. Real WeChat Pay plugs in behind the same interface."""
from __future__ import annotations

import secrets

from flask import Blueprint, abort, render_template_string

import messages
from payments import pages
from payments.links import PayLinks
from payments.orders import confirm_payment
from store import queries

blueprint = Blueprint("sandbox_pay", __name__)
pages.add_error_pages(blueprint)

PAGE = pages.HEAD + """<p>{{ t.order.format(out_trade_no=order.out_trade_no) }}</p>
<p class="amount">¥{{ amount }}</p>
{% if order.status == "paid" %}
  <p><strong>{{ t.paid.format(review_hours=review_hours) }}</strong></p>
{% elif order.status == "closed" %}
  <p><strong>{{ closed_text }}</strong></p>
{% else %}
  <form method="post"><button type="submit">{{ t.pay_button.format(amount=amount) }}</button></form>
  <p class="note">{{ t.sandbox_note }}</p>
{% endif %}
</body></html>"""


class SandboxGateway:
    name = "sandbox"

    def __init__(self, public_base_url: str, secret_key: str):
        self.links = PayLinks(public_base_url, "/pay/sandbox", secret_key, salt="sandbox-pay")

    def checkout_url(self, out_trade_no: str) -> str:
        return self.links.url(out_trade_no)

    def trade_no(self, token: str) -> str:
        return self.links.trade_no(token)


@blueprint.get("/pay/sandbox/<token>")
def show(token: str):
    collector = pages.collector()
    with collector.db.read() as session:
        order = queries.order_by_trade_no(session, collector.payments.trade_no(token))
        if order is None:
            abort(404)
        return _page(order)


@blueprint.post("/pay/sandbox/<token>")
def pay(token: str):
    collector = pages.collector()
    with collector.db.session() as session:
        order = queries.order_by_trade_no(session, collector.payments.trade_no(token))
        if order is None:
            abort(404)
        # A replaced order stays unpayable here: unlike WeChat Pay, the sandbox can refuse the money.
        if order.status == "pending":
            confirm_payment(session, order, f"SANDBOX{secrets.token_hex(10).upper()}", collector.outbox)
        return _page(order)


def _page(order):
    return render_template_string(PAGE, t=messages.PAY_PAGE, order=order, amount=pages.price(order.amount_fen),
                                  closed_text=pages.closed_text(messages.PAY_PAGE, order),
                                  review_hours=pages.collector().settings.collection.review_hours)
