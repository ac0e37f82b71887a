"""Did the candidate type the institution's name, or their own school's?"""
from __future__ import annotations

import re

from rules.text import compact

_SCHOOL_WORDS = re.compile(r"(大学|学院|学校|职业|技术|师范|医科|党校|电大|开放大学|中学|分校)")


def is_institution(text: str, institution: str) -> bool:
    return compact(text) == compact(institution)


def looks_like_school_name(text: str) -> bool:
    """A school's own name ("北京大学", "XX学院") rather than the self-study examination."""
    return bool(_SCHOOL_WORDS.search(compact(text)))
