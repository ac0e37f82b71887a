"""Pure rules: ID numbers (GB 11643-1999), names, phones, the window, normalisation, masking."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from rules.identity import (check_digit, id_number_problem, mask_id_number, mask_personal_data, name_problem,
                            split_identity)
from rules.institution import is_institution, looks_like_school_name
from rules.phone import mask_phone, parse_mobile
from rules.text import normalize
from rules.window import WindowStatus, window_status

TODAY = date(2026, 11, 24)


def test_check_digit_matches_the_standard_example():
    # The worked example of GB 11643-1999: 11010519491231002 → X
    assert check_digit("11010519491231002") == "X"
    assert id_number_problem("11010519491231002X", TODAY) is None


@pytest.mark.parametrize("id_number,problem", [
    ("11010519491231002", "id.length"),
    ("11010519491231002XX", "id.length"),
    ("1101051949123100AX", "id.characters"),
    ("00010519491231002X", "id.region"),
    ("11010518991231002X", "id.birthdate"),
    ("11010520991231002X", "id.birthdate"),
    ("11010519490230002X", "id.birthdate"),
    ("110105194912310021", "id.checksum"),
])
def test_id_number_problems(id_number, problem):
    assert id_number_problem(id_number, TODAY) == problem


def test_a_birth_date_of_today_is_valid_and_tomorrow_is_not():
    base_today = "110101" + TODAY.strftime("%Y%m%d") + "001"
    base_tomorrow = "110101" + "20261125" + "001"
    assert id_number_problem(base_today + check_digit(base_today), TODAY) is None
    assert id_number_problem(base_tomorrow + check_digit(base_tomorrow), TODAY) == "id.birthdate"


@pytest.mark.parametrize("name,problem", [
    ("张三", None), ("欧阳娜娜", None), ("阿依古丽·买买提", None), ("张", "name.length"),
    ("Zhang", "name.characters"), ("张3", "name.characters"), ("·张三", "name.characters"),
    ("", "name.missing"), ("张" * 31, "name.length"),
])
def test_name_problems(name, problem):
    assert name_problem(name) == problem


@pytest.mark.parametrize("text,name,id_number", [
    ("张三 11010519491231002x", "张三", "11010519491231002X"),
    ("11010519491231002X，张三。", "张三", "11010519491231002X"),
    ("张三", "张三", None),
    ("１１０１０５１９４９１２３１００２Ｘ", None, "11010519491231002X"),
    ("110105 19491231 002X", None, "11010519491231002X"),
])
def test_split_identity(text, name, id_number):
    given = split_identity(text)
    assert (given.name, given.id_number) == (name, id_number)


@pytest.mark.parametrize("raw,e164", [
    ("13800138000", "+8613800138000"), ("+86 138-0013-8000", "+8613800138000"),
    ("008613800138000", "+8613800138000"), ("19912345678", "+8619912345678"),
    ("12345678901", None), ("1380013800", None), ("010-58691620", None), ("abc", None),
])
def test_parse_mobile(raw, e164):
    assert parse_mobile(raw) == e164


def test_masking():
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_phone("+8613800138000") == "138****8000"
    text = "张三 11010519491231002X 电话13800138000"
    masked = mask_personal_data(text)
    assert "19491231" not in masked and "0013" not in masked
    assert "110105********002X" in masked and "138****8000" in masked


def test_masking_catches_e164_numbers_whose_country_code_hides_them():
    masked = mask_personal_data("SMS to +8613800138000 failed")
    assert masked == "SMS to +86138****8000 failed"


def test_normalize_folds_full_width_and_trims_punctuation():
    assert normalize("　“１２３”。 ") == "123"


def test_institution_and_school_names():
    assert is_institution(" 北京市 高等教育自学考试。", "北京市高等教育自学考试")
    assert not is_institution("北京自考", "北京市高等教育自学考试")
    assert looks_like_school_name("北京大学") and looks_like_school_name("XX学院")
    assert not looks_like_school_name("北京自考")


def test_window_status_edges():
    tz = ZoneInfo("Asia/Shanghai")
    start, end = datetime(2024, 6, 13, tzinfo=tz), datetime(2024, 6, 15, 23, 59, 59, tzinfo=tz)
    assert window_status(datetime(2024, 6, 12, 23, 59, 59, tzinfo=tz), start, end) is WindowStatus.NOT_YET_OPEN
    assert window_status(start, start, end) is WindowStatus.OPEN
    assert window_status(end, start, end) is WindowStatus.OPEN
    assert window_status(datetime(2024, 6, 16, tzinfo=tz), start, end) is WindowStatus.CLOSED
