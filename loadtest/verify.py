"""After the run, in the database: every inbound message once in the transcript, every candidate in
the state its walk should have left it in, one paid order each, each event told once per channel and
every notification sent; and at the fakes: each notification delivered once (WeChat and SMS)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from loadtest.cohort import rejected_first
from loadtest.journey import Walk, is_approval, is_payment_notice, is_rejection

NOTIFIED_KINDS = ("payment_done", "approved", "rejected")


@dataclass
class DatabaseFindings:
    inbound_missing: int = 0  # messages sent that the transcript lacks
    inbound_doubled: int = 0  # messages the transcript holds more than once
    wrong_state: int = 0
    states: Counter = field(default_factory=Counter)
    paid_orders_doubled: int = 0
    paid_orders_missing: int = 0
    payment_notices_doubled: int = 0
    notices_wrong: int = 0  # candidates without exactly the notification rows their walk calls for
    notifications_unsent: int = 0
    claims_left: int | None = None  # retry keys still claimed and not done
    deferred_left: int = 0  # slow photo checks never applied
    samples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (self.inbound_missing + self.inbound_doubled + self.wrong_state + self.paid_orders_doubled
                + self.paid_orders_missing + self.payment_notices_doubled + self.notices_wrong
                + self.notifications_unsent)

    def sample(self, line: str) -> None:
        if len(self.samples) < 8:
            self.samples.append(line)


def expected_state(trail: Walk, reviewed: bool = False) -> str:
    if trail.paid:
        return "approved" if reviewed else "under_review"
    return "payment" if trail.pay_link else "photo"


def expected_notices(trail: Walk, reviewed: bool, reject_every: int) -> dict[str, int]:
    """How many times each event must be told to this candidate (per channel)."""
    paid = int(trail.paid)
    rejected = int(reviewed and trail.paid and rejected_first(trail.graduate.openid, reject_every))
    return {"payment_done": paid, "approved": paid if reviewed else 0, "rejected": rejected}


def check_database(database_url: str, walks: list[Walk], reviewed: bool = False,
                   reject_every: int = 0) -> DatabaseFindings:
    findings = DatabaseFindings()
    openids = [trail.graduate.openid for trail in walks]
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = _rows(connection, "SELECT openid, wechat_msg_id, content FROM messages "
                                     "WHERE direction = 'in' AND openid IN :openids", openids)
            inbound = Counter((openid, msg_id or content) for openid, msg_id, content in rows)
            states = dict(_rows(connection, "SELECT openid, state FROM candidates WHERE openid IN :openids",
                                openids))
            paid = Counter(openid for (openid,) in _rows(
                connection, "SELECT openid FROM orders WHERE status = 'paid' AND openid IN :openids", openids))
            notices = Counter((openid, kind, channel) for openid, kind, channel in _rows(
                connection, "SELECT openid, kind, channel FROM notifications "
                            "WHERE kind IN ('payment_done', 'approved', 'rejected') AND openid IN :openids",
                openids))
            findings.notifications_unsent = connection.execute(text(
                "SELECT count(*) FROM notifications WHERE status <> 'sent'")).scalar_one()
            findings.deferred_left = connection.execute(text(
                "SELECT count(*) FROM messages WHERE pending IS NOT NULL")).scalar_one()
            try:
                findings.claims_left = connection.execute(text(
                    "SELECT count(*) FROM inbound_keys WHERE done = false")).scalar_one()
            except Exception:  # the retry keys may live elsewhere (Redis) once issue 8 is fixed
                connection.rollback()
    finally:
        engine.dispose()
    for trail in walks:
        _check_walk(findings, trail, inbound, states, paid, notices, reviewed, reject_every)
    return findings


def _rows(connection, sql: str, openids: list[str]):
    from sqlalchemy import bindparam

    return connection.execute(text(sql).bindparams(bindparam("openids", expanding=True)),
                              {"openids": openids}).all()


def _check_walk(findings: DatabaseFindings, trail: Walk, inbound: Counter, states: dict, paid: Counter,
                notices: Counter, reviewed: bool, reject_every: int) -> None:
    openid = trail.graduate.openid
    for delivery in trail.deliveries:
        key = (openid, str(delivery.msg_id) if delivery.msg_id is not None else "[event subscribe]")
        times = inbound.get(key, 0)
        if times == 0:
            findings.inbound_missing += 1
            findings.sample(f"{openid} {delivery.step} (MsgId {delivery.msg_id}) is not in the transcript")
        elif times > 1:
            findings.inbound_doubled += 1
            findings.sample(f"{openid} {delivery.step} (MsgId {delivery.msg_id}) is in the transcript {times}×")
    state = states.get(openid, "(none)")
    findings.states[state] += 1
    expected = expected_state(trail, reviewed)
    if state != expected:
        findings.wrong_state += 1
        findings.sample(f"{openid} is in {state}, its walk left it in {expected}")
    if paid[openid] > 1:
        findings.paid_orders_doubled += 1
        findings.sample(f"{openid} has {paid[openid]} paid orders")
    if trail.paid and paid[openid] == 0:
        findings.paid_orders_missing += 1
        findings.sample(f"{openid} saw the paid page but has no paid order")
    if any(notices[(openid, "payment_done", channel)] > 1 for channel in ("wechat", "sms")):
        findings.payment_notices_doubled += 1
        findings.sample(f"{openid} has more than one payment notification per channel")
    wanted = expected_notices(trail, reviewed, reject_every)
    rows = {(kind, channel): notices[(openid, kind, channel)] for kind in NOTIFIED_KINDS for channel in ("wechat", "sms")}
    wrong = [f"{kind}/{channel} {n}× (want {wanted[kind]})" for (kind, channel), n in rows.items() if n != wanted[kind]]
    if wrong:
        findings.notices_wrong += 1
        findings.sample(f"{openid} notification rows: {', '.join(wrong)}")


@dataclass
class Deliveries:
    """Each event's deliveries as the fakes counted them: candidates who got it once, never, twice or more."""
    once: Counter = field(default_factory=Counter)  # (channel, kind) -> candidates
    missing: Counter = field(default_factory=Counter)
    doubled: Counter = field(default_factory=Counter)
    unexpected: Counter = field(default_factory=Counter)  # received without the event having happened
    samples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return sum(self.missing.values()) + sum(self.doubled.values()) + sum(self.unexpected.values())

    def render(self) -> str:
        keys = sorted(set(self.once) | set(self.missing) | set(self.doubled) | set(self.unexpected))
        return "; ".join(f"{channel} {kind} once {self.once[(channel, kind)]}, missing {self.missing[(channel, kind)]}, "
                         f"twice+ {self.doubled[(channel, kind)]}" + (f", unexpected {self.unexpected[(channel, kind)]}"
                                                                       if self.unexpected[(channel, kind)] else "")
                         for channel, kind in keys)


WECHAT_KINDS = {"payment_done": is_payment_notice, "approved": is_approval, "rejected": is_rejection}


def check_deliveries(walks: list[Walk], inbox, sms_sent: list | None, reviewed: bool,
                     reject_every: int) -> Deliveries:
    """Every event told once: the fake WeChat API's customer-service messages, and the fake SMS
    provider's messages (by number and template) when the run has one."""
    from loadtest.cluster import SMS_TEMPLATES

    found = Deliveries()
    by_phone = Counter((sms.phone[-11:], sms.template_id) for sms in sms_sent or [])
    for trail in walks:
        wanted = expected_notices(trail, reviewed, reject_every)
        received = inbox.messages(trail.graduate.openid)
        for kind, matches in WECHAT_KINDS.items():
            _count(found, trail, "wechat", kind, wanted[kind], sum(matches(m) for m in received))
            if sms_sent is not None:
                _count(found, trail, "sms", kind, wanted[kind], by_phone[(trail.graduate.phone, SMS_TEMPLATES[kind])])
    return found


def _count(found: Deliveries, trail: Walk, channel: str, kind: str, wanted: int, times: int) -> None:
    key = (channel, kind)
    if wanted == 0:
        if times:
            found.unexpected[key] += 1
            _sample(found, f"{trail.graduate.openid} received {kind} by {channel} {times}× without the event")
        return
    if times == 1:
        found.once[key] += 1
    elif times == 0:
        found.missing[key] += 1
        _sample(found, f"{trail.graduate.openid} never received {kind} by {channel}")
    else:
        found.doubled[key] += 1
        _sample(found, f"{trail.graduate.openid} received {kind} by {channel} {times}×")


def _sample(found: Deliveries, line: str) -> None:
    if len(found.samples) < 8:
        found.samples.append(line)


@dataclass
class UnrecordedWindow:
    """How long each notification stayed sent at the provider but unrecorded in the outbox: a worker
    killed inside that time leaves the row to be sent again once its lease runs out."""
    windows_ms: list[float]  # notifications sent on their first attempt
    run_seconds: float
    consumers: int
    retried: dict[str, int] = field(default_factory=dict)  # channel -> rows sent on a later attempt

    def percentile(self, share: float) -> float:
        ordered = sorted(self.windows_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0

    @property
    def exposed_share(self) -> float:
        """The share of a consumer's time with such a message in flight: the chance that killing one
        consumer at a random moment doubles at least one notification (roughly, for small shares)."""
        busy = sum(self.windows_ms) / 1000
        return busy / (self.run_seconds * max(self.consumers, 1)) if self.run_seconds else 0.0

    def render(self) -> str:
        return (f"{len(self.windows_ms)} notifications, accepted→known p50 {self.percentile(0.5):.1f} ms, "
                f"p99 {self.percentile(0.99):.1f} ms, max {max(self.windows_ms, default=0):.1f} ms; "
                f"a consumer killed at random doubles one with ~{self.exposed_share:.1%} chance; sent on a later "
                f"attempt (a failure, or a worker that died): "
                + (", ".join(f"{channel} {n}" for channel, n in sorted(self.retried.items())) or "none"))


def unrecorded_window(database_url: str, walks: list[Walk], wechat_accepted: list[tuple[str, float]],
                      sms_sent: list | None, run_seconds: float, consumers: int) -> UnrecordedWindow:
    """Matches each sent notification with the provider's last acceptance for its recipient before the
    outbox knew it was sent (`sent_at`, stamped as the provider's answer is read, before recording)."""
    accepted: dict[tuple[str, str], list[float]] = {}
    for openid, at in wechat_accepted:
        accepted.setdefault(("wechat", openid), []).append(at)
    openid_of = {trail.graduate.phone: trail.graduate.openid for trail in walks}
    for sms in sms_sent or []:
        accepted.setdefault(("sms", openid_of.get(sms.phone[-11:], "")), []).append(sms.accepted_at)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT channel, openid, sent_at, attempts FROM notifications "
                                           "WHERE status = 'sent' AND sent_at IS NOT NULL")).all()
    finally:
        engine.dispose()
    windows, retried = [], Counter()
    for channel, openid, sent_at, attempts in rows:
        if attempts > 1:  # its sent_at is the later attempt's, not when the first one was accepted
            retried[channel] += 1
            continue
        known = sent_at.timestamp()
        before = [at for at in accepted.get((channel, openid), []) if at <= known]
        if before:
            windows.append((known - max(before)) * 1000)
    return UnrecordedWindow(windows, run_seconds, consumers, dict(retried))
