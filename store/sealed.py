"""Column types that keep ID and phone numbers encrypted at rest (issue 14), transparently for the code
above them: models read and write plaintext, the database only ever sees sealed tokens and keyed hashes.

- `Sealed`: a short personal value (ID number, phone), stored as the key ring's AES-GCM token. A column
  that is looked up has a sibling `<name>_hash` column (HMAC under the non-rotating lookup key, see
  `lookup_hash_default`), and its comparator turns `Model.id_number == x` and `.in_(xs)` into comparisons
  of that hash, so no query carries or needs the plaintext.
- `SealedText`: free text (the transcript). Every run of digits that may be an ID or phone number is
  sealed in place between two private-use characters; the rest stays readable and searchable.
- `SealedList`: a JSON list of personal values (a reminder's uploaded ID numbers), each sealed.

The key ring reaches the types through the engine's dialect (`attach_ring`), so every engine carries
the keys of the settings it was built from.
"""
from __future__ import annotations

import json
import re
import unicodedata

from sqlalchemy import String, Text, event, inspect, literal
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from settings import ConfigError
from store.crypto import TOKEN_PREFIX, KeyRing

HASH_SUFFIX = "_hash"
OPEN, CLOSE = "\ue000", "\ue001"  # private-use characters: nothing a candidate types survives as one
# 11 or more digits: a phone number (11), an ID number (15 or 18, the last may be X), a bank card. Typed
# any way the bot reads them (rules/text.normalize): full-width digits, split by spaces (ideographic ones
# too), invisible characters, dashes, dots or brackets. Shorter runs (dates, codes, amounts) stay readable.
_DIGIT = "[0-9\uff10-\uff19]"
_LAST = "[0-9\uff10-\uff19Xx\uff38\uff58]"
_SEPARATOR = "[\\s\u00ad\u200b-\u200f\u2060\ufeff\\-\u2010-\u2015\uff0d()\uff08\uff09.\uff0e]"
# The run's first digit comes first and its lookbehind after it (not preceded by another digit or X): a
# pattern that starts with a character set lets the regex engine skip to the next digit, instead of trying
# the lookbehind at every character of the text (half the time on a 200-character reply).
SENSITIVE_RUN = re.compile(f"{_DIGIT}(?<!{_LAST}{_DIGIT})(?:{_SEPARATOR}{{0,3}}{_DIGIT}){{9,}}"
                           f"(?:{_SEPARATOR}{{0,3}}{_LAST})(?!{_LAST})")
# OPEN token #hash[,hash…] CLOSE: the hash of the run's digits lets a transcript be searched for a number, and
# so does one per mobile or ID number inside a longer run ("（1）13800138000" is one run of 12 digits).
INLINE_TOKEN = re.compile(f"{OPEN}({re.escape(TOKEN_PREFIX)}[^#{CLOSE}]*)(?:#[0-9a-f,]*)?{CLOSE}")
# Numbers searched for on their own, found at any offset of a run's digits (overlapping: lookahead).
_EMBEDDED_NUMBERS = re.compile("(?=(1[3-9][0-9]{9}|[1-9][0-9]{16}[0-9X]))")
NO_RING = "this database connection has no key ring: build it with Database(url, ring=KeyRing.from_settings(...))"


def attach_ring(engine, ring: KeyRing) -> None:
    engine.dialect.collector_ring = ring


def ring_of(dialect) -> KeyRing:
    ring = getattr(dialect, "collector_ring", None)
    if ring is None:
        raise ConfigError(NO_RING)
    return ring


class LookupValue(TypeDecorator):
    """A bound plaintext compared against a `_hash` column: hashed on its way to the database."""
    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else ring_of(dialect).lookup_hash(value)


class Sealed(TypeDecorator):
    impl = Text
    cache_ok = True

    class comparator_factory(TypeDecorator.Comparator):
        def operate(self, op, *other, **kwargs):
            if op in (operators.eq, operators.ne) and other[0] is not None:
                return op(self._hash_column(), self._lookup(other[0]))
            if op in (operators.in_op, operators.not_in_op):
                return op(self._hash_column(), [self._lookup(value) for value in other[0]])
            if op in (operators.is_, operators.is_not, operators.eq, operators.ne):
                return super().operate(op, *other, **kwargs)
            raise TypeError(f"{self.expr} is encrypted: only ==, != and in_() (by its keyed hash) are possible")

        def _hash_column(self):
            column = self.expr
            try:
                return column.table.c[column.key + HASH_SUFFIX]
            except (AttributeError, KeyError):
                raise TypeError(f"{column} has no {HASH_SUFFIX} column to look it up by") from None

        @staticmethod
        def _lookup(value):
            if isinstance(value, ColumnElement):
                if isinstance(value.type, Sealed):
                    return value.comparator._hash_column()
                raise TypeError("an encrypted column compares only with values or another encrypted column")
            return _lookup_param(value)

    def process_bind_param(self, value, dialect):
        if value is None or value.startswith(TOKEN_PREFIX):
            return value  # a token copied as it is (staff/reminders.py copies rows in SQL) stays valid
        return ring_of(dialect).seal(value)

    def process_result_value(self, value, dialect):
        return None if value is None else ring_of(dialect).open(value)


def _lookup_param(value):
    return literal(value, LookupValue())


def digits_of(run: str) -> str:
    """The number a run stands for, however it was typed: what its hash is taken of."""
    return re.sub("[^0-9X]", "", unicodedata.normalize("NFKC", run).upper())


class InlineLookupValue(TypeDecorator):
    """A number searched for in sealed text: the keyed hash of its digits, as the inline token carries it."""
    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else ring_of(dialect).lookup_hash(digits_of(value))


class SealedText(TypeDecorator):
    impl = Text
    cache_ok = True

    class comparator_factory(TypeDecorator.Comparator):
        def operate(self, op, *other, **kwargs):
            if op is operators.contains_op and isinstance(other[0], str) and SENSITIVE_RUN.fullmatch(other[0]):
                return super().operate(op, literal(other[0], InlineLookupValue()))
            return super().operate(op, *other, **kwargs)

    def process_bind_param(self, value, dialect):
        if not value:
            return value
        # The markers are ours alone: a candidate's text never carries one into the transcript.
        return _seal_runs(ring_of(dialect), value.replace(OPEN, "").replace(CLOSE, ""))

    def process_result_value(self, value, dialect):
        if not value or OPEN not in value:
            return value
        ring = ring_of(dialect)
        return INLINE_TOKEN.sub(lambda token: ring.open(token.group(1)), value)


def _seal_runs(ring: KeyRing, text: str) -> str:
    def sealed(run: re.Match) -> str:
        hashes = ",".join(ring.lookup_hash(number) for number in searchable_numbers(digits_of(run.group(0))))
        return f"{OPEN}{ring.seal(run.group(0))}#{hashes}{CLOSE}"
    return SENSITIVE_RUN.sub(sealed, text)


def searchable_numbers(digits: str) -> list[str]:
    """The run's digits, then every mobile or ID number inside them when the run is longer (a list number
    or a word of digits typed right before a phone joins its run)."""
    inside = {match.group(1) for match in _EMBEDDED_NUMBERS.finditer(digits)} - {digits}
    return [digits, *sorted(inside)]


def holds_sensitive_run(text: str | None) -> bool:
    return bool(text) and SENSITIVE_RUN.search(INLINE_TOKEN.sub("", text)) is not None


class SealedList(TypeDecorator):
    """A JSON list of personal values, each sealed (stored as JSON text)."""
    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        ring = ring_of(dialect)
        return json.dumps([item if str(item).startswith(TOKEN_PREFIX) else ring.seal(str(item)) for item in value])

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        ring = ring_of(dialect)
        return [ring.open(item) for item in json.loads(value)]


def masked_form(id_number: str) -> str:
    """What a masked ID number (110101********1234) still shows: staff can look a graduate up by it."""
    return f"masked:{id_number[:6]}{id_number[-4:]}"


# Hash columns beside the plain `<source>_hash` ones: {hash column: (source column, what is hashed)}.
DERIVED_HASHES = {"id_number_masked_hash": ("id_number", masked_form)}


def hashed_value(ring: KeyRing, hash_column: str, value: str | None) -> str | None:
    if value is None:
        return None
    derive = DERIVED_HASHES.get(hash_column, (None, lambda plain: plain))[1]
    return ring.lookup_hash(derive(value))


def hash_columns_of(table, source: str) -> list[str]:
    """The hash columns `table` keeps for `source`."""
    names = [source + HASH_SUFFIX] + [name for name, (origin, _) in DERIVED_HASHES.items() if origin == source]
    return [name for name in names if name in table.c]


class SealedJSON(TypeDecorator):
    """A JSON object whose texts may quote a number (a notification's message): sealed like SealedText."""
    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return json.dumps(_each_text(value, lambda text: SealedText().process_bind_param(text, dialect)),
                          ensure_ascii=False)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return _each_text(json.loads(value), lambda text: SealedText().process_result_value(text, dialect))


def _each_text(value, change):
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_each_text(item, change) for item in value]
    if isinstance(value, dict):
        return {key: _each_text(item, change) for key, item in value.items()}
    return value


def lookup_hash_default(source: str, hash_column: str | None = None):
    """The default of a hash column: the keyed hash of the row's `source` value, for every insert,
    bulk ones included (a context-sensitive default sees the row's parameters before they are sealed)."""
    hash_column = hash_column or source + HASH_SUFFIX

    def default(context):
        return hashed_value(ring_of(context.dialect), hash_column, context.get_current_parameters().get(source))
    return default


def keep_hashes_current(model, *sources: str) -> None:
    """An ORM update of a looked-up column refreshes its hashes in the same UPDATE."""
    @event.listens_for(model, "before_update")
    def refresh(mapper, connection, target):
        state = inspect(target)
        for source in sources:
            if state.attrs[source].history.has_changes():
                for hash_column in hash_columns_of(model.__table__, source):
                    setattr(target, hash_column,
                            hashed_value(ring_of(connection.dialect), hash_column, getattr(target, source)))
