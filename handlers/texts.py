"""Filling in the messages module's templates from settings and records."""
from __future__ import annotations

from datetime import datetime

import messages
from rules.identity import mask_personal_data
from rules.text import normalize
from rules.window import WindowStatus, window_status
from settings import Settings

# States that keep the whole conversation outside the collection window: the fee is paid, only staff act now.
OPEN_OUTSIDE_WINDOW = frozenset({"under_review", "approved"})


def yuan(fen: int) -> str:
    """An amount as candidates read it in a sentence: 30, or 30.50."""
    return f"{fen // 100}" if fen % 100 == 0 else f"{fen / 100:.2f}"


def fee_yuan(settings: Settings) -> str:
    return yuan(settings.collection.fee_fen)


def levels_text(settings: Settings) -> str:
    return "\n".join(f"{level.number} {level.name}" for level in settings.collection.levels)


def local_time(settings: Settings, moment: datetime) -> str:
    return moment.astimezone(settings.window.tz).strftime("%Y年%m月%d日 %H:%M")


def window_text(settings: Settings) -> str:
    window = settings.window
    return f"{local_time(settings, window.aware_start())} 至 {local_time(settings, window.aware_end())}"


def office_fields(settings: Settings) -> dict[str, str]:
    return {"phone": settings.office.phone, "hours": settings.office.hours}


def welcome(settings: Settings) -> str:
    return messages.WELCOME.format(
        office=settings.office.name, window=window_text(settings), fee=fee_yuan(settings),
        review_hours=settings.collection.review_hours,
    )


def ask_institution(settings: Settings) -> str:
    return messages.ASK_INSTITUTION.format(institution=settings.collection.institution)


def ask_level(settings: Settings) -> str:
    return messages.ASK_LEVEL.format(institution=settings.collection.institution, levels=levels_text(settings))


def ask_identity(level: str) -> str:
    return messages.ASK_IDENTITY.format(level=level)


def window_now(settings: Settings, now: datetime | None = None) -> WindowStatus:
    window = settings.window
    return window_status(now or datetime.now(window.tz), window.aware_start(), window.aware_end())


def window_state(settings: Settings, now: datetime | None = None) -> str:
    """When collection opens, or that it has closed (with the office's phone)."""
    window = settings.window
    if window_now(settings, now) is WindowStatus.NOT_YET_OPEN:
        return messages.WINDOW_NOT_YET_OPEN.format(start=local_time(settings, window.aware_start()))
    return messages.WINDOW_CLOSED.format(end=local_time(settings, window.aware_end()), **office_fields(settings))


def step_help(settings: Settings, state: str) -> str:
    """What to do at this step; outside the window (for one who has not paid) only what is possible then,
    wherever the text is used (帮助, a support agent's hand-back, …)."""
    if state not in OPEN_OUTSIDE_WINDOW and window_now(settings) is not WindowStatus.OPEN:
        return join(window_state(settings), messages.OUTSIDE_WINDOW_COMMANDS)
    if state == "phone" and settings.sms.verify_phone:  # the SMS code is part of this step then
        state = "phone.code"
    template = messages.HELP.get(state, messages.HELP["welcome"])
    body = template.format(
        institution=settings.collection.institution, levels=levels_text(settings), fee=fee_yuan(settings),
        review_hours=settings.collection.review_hours,
    )
    return body + messages.HELP_FOOTER


def shorten(text: str, limit: int) -> str:
    """The text, or its first limit-1 characters and "…" when it is longer than limit."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo(text: str, limit: int = 20) -> str:
    """What the candidate typed, to quote back: normalised, ID and phone numbers masked, cut with "…"."""
    return shorten(mask_personal_data(normalize(text)), limit)


def join(*parts: str) -> str:
    return "\n\n".join(part for part in parts if part)
