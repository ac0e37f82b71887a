"""After the run, in the database: every inbound message once in the transcript, every candidate in
the state its walk should have left it in, one paid order each, the payment told once."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import create_engine, text

from loadtest.journey import Walk


@dataclass
class DatabaseFindings:
    inbound_missing: int = 0  # messages sent that the transcript lacks
    inbound_doubled: int = 0  # messages the transcript holds more than once
    wrong_state: int = 0
    states: Counter = field(default_factory=Counter)
    paid_orders_doubled: int = 0
    paid_orders_missing: int = 0
    payment_notices_doubled: int = 0
    notifications_unsent: int = 0
    claims_left: int | None = None  # retry keys still claimed and not done
    deferred_left: int = 0  # slow photo checks never applied
    samples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return (self.inbound_missing + self.inbound_doubled + self.wrong_state + self.paid_orders_doubled
                + self.paid_orders_missing + self.payment_notices_doubled)

    def sample(self, line: str) -> None:
        if len(self.samples) < 8:
            self.samples.append(line)


def expected_state(trail: Walk) -> str:
    return "under_review" if trail.paid else "payment" if trail.pay_link else "photo"


def check_database(database_url: str, walks: list[Walk]) -> DatabaseFindings:
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
            notices = Counter((openid, channel) for openid, channel, _ in _rows(
                connection, "SELECT openid, channel, status FROM notifications "
                            "WHERE kind = 'payment_done' AND openid IN :openids", openids))
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
        _check_walk(findings, trail, inbound, states, paid, notices)
    return findings


def _rows(connection, sql: str, openids: list[str]):
    from sqlalchemy import bindparam

    return connection.execute(text(sql).bindparams(bindparam("openids", expanding=True)),
                              {"openids": openids}).all()


def _check_walk(findings: DatabaseFindings, trail: Walk, inbound: Counter, states: dict, paid: Counter,
                notices: Counter) -> None:
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
    if state != expected_state(trail):
        findings.wrong_state += 1
        findings.sample(f"{openid} is in {state}, its walk left it in {expected_state(trail)}")
    if paid[openid] > 1:
        findings.paid_orders_doubled += 1
        findings.sample(f"{openid} has {paid[openid]} paid orders")
    if trail.paid and paid[openid] == 0:
        findings.paid_orders_missing += 1
        findings.sample(f"{openid} saw the paid page but has no paid order")
    if any(notices[(openid, channel)] > 1 for channel in ("wechat", "sms")):
        findings.payment_notices_doubled += 1
        findings.sample(f"{openid} has more than one payment notification per channel")
