"""Forgiving normalisation of what candidates type on their phones."""
from __future__ import annotations

import re
import unicodedata

# Punctuation people wrap answers in: quotes, brackets, full stops, exclamation marks…
_EDGE_PUNCTUATION = " \t\r\n\u3000\"'“”‘’「」『』《》<>()（）[]【】.,，。!！?？:：;；、~～-—_·"
_SPACES = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """NFKC (full-width digits and letters become ASCII), trimmed of spaces and edge punctuation."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text)
    folded = folded.replace("\u3000", " ")
    return _SPACES.sub(" ", folded).strip(_EDGE_PUNCTUATION)


def compact(text: str | None) -> str:
    """normalize() without any inner white space: for names of institutions and commands."""
    return normalize(text).replace(" ", "")
