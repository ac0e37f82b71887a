"""The WeChat Pay pages: the payment page opened from the chat's link (the payer's openid learnt
through OAuth snsapi_base, then WeixinJSBridge's getBrandWCPayRequest), its status endpoint, and the
notification endpoint WeChat Pay posts to. Only the notification (or the periodic query) proves a
payment; what the browser reports only makes the page look again."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, jsonify, redirect, render_template_string, request, url_for
from sqlalchemy.exc import SQLAlchemyError
from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

import messages
from payments import pages, reconcile
from payments.wechatpay import NotificationRejected, WeChatPayError, WeChatPayGateway
from store import queries
from store.models import Order, utcnow

log = logging.getLogger(__name__)

blueprint = Blueprint("wechatpay", __name__)
pages.add_error_pages(blueprint, machine_endpoints=("wechatpay.status", "wechatpay.notify"))

PAGE = pages.HEAD + """{% if order %}<p>{{ t.order.format(out_trade_no=order.out_trade_no) }}</p>
<p class="amount">¥{{ amount }}</p>{% endif %}
{% if params %}
  <p><button id="pay" type="button">{{ t.pay_button.format(amount=amount) }}</button></p>
  <p class="note" id="note">{{ t.paying }}</p>
  <script type="application/json" id="pay-params">{{ params|tojson }}</script>
  <script>
  (function () {
    var params = JSON.parse(document.getElementById("pay-params").textContent);
    var note = document.getElementById("note");
    function poll() {
      note.textContent = {{ t.checking|tojson }};
      fetch({{ status_url|tojson }}, {cache: "no-store"}).then(function (r) { return r.json(); })
        .then(function (d) { if (d.status !== "pending") { location.reload(); } else { setTimeout(poll, 2000); } })
        .catch(function () { setTimeout(poll, 3000); });
    }
    function pay() {
      if (typeof WeixinJSBridge === "undefined") { note.textContent = {{ t.open_in_wechat|tojson }}; return; }
      // Whatever the callback says, only the server knows whether the money arrived.
      WeixinJSBridge.invoke("getBrandWCPayRequest", params, function () { poll(); });
    }
    document.getElementById("pay").addEventListener("click", pay);
    if (typeof WeixinJSBridge === "undefined") {
      document.addEventListener("WeixinJSBridgeReady", pay, false);
    } else { pay(); }
  })();
  </script>
{% else %}
  <p><strong>{{ text }}</strong></p>
  {% if retry_url %}<p><a class="button" href="{{ retry_url }}">{{ t.retry }}</a></p>{% endif %}
{% endif %}
</body></html>"""


def _gateway() -> WeChatPayGateway:
    return pages.collector().payments


@blueprint.get("/pay/wechat/<token>")
def show(token: str):
    gateway = _gateway()
    out_trade_no = gateway.trade_no(token)
    oauth = _oauth(token)
    code = request.args.get("code")
    if not code:
        return redirect(oauth.authorize_url)
    try:
        openid = oauth.fetch_access_token(code)["openid"]
    except (WeChatOAuthException, KeyError, OSError) as exc:  # a used or forged code, or WeChat unreachable
        log.warning("pay page %s: OAuth failed: %s", out_trade_no, exc)
        return _message(None, messages.WECHATPAY_PAGE["login_failed"], 400, retry_url=_page_url(token))
    order = _order(out_trade_no)
    if order.openid != openid:
        log.warning("pay page %s opened by %s, not by the order's %s", out_trade_no, openid, order.openid)
        return _message(order, messages.WECHATPAY_PAGE["wrong_payer"], 403)
    return _checkout(gateway, order, token)


def _checkout(gateway: WeChatPayGateway, order: Order, token: str):
    t = messages.WECHATPAY_PAGE
    if order.status == "paid":
        return _message(order, t["paid"].format(review_hours=pages.collector().settings.collection.review_hours))
    if order.status == "closed":
        return _message(order, pages.closed_text(t, order))
    now = utcnow()
    if now >= gateway.payable_until(order):
        return _message(order, t["expired"])
    try:
        prepay_id = gateway.ensure_prepay(pages.collector().db, order, now)
    except WeChatPayError as exc:
        log.error("order %s: JSAPI order failed: %s", order.out_trade_no, exc)
        return _message(order, t["unavailable"], 503, retry_url=_page_url(token))
    return render_template_string(PAGE, t=t, order=order, amount=pages.price(order.amount_fen),
                                  params=gateway.jsapi_params(prepay_id),
                                  status_url=url_for("wechatpay.status", token=token))


@blueprint.get("/pay/wechat/<token>/status")
def status(token: str):
    order = _order(_gateway().trade_no(token))
    response = jsonify({"status": order.status})
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/pay/notify")
def notify():
    """WeChat Pay's notifications. 204: taken (also when already known); 4xx: refused, with the
    reason; 5xx: we could not store it, so WeChat Pay tries again later."""
    collector = pages.collector()
    try:
        notification = collector.payments.parse_notification(request.headers, request.get_data())
        outcome = reconcile.apply_notification(collector, notification)
    except NotificationRejected as exc:
        log.warning("wechatpay notification refused: %s", exc.reason)
        return _fail(400, exc.reason)
    except SQLAlchemyError:
        log.exception("wechatpay notification could not be stored")
        return _fail(500, "could not store the notification")
    log.info("wechatpay notification %s (%s): %s", notification.id, notification.event_type, outcome)
    return "", 204


def _fail(status: int, message: str):
    return jsonify({"code": "FAIL", "message": message}), status


def _oauth(token: str) -> WeChatOAuth:
    wechat = pages.collector().settings.wechat
    oauth = _TimedOAuth(wechat.appid, wechat.secret, _page_url(token), scope="snsapi_base", state=token)
    oauth.API_BASE_URL, oauth.OAUTH_BASE_URL = wechat.sns_api_base_url, wechat.oauth_base_url
    oauth.timeout = wechat.http_timeout_seconds
    return oauth


class _TimedOAuth(WeChatOAuth):
    """wechatpy's OAuth client has no timeout of its own."""
    timeout: float = 3.0

    def _request(self, method, url_or_endpoint, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super()._request(method, url_or_endpoint, **kwargs)


def _page_url(token: str) -> str:
    return _gateway().links.url_of_token(token)


def _order(out_trade_no: str) -> Order:
    collector = pages.collector()
    with collector.db.read() as session:
        order = queries.order_by_trade_no(session, out_trade_no)
    if order is None:
        abort(404)
    return order


def _message(order: Order | None, text: str, status: int = 200, retry_url: str | None = None):
    amount = pages.price(order.amount_fen) if order is not None else ""
    page = render_template_string(PAGE, t=messages.WECHATPAY_PAGE, order=order, amount=amount, params=None,
                                  text=text, retry_url=retry_url)
    return page, status
