"""Names in every CJK block and input with invisible characters, through the rules, the webhook and the
roster import (one normalisation for all three)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from rules.identity import clean_id_number, clean_name, name_problem, split_identity
from rules.phone import parse_mobile
from rules.text import normalize
from store.models import RosterEntry
from tests.journey import GRADUATES, seed_roster

# Rare characters from the supplementary planes: Extension B (𠀀 U+20000, 𪚥 U+2A6A5), C (𪜀 U+2A700),
# G (𰀀 U+30000), and a compatibility ideograph (豈 U+F900, which NFKC folds to 豈 U+8C48).
RARE = [
    {"name": "𠀀明", "id_number": "110102199205151238", "exam_number": "012400000101", "level": "本科",
     "major": "法学"},
    {"name": "王𪚥𪜀", "id_number": "110108198811024566", "exam_number": "012400000102", "level": "本科",
     "major": "法学"},
    {"name": "𰀀·\uf900", "id_number": "310104199501017893", "exam_number": "012400000103", "level": "专科",
     "major": "会计"},
]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u2060", "\u00ad", "\u180e"]


@pytest.mark.parametrize("name", ["𠀀明", "王𪚥", "李𪜀", "张𫝀", "陈𬺰", "𮯠红", "𰀀华", "𱍐华", "\uf900金",
                                  "\U0002f800明", "阿依古丽·买买提", "〇一"])
def test_names_in_every_cjk_block_are_accepted(name):
    assert name_problem(clean_name(name)) is None


@pytest.mark.parametrize("name", ["Zhang", "张3", "张··三", "張😀", "김민수", "ひらがな"])
def test_what_is_not_a_chinese_name_is_still_refused(name):
    assert name_problem(clean_name(name)) == "name.characters"


@pytest.mark.parametrize("mark", INVISIBLE)
def test_invisible_characters_are_dropped_from_names_numbers_and_phones(mark):
    assert normalize(f"张{mark}三") == "张三"
    given = split_identity(f"{mark}张三{mark} 1101011990{mark}03074573{mark}")
    assert (given.name, given.id_number) == ("张三", "110101199003074573")
    assert clean_id_number(f"1101011990{mark}03074573") == "110101199003074573"
    assert parse_mobile(f"138{mark}0013{mark}8000") == "+8613800138000"


def test_variation_selectors_and_dot_variants_fold_to_the_plain_name():
    assert clean_name("葛\U000e0100优") == "葛优"
    for dot in "•・．.‧∙⋅⸱･":
        assert clean_name(f"阿依古丽{dot}买买提") == "阿依古丽·买买提"


def walk_to_identity(chat, level: str) -> None:
    chat.subscribe()
    chat.say("北京市高等教育自学考试")
    chat.say(level)


@pytest.mark.parametrize("graduate", RARE, ids=["ext-b", "ext-b-c", "ext-g-compat"])
def test_a_graduate_with_a_rare_character_is_matched_through_the_webhook(app, chat, graduate):
    seed_roster(app, RARE)
    walk_to_identity(chat, graduate["level"])
    reply = chat.say(f"{graduate['name']} {graduate['id_number']}")
    assert "手机号" in reply, reply
    card = chat.say("13800138000")
    assert "请认真核对" in card and clean_name(graduate["name"]) in card, card
    assert chat.state() == "confirm"


@pytest.mark.parametrize("mark", ["\u200b", "\u200d", "\ufeff", "\u2060"])
def test_a_zero_width_character_inside_the_id_number_is_ignored(app, chat, roster, mark):
    graduate = GRADUATES[0]
    walk_to_identity(chat, graduate["level"])
    number = graduate["id_number"]
    reply = chat.say(f"{graduate['name']} {number[:6]}{mark}{number[6:14]}{mark}{number[14:]}")
    assert "手机号" in reply and "姓名" not in reply, reply
    assert "请认真核对" in chat.say(f"138{mark}0013{mark}8000")


def test_a_command_with_a_zero_width_character_still_works(app, chat, roster):
    walk_to_identity(chat, "本科")
    assert "已重新开始" in chat.say("重新\u200b开始")
    assert chat.state() == "institution"


def test_the_roster_import_normalises_names_the_same_way(app):
    with_marks = [{**RARE[0], "name": "\ufeff𠀀\u200b明"}, {**RARE[2], "name": "𰀀・\uf900"}]
    seed_roster(app, with_marks)
    with app.extensions["collector"].db.session() as session:
        names = dict(session.execute(select(RosterEntry.id_number, RosterEntry.name)).all())
    assert names == {RARE[0]["id_number"]: "𠀀明", RARE[2]["id_number"]: "𰀀·\u8c48"}


@pytest.mark.parametrize("dot", ["•", "・", "\u200b·"])
def test_staff_find_a_minority_name_typed_with_any_dot(app, chat, roster, dot):
    graduate = GRADUATES[2]
    walk_to_identity(chat, graduate["level"])
    chat.say(f"{graduate['name']} {graduate['id_number']}")
    chat.say("13800138000")
    chat.say("1")
    masked = graduate["id_number"][:6] + "********" + graduate["id_number"][-4:]
    typed = f"{masked} {graduate['name'].replace('·', dot)}"
    result = app.test_cli_runner().invoke(args=["unbind", typed, "--by", "staff"])
    assert result.exit_code == 0, result.output
    assert chat.state() == "welcome"
