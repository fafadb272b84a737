"""Project API keys (API.md §2): `pk_` + 40 URL-safe characters, stored as SHA-256.

Authentication reads the key, its project's owner and whether that account is disabled in one
query. With a shared Redis (the production shape), a process also remembers the keys it has
authenticated, stamped with the *auth epoch*: a random token in Redis that is replaced after
every commit that could refuse a key (revoked, expiry changed, project deleted, account
disabled; see `AUTH_EPOCH` and app/epochs.py). The rate limiter reads the epoch in the same Redis
round trip that counts the request, and a remembered key is only used while its stamp is still
the epoch, so a revocation refuses the key on the very next request in every process. An entry
is also forgotten after `REMEMBER_FOR`, the bound if the epoch could not be replaced (Redis
unreachable at that moment). docs/decisions.md "Request cost" has the measurements.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, or_, select, update

from app import epochs
from app.errors import Invalid, Unauthorized, not_found
from app.extensions import db
from app.models import ApiKey, Project, User, is_uuid, utcnow

if TYPE_CHECKING:
    from redis import Redis

PREFIX = "pk_"
BODY_LENGTH = 40  # 40 URL-safe characters = 240 bits
DISPLAY_PREFIX = 11  # "pk_" + 8 characters, shown in lists to tell keys apart
TOUCH_EVERY = timedelta(minutes=1)
EPOCH_KEY = "pictor:auth-epoch"
REMEMBER_FOR = 60.0  # seconds a process trusts a remembered key without reading the database
REMEMBER_AT_MOST = 10_000  # keys per process
# Built once: every API request runs it, and building a statement costs more than running it.
_BY_DIGEST = (
    select(
        ApiKey.id,
        ApiKey.key_hash,
        ApiKey.revoked_at,
        ApiKey.expires_at,
        ApiKey.last_used_at,
        ApiKey.project_id,
        Project.owner_id,
        User.disabled,
    )
    .join(Project, Project.id == ApiKey.project_id)
    .join(User, User.id == Project.owner_id)
    .where(ApiKey.key_hash == bindparam("digest"))
)
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


@dataclass(frozen=True)
class Grant:
    """What a valid key lets its caller act as: ids only, views load what they use.

    `stamp` is the auth epoch a remembered key was stamped with: the caller must check it is
    still the epoch (`is_current`) before trusting the grant. None: read from the database now.
    """

    key_id: str
    project_id: str
    user_id: str  # the project's owner, who pays for what the project does
    expires_at: datetime | None
    stamp: str | None = None


@dataclass
class _Remembered:
    grant: Grant  # stamped
    touched: datetime  # when this process last recorded a use (or read one)


# key digest → _Remembered, in the one scope (None) of the auth epoch
_remembered = epochs.Memory(REMEMBER_FOR, REMEMBER_AT_MOST)

AUTH_EPOCH = epochs.register(
    epochs.Epoch(
        EPOCH_KEY,
        watched={
            ApiKey: ("revoked_at", "expires_at", "project_id", "key_hash"),
            User: ("disabled",),
            Project: ("owner_id",),
        },
        forget=_remembered.forget,
        remember_for=REMEMBER_FOR,
        what="API keys",
    )
)


def authenticate(plaintext: str | None, shared: Redis | None = None) -> Grant:
    """The grant of the live key for this plaintext, or Unauthorized (missing, unknown,
    revoked, expired, account disabled).

    Lookup is by the SHA-256 digest (an index hit reveals nothing about the key), and the
    digest is then compared in constant time. With `shared` (the Redis holding the auth
    epoch), a key this process has authenticated before comes back stamped, unconfirmed.
    """
    if not _well_formed(plaintext):
        raise Unauthorized("Missing or invalid API key")
    digest = hash_key(plaintext)
    now = utcnow()
    if shared is not None:
        remembered = _recall(digest, now)  # its stamp is checked by the caller
        if remembered is not None:
            return remembered
    # Read the epoch before the key: a change committed after this read replaces the epoch
    # after it, so the stamp below can only be current if the row read is.
    stamp = AUTH_EPOCH.read(shared) if shared is not None else None
    row = db.session.execute(_BY_DIGEST, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized("Missing or invalid API key")
    if row.revoked_at is not None:
        raise Unauthorized("This API key has been revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("This API key has expired")
    if row.disabled:
        raise Unauthorized("This account is disabled")
    touched = row.last_used_at
    if touched is None or now - touched > TOUCH_EVERY:
        _touch(row.id, now)
        touched = now
    grant = Grant(row.id, row.project_id, row.owner_id, row.expires_at)
    if stamp is not None:
        _remembered.remember(None, digest, _Remembered(replace(grant, stamp=stamp), touched), stamp)
    return grant


def trusted(grant_stamp: str | None, auth_epoch: str | None) -> bool:
    """Whether a grant may be acted on: one read from the database now (no stamp), or one
    remembered under the auth epoch read with this request ("" or None when none was read:
    no stamp matches it)."""
    return grant_stamp is None or AUTH_EPOCH.is_current(grant_stamp, auth_epoch or "")


def recall(plaintext: str) -> Grant | None:
    """The stamped grant this process remembers for a key, unconfirmed (the caller checks its
    stamp against the auth epoch); None when it remembers none. Unauthorized once expired."""
    return _recall(hash_key(plaintext), utcnow()) if _well_formed(plaintext) else None


def _well_formed(plaintext: str | None) -> bool:
    return bool(plaintext) and plaintext.startswith(PREFIX) and len(plaintext) <= 200


def _recall(digest: str, now: datetime) -> Grant | None:
    peeked = _remembered.peek(None, digest)
    if peeked is None:
        return None
    found: _Remembered = peeked[0]
    if found.grant.expires_at is not None and found.grant.expires_at <= now:
        raise Unauthorized("This API key has expired")
    if now - found.touched > TOUCH_EVERY:
        _touch(found.grant.key_id, now)
        found.touched = now
    return found.grant


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
