"""Users: sign-up, sign-in, Google identities, session versions."""

from __future__ import annotations

import re

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Conflict, Invalid, Unauthorized
from app.extensions import db
from app.models import TIERS, User, utcnow
from app.services import credits, projects

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("pictor-timing-equaliser")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def validate_email(email: str) -> str:
    email = normalize_email(email)
    if not EMAIL_RE.match(email) or len(email) > 320:
        raise Invalid(
            "Enter a valid email address", code="INVALID_EMAIL", details={"email": "invalid"}
        )
    return email


def get_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def create_user(
    email: str,
    password: str | None,
    *,
    name: str | None = None,
    is_admin: bool = False,
    tier: str = "free",
    google_sub: str | None = None,
    min_password: int = MIN_PASSWORD,
) -> User:
    """Create a user with a default project and this month's allowance (a `reset` row)."""
    email = validate_email(email)
    if password is not None and len(password) < min_password:
        raise Invalid(
            f"Password must be at least {min_password} characters",
            code="WEAK_PASSWORD",
            details={"password": "too short"},
        )
    if tier not in TIERS:
        raise Invalid(f"tier must be one of {', '.join(TIERS)}")
    user = User(
        email=email,
        name=name,
        password_hash=generate_password_hash(password) if password is not None else None,
        is_admin=is_admin,
        tier=tier,
        google_sub=google_sub,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            "An account with this email already exists",
            code="EMAIL_TAKEN",
            details={"email": "taken"},
        ) from None
    projects.create_project(user, "My first project", commit=False)
    db.session.commit()
    credits.reset_monthly(user.id, force=True, note="Welcome allowance")
    return user


def authenticate(email: str, password: str) -> User:
    """The user for these credentials, or Unauthorized with one message for every failure."""
    user = get_by_email(email)
    hashed = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    ok = check_password_hash(hashed, password or "")
    if user is None or not user.password_hash or not ok or user.disabled:
        raise Unauthorized("Incorrect email or password", code="INVALID_CREDENTIALS")
    touch(user)
    return user


def load_session_user(identity: str) -> User | None:
    """Flask-Login loader: `<user id>:<session version>`; a stale version is no user."""
    user_id, _, version = identity.partition(":")
    user = db.session.get(User, user_id)
    if user is None or user.disabled or str(user.session_version) != version:
        return None
    return user


def end_sessions(user: User) -> None:
    """Invalidate every session cookie issued so far (sign-out, disable, password change)."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(session_version=User.session_version + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    db.session.refresh(user)


def set_disabled(user: User, disabled: bool) -> None:
    user.disabled = disabled
    db.session.commit()
    end_sessions(user)


def touch(user: User) -> None:
    user.last_active_at = utcnow()
    db.session.commit()


def sign_in_with_google(sub: str, email: str, email_verified: bool, name: str | None) -> User:
    """Find or create the user for a Google identity.

    An existing account is linked by email only when Google says the email is verified;
    otherwise the identity could claim someone else's account.
    """
    user = db.session.scalar(select(User).where(User.google_sub == sub))
    if user is None:
        existing = get_by_email(email)
        if existing is not None:
            if not email_verified:
                raise Unauthorized(
                    "This Google account's email is not verified; sign in with your password",
                    code="EMAIL_NOT_VERIFIED",
                )
            if existing.google_sub is not None:
                # A reassigned address (a new Google account with the old email) must not
                # take over the account the previous Google identity is linked to.
                raise Unauthorized(
                    "This email is linked to a different Google account",
                    code="GOOGLE_ACCOUNT_MISMATCH",
                )
            existing.google_sub = sub
            existing.name = existing.name or name
            db.session.commit()
            user = existing
        else:
            if not email_verified:
                raise Unauthorized("Google did not verify this email", code="EMAIL_NOT_VERIFIED")
            user = create_user(email, None, name=name, google_sub=sub)
    if user.disabled:
        raise Unauthorized("This account is disabled", code="ACCOUNT_DISABLED")
    touch(user)
    return user


def search_users(q: str | None, *, limit: int = 50, offset: int = 0) -> tuple[list[User], int]:
    query = select(User)
    if q:
        query = query.where(User.email.ilike(f"%{q.strip().lower()}%"))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(query.order_by(User.created_at.desc()).limit(limit).offset(offset))
    return list(rows), int(total)
