"""The conversation, declared as data: each state's handler and the inputs it accepts, the commands
that work anywhere, and the states that stay open outside the collection window.

```mermaid
stateDiagram-v2
    [*] --> welcome
    welcome --> institution: subscribe / any message
    institution --> institution: another school's name
    institution --> level: 北京市高等教育自学考试
    level --> identity: 1 专科 / 2 本科
    identity --> identity: invalid name or ID number / no roster match / ID bound elsewhere / too many tries / roster busy (核对 retries)
    identity --> identity: on the roster under the other level (its name switches the level)
    identity --> phone: name + ID number match the roster
    phone --> phone: not a mobile number / name or ID number again (already recorded)
    phone --> phone: [sms] verify_phone: code sent, wrong or expired code, 重发 (limited per hour)
    phone --> confirm: mobile number, or its SMS code with verify_phone (the card shows the number)
    confirm --> identity: 2 修改
    confirm --> notice: 1 确认 (binds the ID number to this account)
    notice --> photo: 我知道了
    photo --> photo: photo fails the checks (a framing-only refusal offers a re-framed copy)
    photo --> payment: photo passes, or 1 (the re-framed copy), or 申请人工审核 after two refusals, not paid yet
    photo --> under_review: photo passes, already paid
    payment --> payment: a new photo replaces the old one
    payment --> under_review: paid
    under_review --> approved: staff approve
    under_review --> photo: staff reject (no second payment)
    approved --> [*]
```
Anywhere: 帮助 (help for this step), 进度 (status), 重新开始 (back to institution, before payment only),
人工 (flag for a support agent), 查看照片 (the approved photo).
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

import messages
from handlers import (commands, confirm, identity, institution, level, notice, payment, phone, photo, photo_offers,
                      review, welcome, window)
from handlers.base import DeferredHandler, Handler, State
from rules.text import compact

TEXT = frozenset({"text"})
IMAGE = frozenset({"image"})
ANY = frozenset({"text", "image", "event", "other"})


@dataclass(frozen=True)
class Step:
    handler: Handler
    accepts: frozenset[str]
    # What to say when the input is of a kind the step does not take (None: the step's help).
    wrong_kind: str | None = None


STEPS: dict[str, Step] = {
    State.WELCOME: Step(welcome.handle, ANY),
    State.INSTITUTION: Step(institution.handle, TEXT),
    State.LEVEL: Step(level.handle, TEXT),
    State.IDENTITY: Step(identity.handle, TEXT),
    State.PHONE: Step(phone.handle, TEXT),
    State.CONFIRM: Step(confirm.handle, TEXT),
    State.NOTICE: Step(notice.handle, TEXT),
    State.PHOTO: Step(photo.handle, IMAGE | TEXT, wrong_kind=messages.PHOTO_EXPECTED),
    State.PAYMENT: Step(payment.handle, TEXT | IMAGE),
    State.UNDER_REVIEW: Step(review.under_review, ANY),
    State.APPROVED: Step(review.approved, ANY),
}

# An image in the payment step replaces the photo that passed; text there repeats the payment link.
STEP_BY_KIND: dict[tuple[str, str], Handler] = {
    (State.PAYMENT, "image"): photo.handle,
    # Text at the photo step: "1" takes the re-framed photo offered, "申请人工审核" asks for a human look.
    (State.PHOTO, "text"): photo_offers.handle_text,
    (State.PAYMENT, "text"): photo_offers.handle_payment_text,
}

COMMANDS: dict[str, Handler] = {
    "帮助": commands.help_,
    "help": commands.help_,
    "进度": commands.progress,
    "查询进度": commands.progress,
    "重新开始": commands.restart,
    "人工": commands.human,
    "人工客服": commands.human,
    "客服": commands.human,
    "查看照片": commands.view_photo,
}

# Commands that only read: answered from the candidate's last committed state without their row lock, so
# that they never wait behind the candidate's own step in flight or a staff action on them (on SQLite, which
# has one writer lock and no row locks, the answer is made before that lock is taken: Conversation.read_ahead).
READ_ONLY_COMMANDS = frozenset({commands.help_, commands.progress})

# Work a step deferred past its reply: name → (redo(services, settings, inbound checks) → Future, used
# by the "deferred" job when the process that started the work died; on_done, which applies it).
DEFERRABLE: dict[str, tuple[Callable[..., Future], DeferredHandler]] = {
    "photo": (photo.redo, photo.apply_later),
}

# Outside the collection window these still answer; everything else says when collection opens or that it closed.
OPEN_OUTSIDE_WINDOW_COMMANDS = frozenset({commands.help_, commands.progress, commands.human, commands.view_photo})
OPEN_OUTSIDE_WINDOW_STATES = window.OPEN_STATES


def command_for(kind: str, text: str | None) -> Handler | None:
    """The command a message is (帮助, 进度, …), or None."""
    return COMMANDS.get(compact(text).lower()) if kind == "text" else None


def reads_only(command: Handler | None, candidate) -> bool:
    """Whether this command, for this candidate, changes nothing: not while a support agent holds the
    conversation (it is stored for them), nor the first answer after a hand-back (it says so, once), nor
    progress at the payment step (it may open the order it links to)."""
    return (command in READ_ONLY_COMMANDS and candidate.agent is None and candidate.handed_back_untold_at is None
            and not (command is commands.progress and candidate.state == State.PAYMENT))


assert set(STEPS) == {value for name, value in vars(State).items() if name.isupper()}, "a state has no step"
