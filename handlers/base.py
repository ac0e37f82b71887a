"""What every conversation step works with: the incoming message, the context, the outcome."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Protocol

from sqlalchemy.orm import Session

from settings import Settings
from store.files import PhotoFiles
from store.models import Candidate


class State:
    """The conversation's states. The transitions between them are declared in bot/states.py."""
    WELCOME = "welcome"
    INSTITUTION = "institution"
    LEVEL = "level"
    IDENTITY = "identity"
    PHONE = "phone"
    CONFIRM = "confirm"
    NOTICE = "notice"
    PHOTO = "photo"
    PAYMENT = "payment"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"


@dataclass(frozen=True)
class Incoming:
    """One message from a candidate, reduced to what the conversation needs."""
    openid: str
    kind: str  # text | image | event | other
    text: str = ""
    media_id: str | None = None
    event: str | None = None
    raw_type: str = ""
    msg_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A text, or an image already uploaded to WeChat (media_id), or nothing."""
    text: str | None = None
    image_media_id: str | None = None
    # [support] mode = "wechat_kf": hand the conversation to WeChat's own customer-service system.
    transfer_to_kf: bool = False

    @property
    def empty(self) -> bool:
        return self.text is None and self.image_media_id is None and not self.transfer_to_kf

    def describe(self) -> str:
        if self.transfer_to_kf:
            return "[transfer_customer_service]"
        return self.text if self.text is not None else f"[image {self.image_media_id}]" if self.image_media_id else ""


NO_REPLY = Reply()


@dataclass
class Outcome:
    reply: Reply
    state: str
    checks: dict[str, Any] | None = None
    media_path: str | None = None  # a stored file the inbound message carried


class WeChatGateway(Protocol):
    def download_media(self, media_id: str) -> bytes: ...
    def upload_image(self, data: bytes, filename: str) -> str: ...
    def send_text(self, openid: str, text: str) -> None: ...
    def send_image(self, openid: str, media_id: str) -> None: ...
    def send_template(self, openid: str, template_id: str, data: dict, client_msg_id: str | None = None) -> None: ...


class PaymentGateway(Protocol):
    name: str
    def checkout_url(self, out_trade_no: str) -> str: ...


@dataclass
class Services:
    """Outbound doors, shared by every message: files, WeChat, payments, photo checks, background work."""
    photo_files: PhotoFiles
    wechat: WeChatGateway
    payments: PaymentGateway
    check_photo: Callable[[bytes], Any]
    submit: Callable[..., Future]


DeferredHandler = Callable[["Context", Any], Outcome]


class ClaimLost(Exception):
    """Another attempt took this message over (this one's claim had run out): its step must not commit."""


class ReplyRoute(Protocol):
    # This attempt took the message over from one whose process died: its inbound row may exist.
    taken_over: bool

    def settle(self, session: Session, reply: Reply) -> bool:
        """Called in the step's transaction, once its reply is known. True: the reply goes back as the
        webhook's answer; False: every attempt WeChat made had to be answered without it, so it must be
        sent as a customer-service message. Raises ClaimLost."""


class _AlwaysPassive:
    taken_over = False

    def settle(self, session: Session, reply: Reply) -> bool:
        return True


PASSIVE = _AlwaysPassive()


@dataclass
class Context:
    session: Session
    settings: Settings
    services: Services
    candidate: Candidate
    now: datetime
    started: float  # time.monotonic() when the request arrived: the reply budget counts from here
    deferred: list[tuple[Future, str]] = field(default_factory=list)
    # Run before release() commits: writes the step keeps until its end while it commits only once
    # (the inbound transcript row), which must be in what an early commit keeps.
    before_release: list[Callable[[], Any]] = field(default_factory=list)
    locked: bool = True  # the candidate's row is locked (False: a read-only command, bot/states.reads_only)

    def release(self) -> None:
        """Commits what the step has done so far, so that no database lock is held while it waits
        on the network; the candidate is re-read afterwards in a fresh transaction."""
        for write in self.before_release:
            write()
        self.session.commit()

    def reload(self) -> None:
        """Reads the candidate again under their row lock (after an early commit, or for a command that
        turned out not to be read-only)."""
        self.session.refresh(self.candidate, with_for_update=True)
        self.locked = True

    def defer(self, future: Future, kind: str) -> None:
        """Finish this piece of work after the reply. `kind` names its entry in bot/states.DEFERRABLE:
        the step's on_done, which runs with a fresh context and whose reply goes to the candidate as a
        customer-service message, and how to redo the work should this process die first."""
        self.deferred.append((future, kind))


Handler = Callable[[Context, Incoming], Outcome]
