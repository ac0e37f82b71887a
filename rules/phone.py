"""Mainland mobile numbers, stored in E.164."""
from __future__ import annotations

import re

import phonenumbers
from phonenumbers import PhoneNumberType

from rules.text import normalize


def parse_mobile(raw: str) -> str | None:
    """The number in E.164 (+8613800138000) when it is a valid 11-digit mainland mobile, else None."""
    digits = re.sub(r"[\s\-()（）]", "", normalize(raw))
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if not re.fullmatch(r"1[0-9]{10}", digits):
        return None
    try:
        number = phonenumbers.parse(digits, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str | None) -> str:
    if not e164:
        return ""
    national = e164[3:] if e164.startswith("+86") else e164
    return national[:3] + "****" + national[-4:]
