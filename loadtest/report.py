"""What a run measured, and the table it prints."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import messages
from loadtest.journey import EXPECTED, PAY_LINK, Walk, answer_expected, is_approval, is_notice, is_payment_notice
from loadtest.verify import DatabaseFindings, Deliveries, UnrecordedWindow
from loadtest.wechat import Inbox

STEP_ORDER = list(EXPECTED)


@dataclass
class Fault:
    server: str
    at_seconds: float  # into the run
    in_flight: int  # requests the killed process was working on
    back_after: float | None = None  # seconds from the kill until it answered /healthz again


@dataclass
class RunResult:
    label: str
    candidates: int
    concurrency: int
    servers: int
    seconds: float
    walks: list[Walk]
    inbox: Inbox
    database: DatabaseFindings | None = None
    fault: Fault | None = None
    server_tracebacks: int = 0
    notes: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # the production profile's faults, as they happened
    reviews: Counter | None = None  # the reviewer's decisions and failures, when staff review during the run
    notified: Deliveries | None = None  # each event told once, as the fakes counted
    unrecorded: UnrecordedWindow | None = None  # sent at the provider, not yet recorded: the outbox's exposure
    load: str = ""  # the machine's load average at the start and the end

    # --- the counts ---------------------------------------------------------------------------

    @property
    def deliveries(self):
        return [delivery for trail in self.walks for delivery in trail.deliveries]

    def counts(self) -> dict[str, int]:
        deliveries = self.deliveries
        dup, links = self.doubled()
        return {
            "messages": len(deliveries),
            "passive": sum(d.passive is not None for d in deliveries),
            "custom": sum(d.passive is None and bool(d.custom) for d in deliveries),
            "missing": sum(not d.answered for d in deliveries),
            "duplicates": dup,
            "two pay links": links,
            "errors": sum(len(d.errors) for d in deliveries) + sum(len(t.pay_errors) for t in self.walks)
            + sum(t.crashed is not None for t in self.walks),
            "timeouts": sum(d.timeouts for d in deliveries),
            "retries": sum(d.attempts - 1 for d in deliveries),
            "empty answers": sum(d.empty_answers for d in deliveries),
            "system busy": sum(any(messages.SYSTEM_ERROR in t for t in d.texts) for d in deliveries),
            "unexpected": sum(d.answered and not any(answer_expected(d.step, t) for t in d.texts) for d in deliveries),
            "deferred verdicts": sum(t.deferred_verdicts for t in self.walks),
            "late custom": self.late_custom(),
            "walks stopped": sum(t.crashed is not None for t in self.walks),
            "paid": sum(t.paid for t in self.walks),
            "rejected and sent anew": sum(t.rejected for t in self.walks),
            "photo resent": sum(any(d.step == "photo again" for d in t.deliveries) for t in self.walks),
        }

    def doubled(self) -> tuple[int, int]:
        """(replies the candidate received twice, candidates who received more than one pay link)."""
        duplicates = two_links = 0
        for trail in self.walks:
            duplicates += len(self.repeated(trail))
            received = [d.passive for d in trail.deliveries if d.passive is not None]
            received += [m.text for m in self.inbox.messages(trail.graduate.openid)]
            two_links += sum(PAY_LINK.search(text) is not None for text in received) > 1
        return duplicates, two_links

    def repeated(self, trail: Walk) -> list[str]:
        """Customer-service messages repeating what the candidate had already received. (Two passive
        replies alike answer two messages alike: WeChat passes on one reply per message.)"""
        seen = {d.passive for d in trail.deliveries if d.passive is not None}
        repeats = []
        for message in self.inbox.messages(trail.graduate.openid):
            if message.text in seen:
                repeats.append(message.text)
            seen.add(message.text)
        return repeats

    def late_custom(self) -> int:
        """Customer-service replies that came after their message had been counted as unanswered."""
        late = 0
        for trail in self.walks:
            attributed = sum(len(d.custom) for d in trail.deliveries)
            replies = [m for m in self.inbox.messages(trail.graduate.openid) if not is_notice(m)]
            late += max(0, len(replies) - attributed)
        return late

    def approval_seconds(self) -> list[float]:
        """Milliseconds from each paid page to the first approval message (the last review, if rejected first)."""
        found = []
        for trail in self.walks:
            approvals = [m.at for m in self.inbox.messages(trail.graduate.openid) if is_approval(m)]
            if trail.paid_at is not None and approvals:
                found.append((approvals[0] - trail.paid_at) * 1000)
        return found

    def payment_notices(self) -> Counter:
        """How many "支付成功" messages each paying candidate received: {times: candidates}."""
        return Counter(sum(is_payment_notice(m) for m in self.inbox.messages(t.graduate.openid))
                       for t in self.walks if t.paid)

    @property
    def failed(self) -> bool:
        counts = self.counts()
        return bool(counts["missing"] or counts["duplicates"] or counts["two pay links"]
                    or any(t.crashed for t in self.walks)
                    or (self.database is not None and self.database.problems)
                    or (self.notified is not None and self.notified.problems)
                    or any(times != 1 for times in self.payment_notices()))

    # --- the table ----------------------------------------------------------------------------

    def render(self) -> str:
        counts = self.counts()
        answered = counts["messages"] - counts["missing"]
        lines = [f"== {self.label}: {self.candidates} candidates, {self.concurrency} at a time, "
                 f"{self.servers} server process(es), {self.seconds:.0f} s, "
                 f"{answered / self.seconds if self.seconds else math.nan:.1f} answered messages/s"]
        if self.load:
            lines.append(f"   load average (1 min) {self.load}")
        if self.fault:
            back = f"back after {self.fault.back_after:.1f} s" if self.fault.back_after is not None else "not back"
            lines.append(f"   fault: SIGKILL {self.fault.server} at {self.fault.at_seconds:.0f} s with "
                         f"{self.fault.in_flight} request(s) in flight; restarted, {back}")
        lines += [f"   fault: {event}" for event in self.events]
        lines.append("   " + "  ".join(f"{name} {value}" for name, value in counts.items()))
        notices = self.payment_notices()
        lines.append("   payment notices received per paying candidate: "
                     + ", ".join(f"{times}×: {n}" for times, n in sorted(notices.items())))
        lines.append(f"   {'step':<12}{'messages':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'via CS':>8}"
                     f"{'missing':>9}{'retried':>9}")
        by_step = defaultdict(list)
        for delivery in self.deliveries:
            by_step[delivery.step].append(delivery)
        for step in STEP_ORDER:
            if step in by_step:
                lines.append("   " + _step_row(step, by_step[step]))
        pay = sorted(t.pay_seconds * 1000 for t in self.walks if t.pay_seconds is not None)
        if pay:
            lines.append(f"   {'pay (POST)':<12}{len(pay):>9}{percentile(pay, .5):>9.0f}{percentile(pay, .99):>9.0f}"
                         f"{pay[-1]:>9.0f}")
        approved = sorted(self.approval_seconds())
        if approved:
            lines.append(f"   {'paid→approved':<14}{len(approved):>7}{percentile(approved, .5):>9.0f}"
                         f"{percentile(approved, .99):>9.0f}{approved[-1]:>9.0f}  (ms from the paid page to the "
                         f"approval message, review included)")
        if self.reviews is not None:
            lines.append("   reviewer: " + ", ".join(f"{key} {n}" for key, n in sorted(self.reviews.items())))
        if self.notified is not None:
            lines.append("   delivered: " + self.notified.render())
            lines += [f"     - {sample}" for sample in self.notified.samples]
        if self.unrecorded is not None:
            lines.append("   unrecorded window: " + self.unrecorded.render())
        if self.database is not None:
            lines += ["   database: " + _database_line(self.database)]
            lines += [f"     - {sample}" for sample in self.database.samples]
        lines.append(f"   server logs: {self.server_tracebacks} traceback(s)")
        lines += [f"   {note}" for note in self.notes]
        lines += [f"   sample: {sample}" for sample in self.samples()]
        lines.append(f"   verdict: {'FAIL' if self.failed else 'ok'}")
        return "\n".join(lines)

    def samples(self, limit: int = 12) -> list[str]:
        found = [f"{trail.graduate.openid}: the walk stopped: {trail.crashed}" for trail in self.walks
                 if trail.crashed]
        for trail in self.walks:
            if trail.pay_link and not trail.paid:
                found.append(f"{trail.graduate.openid}: could not pay: {trail.pay_errors[:5]}")
            for text in self.repeated(trail):
                found.append(f"{trail.graduate.openid}: received again {text[:50]!r}")
            for d in trail.deliveries:
                if not d.answered:
                    found.append(f"{trail.graduate.openid} {d.step}: no reply after {d.attempts} tries "
                                 f"({d.timeouts} timeouts, {d.empty_answers} empty, errors {d.errors[:3]})")
                elif not any(answer_expected(d.step, t) for t in d.texts):
                    found.append(f"{trail.graduate.openid} {d.step}: unexpected reply {d.texts[0][:60]!r}")
        return found[:limit]


def _step_row(step: str, deliveries) -> str:
    latencies = sorted(d.latency * 1000 for d in deliveries if d.answered)
    return (f"{step:<12}{len(deliveries):>9}{percentile(latencies, .5):>9.0f}{percentile(latencies, .99):>9.0f}"
            f"{(latencies[-1] if latencies else math.nan):>9.0f}"
            f"{sum(d.passive is None and bool(d.custom) for d in deliveries):>8}"
            f"{sum(not d.answered for d in deliveries):>9}{sum(d.attempts > 1 for d in deliveries):>9}")


def _database_line(found: DatabaseFindings) -> str:
    states = ", ".join(f"{state} {n}" for state, n in found.states.most_common())
    claims = "?" if found.claims_left is None else found.claims_left
    return (f"inbound missing {found.inbound_missing}, doubled {found.inbound_doubled}; wrong state "
            f"{found.wrong_state} ({states}); paid orders doubled {found.paid_orders_doubled}, missing "
            f"{found.paid_orders_missing}; payment notices doubled {found.payment_notices_doubled}; "
            f"notifications not sent {found.notifications_unsent}; claims left {claims}; "
            f"photo checks never applied {found.deferred_left}")


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[max(index, 0)]


def summary_table(results: list[RunResult]) -> str:
    width = max([22] + [len(result.label) + 2 for result in results])
    header = (f"{'run':<{width}}{'msgs':>6}{'passive':>8}{'CS':>5}{'missing':>8}{'dup':>5}{'2 links':>8}{'errors':>7}"
              f"{'timeouts':>9}{'msg/s':>7}{'db':>5}  verdict")
    rows = [header]
    for result in results:
        c = result.counts()
        rate = (c["messages"] - c["missing"]) / result.seconds if result.seconds else math.nan
        db = result.database.problems if result.database is not None else "-"
        rows.append(f"{result.label:<{width}}{c['messages']:>6}{c['passive']:>8}{c['custom']:>5}{c['missing']:>8}"
                    f"{c['duplicates']:>5}{c['two pay links']:>8}{c['errors']:>7}{c['timeouts']:>9}{rate:>7.1f}"
                    f"{db:>5}  {'FAIL' if result.failed else 'ok'}")
    return "\n".join(rows)
