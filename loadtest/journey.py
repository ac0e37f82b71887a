"""One candidate's walk through the real conversation, from following the account to paying and
asking for progress, with what each step answered."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import messages
from loadtest.cohort import Graduate, rejected_first
from loadtest.wechat import CustomMessage, Delivery, Phone

INSTITUTION = "北京市高等教育自学考试"
PAY_LINK = re.compile(r"https?://\S+?/pay/sandbox/[^\s，。]+")
PAID_PAGE = messages.PAY_PAGE["paid"].split("。")[0]  # "已支付"
PAYMENT_NOTICE = messages.PAYMENT_DONE.split("（")[0]  # "支付成功": the outbox's notification, not a reply
CHECKING = messages.PHOTO_CHECKING.split("，")[1]  # "正在检查"
APPROVED_NOTICE = messages.APPROVED.split("！")[0]  # "恭喜，您的毕业照片审核通过"
REJECTED_NOTICE = messages.REJECTED.split("，")[0]  # "您的照片审核未通过"
ALREADY_PAID = "无需再次付款"  # messages.PHOTO_PASSED_ALREADY_PAID: a new photo after a rejection
VERDICT_WAIT_SECONDS = 150.0
REVIEW_WAIT_SECONDS = 600.0  # how long a candidate whose photo is rejected waits for the message
# What each step's answer must contain for the walk to be on track.
EXPECTED = {
    "subscribe": "毕业证书照片采集",
    "institution": "学历层次",
    "level": "身份证号",
    "identity": "手机号",
    "phone": "准考证号",
    "confirm": "我知道了",
    "notice": "证件照",
    "photo": "/pay/sandbox/",
    "photo again": "/pay/sandbox/",
    "progress": ("审核中", "审核通过", "上传照片"),  # the reviewer may have decided already
    "photo anew": ALREADY_PAID,
}


def answer_expected(step: str, text: str) -> bool:
    wanted = EXPECTED[step]
    return any(part in text for part in ((wanted,) if isinstance(wanted, str) else wanted))


def is_payment_notice(message: CustomMessage) -> bool:
    return message.text.startswith(PAYMENT_NOTICE)


def is_approval(message: CustomMessage) -> bool:
    return message.text.startswith(APPROVED_NOTICE)


def is_rejection(message: CustomMessage) -> bool:
    return message.text.startswith(REJECTED_NOTICE)


def is_notice(message: CustomMessage) -> bool:
    """An event the outbox tells (payment, review verdict), not the answer to a message."""
    return is_payment_notice(message) or is_approval(message) or is_rejection(message)


def is_reply(message: CustomMessage) -> bool:
    return not is_notice(message)


def has_already_paid(message: CustomMessage) -> bool:
    return ALREADY_PAID in message.text


def has_pay_link(message: CustomMessage) -> bool:
    return PAY_LINK.search(message.text) is not None


@dataclass
class Walk:
    graduate: Graduate
    server: int
    deliveries: list[Delivery] = field(default_factory=list)
    pay_link: str | None = None
    paid: bool = False
    pay_seconds: float | None = None
    paid_at: float | None = None  # time.monotonic() when the paid page came back
    pay_errors: list[str] = field(default_factory=list)
    deferred_verdicts: int = 0
    rejected: bool = False  # the reviewer rejected the first photo, and the candidate heard of it
    crashed: str | None = None  # the load generator's own failure, if any

    def add(self, delivery: Delivery) -> Delivery:
        self.deliveries.append(delivery)
        return delivery


class Stopped(Exception):
    """The run was stopped (time limit or interrupted): walks end at their next step."""


class Progress:
    """Messages answered so far (for the fault that waits for mid-run), and the run's time limit."""

    def __init__(self, expected: int, limit_seconds: float):
        self.expected = expected
        self.deadline = time.monotonic() + limit_seconds
        self.stop = threading.Event()
        self._done = 0
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self._done += 1
        if self.stop.is_set() or time.monotonic() > self.deadline:
            raise Stopped("the run was stopped or ran out of time")

    @property
    def fraction(self) -> float:
        with self._lock:
            return self._done / max(1, self.expected)


MESSAGES_PER_WALK = 9


def walk(graduate: Graduate, phone: Phone, add_photo, progress: Progress, reject_every: int = 0) -> Walk:
    """subscribe → institution → level → name + ID → phone → confirm → notice → photo → pay → 进度; when
    staff reject the photo (every `reject_every`-th graduate), the rejection, then a new photo."""
    trail = Walk(graduate, phone.home)

    def step(delivery: Delivery) -> Delivery:
        progress.tick()
        return trail.add(delivery)

    try:
        step(phone.subscribe(wanted=is_reply))
        step(phone.text("institution", INSTITUTION, wanted=is_reply))
        step(phone.text("level", graduate.level_choice, wanted=is_reply))
        step(phone.text("identity", f"{graduate.name} {graduate.id_number}", wanted=is_reply))
        step(phone.text("phone", graduate.phone, wanted=is_reply))
        step(phone.text("confirm", "1", wanted=is_reply))
        step(phone.text("notice", "我知道了", wanted=is_reply))
        if add_photo is None:
            return trail  # no photo that passes the checker: the walk ends at the photo step
        trail.pay_link = send_photo(trail, phone, add_photo, "photo", step)
        if trail.pay_link is None:
            # Nothing came back: the candidate sends the photo again, as people do.
            trail.pay_link = send_photo(trail, phone, add_photo, "photo again", step)
        if trail.pay_link is not None:
            pay(trail, phone)
        if trail.paid:
            step(phone.text("progress", "进度", wanted=is_reply))
        if trail.paid and rejected_first(graduate.openid, reject_every):
            send_again_after_rejection(trail, phone, add_photo, step, progress)
    except Exception as exc:  # the walk's own bug, or the run's time limit: reported, never hidden
        trail.crashed = repr(exc)
    finally:
        phone.close()
    return trail


def send_again_after_rejection(trail: Walk, phone: Phone, add_photo, step, progress: Progress) -> None:
    """The candidate reads the reviewer's rejection and sends another photo (no second payment)."""
    deadline = time.monotonic() + REVIEW_WAIT_SECONDS
    while not trail.rejected and time.monotonic() < deadline and not progress.stop.is_set():
        heard = phone.inbox.wait(trail.graduate.openid, 0, min(5.0, deadline - time.monotonic()), is_rejection)
        trail.rejected = any(is_rejection(message) for message in heard)
    if trail.rejected:
        send_photo(trail, phone, add_photo, "photo anew", step, until=has_already_paid)


def send_photo(trail: Walk, phone: Phone, add_photo, step_name: str, step, until=has_pay_link) -> str | None:
    delivery = step(phone.image(step_name, add_photo(), wanted=is_reply))
    checking = any(CHECKING in text for text in delivery.texts)  # passive, or sent late as a message
    if checking and not any(until(CustomMessage(0, text)) for text in delivery.texts):
        # The check outlived the reply budget: the verdict follows as a customer-service message. The
        # candidate was asked not to send the photo again, and waits: if the process died mid-check, the
        # "deferred" job redoes it after [jobs] lost_work_after_minutes (1 in the run's config).
        trail.deferred_verdicts += 1
        delivery.custom = phone.replies_since(delivery.custom_before, is_reply, until=until,
                                              timeout=VERDICT_WAIT_SECONDS)
    for text in delivery.texts:
        match = PAY_LINK.search(text)
        if match:
            return urlparse(match.group(0)).path
    return None


def pay(trail: Walk, phone: Phone) -> None:
    """The sandbox page's real POST, through the load balancer like any page."""
    started = time.monotonic()
    response, trail.pay_errors = phone.open_page("POST", trail.pay_link)
    trail.pay_seconds = time.monotonic() - started
    trail.paid_at = time.monotonic()
    trail.paid = response is not None and PAID_PAGE in response.text
    if response is not None and not trail.paid:
        trail.pay_errors.append(f"page without {PAID_PAGE!r}")
