"""How the encrypted columns behave at their edges (store/sealed.py): what the database holds for a typed
ID number, what a candidate cannot forge into a transcript, what a query on an encrypted column may do,
and what a tampered value gets. The whole-journey proof is tests/test_no_plaintext.py."""
from __future__ import annotations

import pytest
from sqlalchemy import Text, select, type_coerce, update

from store.crypto import DecryptError, KeyRing
from store.models import Candidate, Message, RosterEntry
from store.sealed import CLOSE, OPEN
from tests.staff_fixtures import db

ID_NUMBER = "11010519491231002X"


def raw_contents(app, openid: str) -> list[str]:
    with db(app).session() as session:
        return list(session.scalars(select(type_coerce(Message.content, Text)).where(Message.openid == openid)
                                    .order_by(Message.id)))


def test_an_id_number_typed_with_spaces_is_sealed_and_read_back_as_typed(app, wechat):
    typed = "我的身份证 1101 0519 4912 3100 2x 谢谢"
    wechat.text("o_spaces", typed)
    stored = raw_contents(app, "o_spaces")[0]
    assert "1101" not in stored and "谢谢" in stored and OPEN in stored  # the rest of the text stays readable
    with db(app).session() as session:
        assert session.scalar(select(Message.content).where(Message.openid == "o_spaces")) == typed
        # Searchable by the number (its digits' keyed hash), however it was spaced.
        found = session.scalars(select(Message.openid).where(Message.content.contains(ID_NUMBER.lower()))).all()
        assert found == ["o_spaces"]


def test_a_phone_number_run_together_with_a_list_number_is_still_found_by_itself(app, wechat):
    wechat.text("o_listed", "（1）13800138000（2）11010519491231002X")  # one run of 31 digits and brackets
    stored = raw_contents(app, "o_listed")[0]
    assert "13800138000" not in stored and "1949" not in stored
    with db(app).session() as session:
        for number in ("13800138000", ID_NUMBER):
            found = session.scalars(select(Message.openid).where(Message.content.contains(number))).all()
            assert found == ["o_listed"], number
        assert session.scalars(select(Message.openid).where(Message.content.contains("13900139000"))).all() == []


def test_short_numbers_stay_readable_in_the_transcript(app, wechat):
    wechat.text("o_short", "第2次，验证码 123456，2026-06-30")
    assert raw_contents(app, "o_short")[0] == "第2次，验证码 123456，2026-06-30"


def test_a_candidate_cannot_forge_a_sealed_token_into_the_transcript(app, wechat):
    forged = f"{OPEN}enc1:1:AAAA#00{CLOSE} 你好"
    reply = wechat.text("o_forger", forged)
    assert reply.content  # answered as usual
    with db(app).session() as session:  # and the transcript still reads (the markers were dropped)
        assert session.scalar(select(Message.content).where(Message.openid == "o_forger", Message.direction == "in")) \
            == "enc1:1:AAAA#00 你好"


def test_an_encrypted_column_refuses_a_query_that_would_need_its_plaintext(app):
    for query in (lambda: RosterEntry.id_number.startswith("1101"), lambda: Candidate.phone.like("%138%"),
                  lambda: RosterEntry.id_number > "1"):
        with pytest.raises(TypeError, match="encrypted"):
            query()


def test_equality_and_in_compare_the_keyed_hash_not_the_value(app, imported):
    with db(app).session() as session:
        statement = select(RosterEntry.id).where(RosterEntry.id_number.in_([ID_NUMBER, "x"]))
        assert "id_number_hash" in str(statement.compile())
        entries = session.scalars(select(RosterEntry).order_by(RosterEntry.id)).all()
        first = entries[0]
        assert session.scalar(select(RosterEntry.id).where(RosterEntry.id_number == first.id_number)) == first.id
        other = first.id_number[:-1] + ("1" if first.id_number[-1] != "1" else "2")
        assert session.scalar(select(RosterEntry.id).where(RosterEntry.id_number == other)) is None


def test_a_changed_id_number_gets_its_hash_changed_with_it(app, imported):
    with db(app).session() as session:
        entry = session.scalars(select(RosterEntry).order_by(RosterEntry.id)).first()
        entry_id, entry.id_number = entry.id, ID_NUMBER
    ring = KeyRing.from_settings(app.extensions["collector"].settings.privacy)
    with db(app).session() as session:
        assert session.scalar(select(RosterEntry.id_number_hash).where(RosterEntry.id == entry_id)) \
            == ring.lookup_hash(ID_NUMBER)
        assert session.scalar(select(RosterEntry.id).where(RosterEntry.id_number == ID_NUMBER)) == entry_id


def test_a_tampered_value_is_refused_not_shown(app, imported):
    with db(app).session() as session:
        entry_id = session.scalar(select(RosterEntry.id).order_by(RosterEntry.id))
        sealed = session.scalar(select(type_coerce(RosterEntry.id_number, Text)).where(RosterEntry.id == entry_id))
        middle = len(sealed) // 2  # a character of the ciphertext itself, not base64 padding
        flipped = sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1:]
        session.execute(update(RosterEntry.__table__).where(RosterEntry.id == entry_id)
                        .values(id_number=type_coerce(flipped, Text)))
    with db(app).session() as session, pytest.raises(DecryptError):
        session.scalar(select(RosterEntry.id_number).where(RosterEntry.id == entry_id))
