"""Staff accounts of the web console: create, list, disable, set a password, sign in.

`flask users …` and the console's users page are two front doors over these functions. Each raises
AccountError before changing anything when the action does not apply; every change and every sign-in
(successful or not) is an audit event.
"""
from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from staff import audit
from staff.review import StaffActionError
from store.models import StaffUser, utcnow

ROLES = {"admin": "管理员", "reviewer": "审核员", "support": "客服"}
NAME_MAX_LENGTH = 32
PASSWORD_MIN_LENGTH = 10
DEMO_ADMIN = "demo-admin"
# What the audit log names a sign-in attempt for an account that does not exist: the typed name is not
# kept, since people type their password into the name field.
UNKNOWN = "(unknown)"

_hasher = PasswordHasher()


class AccountError(StaffActionError):
    """The account action does not apply (unknown name, bad role, weak password…); nothing was changed."""


@dataclass(frozen=True)
class StaffIdentity:
    """Who is signed in, detached from any database session (Flask-Login's user object)."""
    id: int
    name: str
    role: str
    generation: int

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        # A session opened before the account was disabled or its password set names an old generation.
        return f"{self.id}:{self.generation}"

    def may(self, *roles: str) -> bool:
        return self.role == "admin" or self.role in roles

    @property
    def role_name(self) -> str:
        return ROLES.get(self.role, self.role)


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: `user` when it worked, else why not (`locked_until` for a lockout)."""
    user: StaffIdentity | None = None
    locked_until: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.user is not None


def identity(user: StaffUser) -> StaffIdentity:
    return StaffIdentity(user.id, user.name, user.role, user.generation)


def find_user(session: Session, name: str) -> StaffUser | None:
    return session.scalar(select(StaffUser).where(StaffUser.name == name))


def list_users(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.active.desc(), StaffUser.name)))


def add_user(session: Session, name: str, role: str, password: str, by: str, ip: str | None = None) -> StaffUser:
    name = _valid_name(name)
    _check_role(role)
    _check_password(password)
    if find_user(session, name) is not None:
        raise AccountError(f"账号 {name} 已存在")
    user = StaffUser(name=name, role=role, password_hash=_hasher.hash(password), active=True, generation=0,
                     failed_logins=0, created_at=utcnow(), created_by=by)
    session.add(user)
    session.flush()
    audit.record(session, by, "user.add", f"staff_user:{name}", f"role {role}", ip=ip)
    return user


def disable_user(session: Session, name: str, by: str, reason: str | None = None, ip: str | None = None) -> StaffUser:
    """The account can no longer sign in, and the sessions it has open stop working at their next request."""
    user = _existing(session, name)
    if not user.active:
        raise AccountError(f"账号 {name} 已停用")
    if user.role == "admin" and _active_admins(session) == 1:
        raise AccountError(f"{name} 是唯一启用的管理员，不能停用")
    user.active = False
    user.generation += 1
    audit.record(session, by, "user.disable", f"staff_user:{name}", reason=reason, ip=ip)
    return user


def enable_user(session: Session, name: str, by: str, reason: str | None = None, ip: str | None = None) -> StaffUser:
    """A disabled account may sign in again (with its old password; sessions from before stay ended)."""
    user = _existing(session, name)
    if user.active:
        raise AccountError(f"账号 {name} 已是启用状态")
    user.active = True
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, by, "user.enable", f"staff_user:{name}", reason=reason, ip=ip)
    return user


def set_password(session: Session, name: str, password: str, by: str, ip: str | None = None) -> StaffUser:
    """A new password, which also ends the account's open sessions and lifts a lockout."""
    user = _existing(session, name)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    user.generation += 1
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, by, "user.password", f"staff_user:{name}", ip=ip)
    return user


def load_identity(session: Session, session_id: str) -> StaffIdentity | None:
    """Flask-Login's user loader: None (signed out) for a disabled account or a session of an old generation."""
    user_id, _, generation = session_id.partition(":")
    if not (user_id.isdigit() and generation.isdigit()):
        return None
    user = session.get(StaffUser, int(user_id))
    if user is None or not user.active or user.generation != int(generation):
        return None
    return identity(user)


def authenticate(session: Session, name: str, password: str, ip: str | None, lockout_failures: int,
                 lockout_minutes: int, now: datetime | None = None) -> SignIn:
    """Checks a sign-in; after lockout_failures failures in a row the account is locked for
    lockout_minutes (even the right password is refused until then). Audited either way."""
    now = now or utcnow()
    user = session.scalar(select(StaffUser).where(StaffUser.name == name).with_for_update())
    if user is not None and user.locked_until is not None and user.locked_until > now:
        audit.record(session, user.name, "login.refused", f"staff_user:{user.name}", "locked", ip=ip)
        return SignIn(locked_until=user.locked_until)
    if not _password_matches(user, password) or not user.active:
        return _failed(session, user, ip, lockout_failures, lockout_minutes, now)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    audit.record(session, user.name, "login.success", f"staff_user:{user.name}", ip=ip)
    return SignIn(user=identity(user))


def record_refusal(session: Session, name: str, why: str, ip: str | None) -> None:
    """A sign-in refused before the password was looked at (e.g. rate limited)."""
    user = find_user(session, name)
    actor = user.name if user else UNKNOWN
    audit.record(session, actor, "login.refused", f"staff_user:{actor}", why, ip=ip)


def record_sign_out(session: Session, user: StaffIdentity, why: str, ip: str | None = None) -> None:
    audit.record(session, user.name, "login.end", f"staff_user:{user.name}", why, ip=ip)


def random_password() -> str:
    return secrets.token_urlsafe(12)


def ensure_demo_admin(session: Session, by: str) -> tuple[StaffUser, str]:
    """The demo's admin with a fresh random password, created when missing: every `make run` prints a
    password that works (the previous one is replaced, since only its hash was ever stored)."""
    password = random_password()
    user = find_user(session, DEMO_ADMIN)
    if user is None:
        return add_user(session, DEMO_ADMIN, "admin", password, by), password
    if not user.active:
        raise AccountError(f"账号 {DEMO_ADMIN} 已停用，不再为它设置密码")
    return set_password(session, DEMO_ADMIN, password, by), password


def _failed(session: Session, user: StaffUser | None, ip: str | None, lockout_failures: int, lockout_minutes: int,
            now: datetime) -> SignIn:
    detail = "unknown account" if user is None else ("disabled" if not user.active else "wrong password")
    locked_until = None
    if user is not None and user.active:
        user.failed_logins += 1
        if user.failed_logins >= lockout_failures:
            locked_until = user.locked_until = now + timedelta(minutes=lockout_minutes)
            user.failed_logins = 0
            detail += f"; locked for {lockout_minutes} min"
    actor = user.name if user else UNKNOWN
    audit.record(session, actor, "login.failure", f"staff_user:{actor}", detail, ip=ip)
    return SignIn(locked_until=locked_until)


@functools.cache
def _dummy_hash() -> str:
    # Verified when the name is unknown, so a wrong name takes as long as a wrong password.
    return _hasher.hash(secrets.token_urlsafe(16))


def _password_matches(user: StaffUser | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash(), password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def _existing(session: Session, name: str) -> StaffUser:
    user = find_user(session, name)
    if user is None:
        raise AccountError(f"没有账号 {name}")
    return user


def _active_admins(session: Session) -> int:
    return len(list(session.scalars(select(StaffUser.id).where(StaffUser.role == "admin", StaffUser.active))))


def _valid_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX_LENGTH or any(ch.isspace() or ch in ":()" for ch in name):
        raise AccountError(f"账号名应为1到{NAME_MAX_LENGTH}个字符，不含空格、冒号和括号")
    return name


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"角色应为 {'、'.join(ROLES)} 之一，不是 {role}")


def _check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise AccountError(f"密码至少{PASSWORD_MIN_LENGTH}个字符")
