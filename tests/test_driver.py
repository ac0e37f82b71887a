"""The webhook's hot statements run on the database driver (store/driver.py), past SQLAlchemy's execution
layer: what that layer did for them must still happen. Sealed columns are sealed with the key ring of the
app that writes them, a driver error comes out as SQLAlchemy's, and a statement that would need a default
or an onupdate filled in is refused when it is built. Connection loss under them: tests/test_connection_loss.py."""
from __future__ import annotations

import base64
import secrets

import pytest
from sqlalchemy import Text, bindparam, insert, select, type_coerce, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from bot.retries import _CLAIMS
from store import driver, queries
from store.models import Candidate, InboundKey, Message, utcnow
from store.sealed import OPEN
from tests.conftest import simulator_for
from tests.staff_fixtures import db

TYPED = "身份证 11010519491231002X 收到了吗"


def random_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def fresh_privacy() -> dict:
    return {"keys": {"1": random_key()}, "active_key": "1", "lookup_key": random_key()}


def test_each_app_seals_the_transcript_with_its_own_keys(make_app):
    """Two apps in one process, each with its own keys (as two tenants' or a test's would be): the
    compiled statement is shared, the key ring is each app's."""
    first, second = make_app(privacy=fresh_privacy()), make_app(privacy=fresh_privacy())
    for app, openid in ((first, "o_keys_first"), (second, "o_keys_second")):
        simulator_for(app).text(openid, TYPED)
    for app, openid in ((first, "o_keys_first"), (second, "o_keys_second")):
        with db(app).read() as session:
            assert session.scalar(select(Message.content).where(Message.openid == openid,
                                                                 Message.direction == "in")) == TYPED
            stored = session.scalar(select(type_coerce(Message.content, Text)).where(
                Message.openid == openid, Message.direction == "in"))
        assert "1949" not in stored and OPEN in stored


CLAIM_ROW_INSERT = driver.DriverStatement(insert(_CLAIMS), ["key", "done", "created_at", "owner", "lease_until",
                                                             "waiting_until"])
CLAIM_ROW = {"key": "msg:twice", "done": False, "created_at": utcnow(), "owner": "test", "lease_until": None,
             "waiting_until": None}


def test_a_driver_error_comes_out_as_sqlalchemys_and_the_session_rolls_back(app):
    duplicate, row = CLAIM_ROW_INSERT, CLAIM_ROW
    with db(app).session() as session:
        driver.execute(session, duplicate, row)
    with pytest.raises(IntegrityError):
        with db(app).session() as session:
            driver.execute(session, duplicate, row)
    with db(app).read() as session:
        assert session.scalars(select(InboundKey.owner).where(InboundKey.key == "msg:twice")).all() == ["test"]


def test_the_candidate_read_on_the_driver_is_the_sessions_own_object(app, wechat):
    """Loaded without the ORM's query, it behaves as if loaded by it: changes are flushed (with the hash of
    a sealed column and the onupdate time), and one the session holds already is returned as it is."""
    wechat.event("o_driver_candidate", "subscribe")
    with db(app).session() as session:
        candidate = queries.candidate_for(session, "o_driver_candidate", lock=True)
        assert not session.dirty and candidate in session
        before = candidate.updated_at
        candidate.phone = "13800138000"
        assert queries.candidate_for(session, "o_driver_candidate") is candidate
    with db(app).read() as session:
        stored = session.scalar(select(Candidate).where(Candidate.phone == "13800138000"))
        assert stored is not None and stored.openid == "o_driver_candidate" and stored.updated_at > before


def test_a_statement_that_would_need_a_default_or_an_onupdate_is_refused():
    columns = ["openid", "direction", "channel", "msg_type", "content"]  # no created_at: its default is utcnow
    with pytest.raises(TypeError, match="created_at"):
        driver.DriverStatement(insert(Message.__table__), columns)
    with pytest.raises(TypeError, match="names the columns"):
        driver.DriverStatement(insert(Message.__table__))
    with pytest.raises(TypeError, match="updated_at"):  # its onupdate stamps every change
        driver.DriverStatement(update(Candidate.__table__).values(state="photo"))


def test_a_parameter_left_out_is_refused_before_anything_runs(app):
    """The statement's own values (done=True) go in without the caller; one the caller must give and
    did not is an error that names it, as SQLAlchemy's would be, not a NULL written in its place."""
    settle = driver.DriverStatement(update(_CLAIMS).where(_CLAIMS.c.key == bindparam("claim_key"))
                                    .values(done=True, reply_xml=bindparam("xml")))
    with db(app).session() as session:
        driver.execute(session, CLAIM_ROW_INSERT, {**CLAIM_ROW, "key": "msg:left-out"})
    with pytest.raises(InvalidRequestError, match="'xml'"):
        with db(app).session() as session:
            driver.execute(session, settle, {"claim_key": "msg:left-out"})
    with db(app).session() as session:
        driver.execute(session, settle, {"claim_key": "msg:left-out", "xml": "<xml/>"})
    with db(app).read() as session:
        row = session.get(InboundKey, "msg:left-out")
        assert (row.done, row.reply_xml) == (True, "<xml/>")
