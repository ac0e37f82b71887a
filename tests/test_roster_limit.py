"""The global limit on roster look-ups (many accounts probing ID numbers), through the webhook."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from rules.identity import check_digit
from store.models import AlertMark, MatchAttempt
from tests.conftest import simulator_for
from tests.journey import GRADUATES, Chat, seed_roster

ALERT = "ALERT roster look-ups over the global limit"


def made_up_id(n: int) -> str:
    first17 = f"11010119900101{n:03d}"
    return first17 + check_digit(first17)


class Candidate(Chat):
    """At the identity step, with the name and ID number they will send (the roster is looked up then)."""

    def __init__(self, app, openid: str, name: str, id_number: str, level: str):
        super().__init__(app, simulator_for(app), None, openid=openid)
        self.identity = f"{name} {id_number}"
        self.subscribe()
        self.say("北京市高等教育自学考试")
        self.say(level)

    def look_up(self) -> str:
        return self.say(self.identity)


def at_identity(app, openid: str, name: str, id_number: str, level: str = "本科") -> Candidate:
    return Candidate(app, openid, name, id_number, level)


def pass_time(app, **delta) -> None:
    """Moves every recorded look-up back in time, as if that much time had passed."""
    with app.extensions["collector"].db.session() as session:
        for attempt in session.scalars(select(MatchAttempt)):
            attempt.created_at -= timedelta(**delta)


def alerts_in(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if ALERT in r.getMessage()]


def test_many_accounts_hit_the_per_minute_limit_then_a_real_candidate_is_matched(make_app, caplog):
    app = make_app(collection={"max_roster_lookups_per_minute": 5, "max_roster_lookups_per_hour": 100,
                               "max_failed_matches_per_hour": 5})
    seed_roster(app)
    caplog.set_level(logging.WARNING, logger="handlers.roster_limit")
    probers = [at_identity(app, f"o_prober_{i}", "王五", made_up_id(i)) for i in range(12)]
    real = at_identity(app, "o_real", GRADUATES[0]["name"], GRADUATES[0]["id_number"])

    replies = [chat.look_up() for chat in probers]

    assert all("无法采集" in reply for reply in replies[:5]), replies[:5]
    refused = replies[5:]
    assert all("稍后再试" in reply and "1分钟后" in reply and "010-58691620" in reply for reply in refused), refused
    assert [chat.state() for chat in probers[5:]] == ["identity"] * 7
    busy = real.look_up()
    assert "稍后再试" in busy and "回复“核对”" in busy and "手机号" not in busy
    assert len(alerts_in(caplog)) == 1, alerts_in(caplog)
    assert "5 in the last minute (limit 5)" in alerts_in(caplog)[0]
    assert "110101" not in alerts_in(caplog)[0]  # no ID number, no openid: only counts

    pass_time(app, seconds=61)
    found = real.say("核对")  # name and ID number were kept: 核对 is enough
    assert "已在毕业生名单中找到您" in found, found
    assert real.state() == "phone"


def test_the_per_hour_limit_says_how_long_to_wait(make_app, caplog):
    app = make_app(collection={"max_roster_lookups_per_minute": 0, "max_roster_lookups_per_hour": 3})
    seed_roster(app)
    caplog.set_level(logging.WARNING, logger="handlers.roster_limit")
    for i in range(3):
        assert "无法采集" in at_identity(app, f"o_prober_{i}", "王五", made_up_id(i)).look_up()
    pass_time(app, minutes=20)
    real = at_identity(app, "o_real", GRADUATES[1]["name"], GRADUATES[1]["id_number"], level="专科")

    busy = real.look_up()
    again = real.say("核对")

    assert "稍后再试" in busy and "40分钟后" in busy, busy
    assert "稍后再试" in again
    assert len(alerts_in(caplog)) == 1 and "in the last hour (limit 3)" in alerts_in(caplog)[0]
    pass_time(app, minutes=41)
    assert "已在毕业生名单中找到您" in real.say("核对")


def test_a_lookup_refused_by_the_global_limit_does_not_count_against_the_account(make_app):
    app = make_app(collection={"max_roster_lookups_per_minute": 1, "max_roster_lookups_per_hour": 100,
                               "max_failed_matches_per_hour": 2})
    seed_roster(app)
    at_identity(app, "o_other", "王五", made_up_id(1)).look_up()
    real = at_identity(app, "o_real", GRADUATES[0]["name"], GRADUATES[0]["id_number"])
    for _ in range(4):
        assert "稍后再试" in real.look_up()
    pass_time(app, seconds=61)
    assert "已在毕业生名单中找到您" in real.look_up()


def test_the_alert_is_logged_once_an_interval_by_all_processes_together(make_app, caplog):
    config = {"collection": {"max_roster_lookups_per_minute": 2, "max_roster_lookups_per_hour": 100}}
    first, second = make_app(**config), make_app(**config)  # two server processes on one database
    seed_roster(first)
    caplog.set_level(logging.WARNING, logger="handlers.roster_limit")
    for i in range(2):
        at_identity(first, f"o_prober_{i}", "王五", made_up_id(i)).look_up()

    refused = [at_identity(app, f"o_more_{i}_{n}", "王五", made_up_id(10 + i)).look_up()
               for n, app in enumerate((first, second, first, second)) for i in range(2)]

    assert all("稍后再试" in reply for reply in refused)
    assert len(alerts_in(caplog)) == 1
    pass_time(first, seconds=61)  # a minute later the limit is still hit, by new look-ups: a new alert
    for i in range(2):
        at_identity(second, f"o_late_{i}", "王五", made_up_id(30 + i)).look_up()
    with first.extensions["collector"].db.session() as session:
        for mark in session.scalars(select(AlertMark)):
            mark.quiet_until -= timedelta(seconds=61)
    assert "稍后再试" in at_identity(first, "o_last", "王五", made_up_id(40)).look_up()
    assert len(alerts_in(caplog)) == 2
