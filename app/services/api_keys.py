"""Project API keys (API.md §2): `pk_` + 40 URL-safe characters, stored as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, or_, select, update

from app.errors import Invalid, Unauthorized, not_found
from app.extensions import db
from app.models import ApiKey, Project, is_uuid, utcnow

if TYPE_CHECKING:
    from app.models import User

PREFIX = "pk_"
BODY_LENGTH = 40  # 40 URL-safe characters = 240 bits
DISPLAY_PREFIX = 11  # "pk_" + 8 characters, shown in lists to tell keys apart
TOUCH_EVERY = timedelta(minutes=1)
# Built once: every API request runs it, and building a statement costs more than running it.
_BY_DIGEST = select(ApiKey).where(ApiKey.key_hash == bindparam("digest"))
# `last_used_at` is written at most once per TOUCH_EVERY per key, whichever process sees it
# first: the condition makes the others' UPDATE a no-op.
_TOUCH = (
    update(ApiKey)
    .where(
        ApiKey.id == bindparam("key_id"),
        or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= bindparam("stale_before")),
    )
    .values(last_used_at=bindparam("used_at"))
)


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    plaintext: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _generate() -> str:
    body = ""
    while len(body) < BODY_LENGTH:
        body += secrets.token_urlsafe(BODY_LENGTH)
    return PREFIX + body[:BODY_LENGTH]


def create_key(
    user: User, project: Project, name: str | None = None, *, expires_at: datetime | None = None
) -> CreatedKey:
    if project.owner_id != user.id:
        raise not_found("Project")
    name = (name or "").strip() or "API key"
    if len(name) > 120:
        raise Invalid("Name must be at most 120 characters", details={"name": "too long"})
    plaintext = _generate()
    key = ApiKey(
        project_id=project.id,
        user_id=user.id,
        name=name,
        prefix=plaintext[:DISPLAY_PREFIX],
        key_hash=hash_key(plaintext),
        expires_at=expires_at,
    )
    db.session.add(key)
    db.session.commit()
    return CreatedKey(key=key, plaintext=plaintext)


def authenticate(plaintext: str | None) -> ApiKey:
    """The live key for this plaintext, or Unauthorized (missing, unknown, revoked, expired).

    Lookup is by the SHA-256 digest (an index hit reveals nothing about the key), and the
    digest is then compared in constant time. One query reads the key with its project and
    the project's owner (joined), fresh on every request, so a revoked key, a deleted project
    or a disabled account is refused at once in every process.
    """
    if not plaintext or not plaintext.startswith(PREFIX) or len(plaintext) > 200:
        raise Unauthorized("Missing or invalid API key")
    digest = hash_key(plaintext)
    key = db.session.scalar(_BY_DIGEST, {"digest": digest})
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise Unauthorized("Missing or invalid API key")
    now = utcnow()
    if key.revoked_at is not None:
        raise Unauthorized("This API key has been revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise Unauthorized("This API key has expired")
    if key.project.owner.disabled:
        raise Unauthorized("This account is disabled")
    if key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY:
        _touch(key.id, now)
    return key


def _touch(key_id: str, now: datetime) -> None:
    """Record the use on its own autocommitted statement, outside the request's transaction
    (which a read may never commit, and a write must not commit early)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(_TOUCH, {"key_id": key_id, "stale_before": now - TOUCH_EVERY, "used_at": now})


def list_keys(user: User) -> list[ApiKey]:
    return list(
        db.session.scalars(
            select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at.desc())
        )
    )


def key_status(key: ApiKey) -> str:
    """`active`, `revoked` or `expired`, as the keys page shows it."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= utcnow():
        return "expired"
    return "active"


def get_key(user: User, key_id: str) -> ApiKey:
    key = db.session.get(ApiKey, key_id) if is_uuid(key_id) else None
    if key is None or key.user_id != user.id:
        raise not_found("API key")
    return key


def revoke_key(user: User, key_id: str) -> ApiKey:
    key = get_key(user, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()
    return key
