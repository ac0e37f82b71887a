"""Names and resident ID numbers (GB 11643-1999).

Every check returns a finding key from messages.IDENTITY (or None when valid), never raises.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from rules.phone import parse_mobile
from rules.text import normalize

# GB/T 2260 province-level codes (first two digits).
PROVINCE_CODES = frozenset({
    "11", "12", "13", "14", "15",
    "21", "22", "23",
    "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46",
    "50", "51", "52", "53", "54",
    "61", "62", "63", "64", "65",
    "71", "81", "82", "83", "91",
})
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

# Every CJK ideograph a name may use: 〇, Extension A, the Unified block, the compatibility ideographs
# (NFKC folds most into unified ones), Extensions B–F and I with the compatibility supplement, G and H.
_HAN = ("\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
        "\U00020000-\U0002a6df\U0002a700-\U0002ee5f\U0002f800-\U0002fa1f\U00030000-\U000323af")
_NAME = re.compile(f"[{_HAN}]+(?:·[{_HAN}]+)*")
_ID_CHARS = re.compile(r"[0-9X]")
_ID_RUN = re.compile(r"[0-9X]+")
_SEPARATORS = re.compile(r"[\s,，;；:：/|、\-—_]+")
# How people introduce the two values: "我叫陈静，身份证110105…", "姓名：陈静 身份证号：…".
_LABELS = re.compile(r"(?:我的)?(?:身份证号码|身份证号|身份证|证件号码|证件号|号码|姓名|名字)(?:是|为)?|我叫|我是|本人")
# Words no name contains: a "name" holding one is a sentence, never a failed roster match.
_NOT_IN_NAMES = ("身份证", "证件", "号码", "姓名", "名字", "手机", "电话", "学历", "本科", "专科", "你好", "谢谢",
                 "我叫", "我是", "请问", "怎么", "什么")
# The middle dot of minority names, as phones and input methods type it.
_NAME_DOTS = str.maketrans({ch: "·" for ch in "•・．.‧∙⋅⸱･"})


def check_digit(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def clean_id_number(raw: str) -> str:
    """Full-width digits folded, spaces removed, `x` upper-cased."""
    return normalize(raw).replace(" ", "").upper()


def id_number_problem(id_number: str, today: date) -> str | None:
    """The key of what is wrong with an already cleaned ID number, or None."""
    if not re.fullmatch(r"[0-9]{17}[0-9X]", id_number):
        if re.fullmatch(r"[0-9X]+", id_number) and len(id_number) != 18:
            return "id.length"
        return "id.characters"
    if id_number[:2] not in PROVINCE_CODES:
        return "id.region"
    birth = birth_date(id_number)
    if birth is None or not (date(1900, 1, 1) <= birth <= today):
        return "id.birthdate"
    if check_digit(id_number[:17]) != id_number[17]:
        return "id.checksum"
    return None


def birth_date(id_number: str) -> date | None:
    try:
        return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def clean_name(raw: str) -> str:
    return normalize(raw).replace(" ", "").translate(_NAME_DOTS)


def name_problem(name: str) -> str | None:
    if not name:
        return "name.missing"
    if not _NAME.fullmatch(name):
        return "name.characters"
    letters = len(name.replace("·", ""))
    if letters < 2 or len(name) > 30:
        return "name.length"
    return None


def typed_name_problem(name: str) -> str | None:
    """name_problem, and for a name typed in the chat also "name.phrase": words no name contains (the
    rest of a sentence), so that such a message never counts as a failed roster match."""
    problem = name_problem(name)
    if problem is None and any(word in name for word in _NOT_IN_NAMES):
        return "name.phrase"
    return problem


@dataclass(frozen=True)
class IdentityInput:
    """What one message contained: a name, an ID number, both, or neither."""
    name: str | None
    id_number: str | None


def split_identity(text: str) -> IdentityInput:
    """Digits (and X) form the ID number, the rest the name, in any order and with any separator;
    labels such as 我叫, 姓名 and 身份证号 are dropped."""
    folded = normalize(text).upper()
    id_number = _id_among_runs(folded) or "".join(_ID_CHARS.findall(folded))
    rest = _LABELS.sub(" ", _ID_CHARS.sub(" ", folded))
    name = clean_name(_SEPARATORS.sub("", rest))
    return IdentityInput(name=name or None, id_number=id_number or None)


def _id_among_runs(folded: str) -> str | None:
    """With a mobile number typed beside it ("张三 1101…4573 13800138000"), the run of 18 is the ID number;
    the phone number is asked for in its own step."""
    runs = _ID_RUN.findall(folded)
    whole = [run for run in runs if len(run) == 18]
    if len(runs) < 2 or len(whole) != 1:
        return None
    if all(run is whole[0] or parse_mobile(run) for run in runs):
        return whole[0]
    return None


def mask_name(name: str | None) -> str:
    """王*明, 张*, 阿****提: the first and last characters kept (a two-character name keeps the first)."""
    if not name:
        return ""
    letters = list(name)
    if len(letters) <= 2:
        return letters[0] + "*" * (len(letters) - 1)
    return letters[0] + "*" * (len(letters) - 2) + letters[-1]


def mask_id_number(id_number: str | None) -> str:
    """110101********1234: region and last four kept, birth date hidden."""
    if not id_number:
        return ""
    if len(id_number) < 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


_ID_IN_TEXT = re.compile(r"(?<![0-9])([1-9][0-9]{5})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9])")
# Any other run of 14 or more digits: an ID number typed in part, with a typo, or in the wrong step.
_DIGIT_RUN_IN_TEXT = re.compile(r"(?<![0-9])([0-9]{6})([0-9]{8,}[Xx]?)(?![0-9])")
# A mobile number on its own or in E.164 (+8613800138000), whose "86" would otherwise hide it.
_PHONE_IN_TEXT = re.compile(r"(?:(?<=\+86)|(?<![0-9]))(1[3-9][0-9])[0-9]{4}([0-9]{4})(?![0-9])")


def mask_personal_data(text: str) -> str:
    """Masks ID numbers and mobile numbers wherever they appear in free text (logs, screens)."""
    text = _ID_IN_TEXT.sub(lambda m: m.group(1) + "********" + m.group(2), text)
    text = _DIGIT_RUN_IN_TEXT.sub(lambda m: m.group(1) + "*" * len(m.group(2)), text)
    return _PHONE_IN_TEXT.sub(lambda m: m.group(1) + "****" + m.group(2), text)
