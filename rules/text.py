"""Forgiving normalisation of what candidates type on their phones."""
from __future__ import annotations

import re
import unicodedata

# Punctuation people wrap answers in: quotes, brackets, full stops, exclamation marks…
_EDGE_PUNCTUATION = " \t\r\n\u3000\"'“”‘’「」『』《》<>()（）[]【】.,，。!！?？:：;；、~～-—_·"
_SPACES = re.compile(r"\s+")
# Variation selectors pick a glyph, not a character: a name typed with one is still the same name.
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")


def strip_invisible(text: str) -> str:
    """Drops format characters (Unicode category Cf: zero-width space and joiners, BOM, word joiner,
    soft hyphen…) and variation selectors, which phones and copy-paste slip into names and numbers."""
    text = _VARIATION_SELECTORS.sub("", text)
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def normalize(text: str | None) -> str:
    """Invisible characters dropped, NFKC (full-width digits and letters become ASCII, compatibility
    ideographs their unified forms), trimmed of spaces and edge punctuation."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", strip_invisible(text))
    folded = folded.replace("\u3000", " ")
    return _SPACES.sub(" ", folded).strip(_EDGE_PUNCTUATION)


def compact(text: str | None) -> str:
    """normalize() without any inner white space: for names of institutions and commands."""
    return normalize(text).replace(" ", "")
