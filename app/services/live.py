"""Live generation (API.md §7): an image for a prompt in a URL, generated once and cached.

Cache key: SHA-256 of the normalised prompt (trimmed, inner whitespace collapsed) and the aspect
ratio, per project. A HIT answers the stored image (free); a MISS starts one generation, waits
for it and stores the entry. Concurrent MISSes for one key start exactly one generation across
every process: the decision "is a generation for this key running? if not, start one" is taken
under a Redis lock (SET NX PX with a random token, released only by its holder), and the others
wait on the generation it started. The database is the truth: a generation that outlived its
first caller's wait is picked up by the next request instead of being started again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from app import database, epochs
from app.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    RateLimited,
    Timeout,
)
from app.extensions import db
from app.models import (
    ApiKey,
    Generation,
    Image,
    LiveCacheEntry,
    Project,
    User,
    is_uuid,
    storable_text,
    utcnow,
)
from app.providers.base import ASPECT_RATIOS
from app.queue import get_redis
from app.redis_scripts import SharedScript

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

MAX_PROMPT = 4000
SECRET_OVERLAP = timedelta(hours=24)
LOCK_TTL_MS = 30_000  # covers deciding and queueing; the wait itself happens outside the lock
POLL_SECONDS = 0.05
IN_FLIGHT = ("pending", "processing")
SETTINGS_TTL = 5.0


@dataclass(frozen=True)
class Served:
    """What a live request answers: the image's bytes location and the cache outcome."""

    image_id: str
    storage_key: str
    mime_type: str
    sha256: str
    cache_status: str  # "HIT" | "MISS"
    hit_count: int
    generation_id: str | None


SERVED_COLUMNS = (Image.id, Image.storage_key, Image.mime_type, Image.sha256)


# --- request values -------------------------------------------------------------------------


def normalise_prompt(prompt: str) -> str:
    return " ".join(prompt.split())


def cache_key(prompt: str, aspect_ratio: str) -> str:
    return hashlib.sha256(f"{normalise_prompt(prompt)}\n{aspect_ratio}".encode()).hexdigest()


def clean_request(
    default_ratio: str | None, prompt: str | None, aspect_ratio: str | None
) -> tuple[str, str]:
    """(normalised prompt, aspect ratio); the project's default ratio when none is given."""
    text = normalise_prompt(prompt or "")
    if not text:
        raise Invalid("Prompt is required", code="PROMPT_REQUIRED", details={"prompt": "required"})
    if len((prompt or "").strip()) > MAX_PROMPT:  # counted like POST /generations counts
        raise Invalid(
            f"Prompt must be at most {MAX_PROMPT} characters",
            details={"prompt": f"at most {MAX_PROMPT} characters"},
        )
    if not storable_text(text):
        raise Invalid("Prompt must not contain NUL characters", details={"prompt": "NUL"})
    ratio = aspect_ratio or default_ratio or "1:1"
    if ratio not in ASPECT_RATIOS:
        raise Invalid("Invalid aspect ratio", code="INVALID_ASPECT_RATIO")
    return text, ratio


# --- signed public URLs ---------------------------------------------------------------------


def signature(secret: str, project_id: str, aspect_ratio: str, prompt: str, exp: str | None) -> str:
    """base64url (no padding) HMAC-SHA256 of "{projectId}\\n{aspectRatio}\\n{prompt}[\\n{exp}]"."""
    message = f"{project_id}\n{aspect_ratio}\n{prompt}"
    if exp is not None:
        message += f"\n{exp}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(project: Project, prompt: str, aspect_ratio: str, exp: str | None = None) -> str:
    return signature(project.live_secret, project.id, aspect_ratio, prompt, exp)


@dataclass(frozen=True)
class LiveSettings:
    """What a public live request needs from its project (cached per process, see below)."""

    project_id: str
    secret: str
    previous_secret: str | None
    rotated_at: datetime | None
    allowed_origins: tuple[str, ...]
    default_aspect_ratio: str

    @classmethod
    def of(cls, project: Project) -> LiveSettings:
        return cls(
            project_id=project.id,
            secret=project.live_secret,
            previous_secret=project.live_secret_previous,
            rotated_at=project.live_secret_rotated_at,
            allowed_origins=tuple(project.live_allowed_origins or ()),
            default_aspect_ratio=project.default_aspect_ratio,
        )


_settings: dict[str, tuple[float, LiveSettings]] = {}


def public_settings(project_id: str, *, fresh: bool = False) -> LiveSettings:
    """The live settings of a project, from a per-process cache of SETTINGS_TTL seconds.

    A HIT then needs no query for its project. A URL signed with a just-rotated secret still
    works at once (a failed check reloads, see `authorize_public`); what can lag by up to the
    TTL is the end of the previous secret's 24 h and a change of allowed origins. A deleted
    project's settings go with the live epoch (below).
    Unknown ids get the same 403 as a bad signature.
    """
    now = time.monotonic()
    cached = _settings.get(project_id)
    if cached is not None and not fresh and cached[0] > now:
        return cached[1]
    project = db.session.get(Project, project_id) if is_uuid(project_id) else None
    if project is None:
        _settings.pop(project_id, None)
        raise _bad_signature()
    settings = LiveSettings.of(project)
    _settings[project_id] = (now + SETTINGS_TTL, settings)
    return settings


def authorize_public(
    project_id: str,
    *,
    prompt: str,
    aspect_ratio: str,
    sig: str | None,
    exp: str | None,
    origin: str | None,
    referer: str | None,
) -> LiveSettings:
    """The checks of a public live URL, before anything is looked up, queued or charged:
    signature (403), expiry (410), origin (403)."""
    settings = public_settings(project_id)
    try:
        verify(settings, prompt=prompt, aspect_ratio=aspect_ratio, sig=sig, exp=exp)
    except Forbidden:
        settings = public_settings(project_id, fresh=True)
        verify(settings, prompt=prompt, aspect_ratio=aspect_ratio, sig=sig, exp=exp)
    check_origin(settings, origin, referer)
    return settings


def verify(
    settings: LiveSettings,
    *,
    prompt: str,
    aspect_ratio: str,
    sig: str | None,
    exp: str | None,
    now: datetime | None = None,
) -> None:
    """403 unless `sig` was made with the live secret (or the previous one, for 24 h after a
    rotation) over exactly these values; 410 once a signed `exp` has passed."""
    now = now or utcnow()
    secrets_ = [settings.secret]
    rotated = settings.rotated_at
    if settings.previous_secret and rotated is not None and now - rotated < SECRET_OVERLAP:
        secrets_.append(settings.previous_secret)
    given = (sig or "").encode()
    matches = [
        hmac.compare_digest(
            signature(secret, settings.project_id, aspect_ratio, prompt, exp).encode(), given
        )
        for secret in secrets_
    ]
    if not sig or not any(matches):
        raise _bad_signature()
    if exp is not None:
        if not (exp.isascii() and exp.isdigit()):
            raise _bad_signature()
        if int(exp) <= now.timestamp():
            raise Gone("This live URL has expired", code="LINK_EXPIRED")


def _bad_signature() -> Forbidden:
    return Forbidden("Invalid or missing signature", details={"sig": "invalid"})


def check_origin(settings: LiveSettings, origin: str | None, referer: str | None) -> None:
    """When the project lists allowed origins, the Origin (else Referer) host must be one."""
    allowed = settings.allowed_origins
    if not allowed:
        return
    netloc = _netloc(origin) or _netloc(referer)
    hostname = netloc.rsplit(":", 1)[0] if netloc and not netloc.endswith("]") else netloc
    if not netloc or (netloc not in allowed and hostname not in allowed):
        raise Forbidden("This origin may not use the project's live URLs", code="FORBIDDEN")


def _netloc(url: str | None) -> str | None:
    if not url or url == "null" or "://" not in url:
        return None
    return url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].lower() or None


# --- serving --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payer:
    """Who a MISS is generated and charged for."""

    project: Project
    user: User
    api_key: ApiKey | None = None


def owner_pays(project_id: str) -> Payer:
    """The payer of a public live URL: its project (read now, not from the cache) and owner."""
    project = db.session.get(Project, project_id)
    if project is None:
        raise _bad_signature()
    return Payer(project, project.owner)


def serve(
    project_id: str,
    *,
    prompt: str,
    aspect_ratio: str,
    payer: Callable[[], Payer],
    admit: Callable[[], None] | None = None,
) -> Served:
    """The image for a (clean) prompt and ratio: the cache entry (HIT) or a generation (MISS).

    `payer` is only called for a MISS. `admit` is called right before a generation is started
    (the caller's rate limit); nothing is queued or charged when it raises.
    """
    key = cache_key(prompt, aspect_ratio)
    cached = hit(project_id, key)
    if cached is not None:
        return cached
    found = payer()
    project, user, api_key = found.project, found.user, found.api_key
    deadline = time.monotonic() + current_app.config["LIVE_WAIT_SECONDS"]
    gen = _generation_for(project, user, key, prompt, aspect_ratio, api_key, admit, deadline)
    if isinstance(gen, Served):
        return gen
    return _finish(project, key, prompt, aspect_ratio, gen, deadline)


_ALIVE_ENTRY = (
    LiveCacheEntry.project_id == bindparam("live_project"),
    LiveCacheEntry.cache_key == bindparam("live_key"),
    LiveCacheEntry.image_id == Image.id,
    Image.deleted_at.is_(None),
)


def hit(project_id: str, key: str) -> Served | None:
    """Count a hit and answer the cached image (never a deleted one), or None on a miss.

    With a shared Redis (the production shape) hits are counted there: see `_hit_in_redis`.
    Without one, or while it is unreachable, in the database.
    """
    from app import ratelimit

    shared = ratelimit.shared_redis()
    if shared is not None:
        try:
            return _hit_in_redis(shared, project_id, key)
        except RedisError as exc:
            _warn_unreachable(exc)
    return _hit_in_database(project_id, key)


_warned_at = [float("-inf")]


def _warn_unreachable(exc: RedisError) -> None:
    """Once a minute at most: every HIT of an outage would say it."""
    now = time.monotonic()
    if now - _warned_at[0] >= 60:
        _warned_at[0] = now
        log.warning("live hits are counted in the database, Redis is unreachable: %s", exc)


# --- hits counted in Redis ------------------------------------------------------------------
#
# A process remembers the entries it has served (entry id and image columns), stamped with
# their project's live epoch (app/epochs.py), which every commit that deletes one of the
# project's images or cache entries, or the project, replaces. A HIT of a remembered entry is
# then one Redis script: check the stamp, count the hit, mark the entry for the next flush. No
# database statement, and no row lock that every view of a popular image would queue on.
# `flush_hit_counts` (the maintenance cron) adds the counted hits to the entries' `hit_count`;
# if Redis loses its data, the counts go on from the last flush.

HITS_KEY = "pictor:live-hits:"  # + entry id: a hash of n (hits), flushed (of n), at (last hit)
DIRTY_KEY = "pictor:live-hits:dirty"  # ids of entries with hits not yet flushed
HITS_TTL = 7 * 24 * 3600  # an unused counter is dropped; the database has its flushed hits
REMEMBER_FOR = 60.0  # seconds a process trusts a remembered entry, whatever the epoch says
REMEMBER_AT_MOST = 10_000  # entries per process
# (project id, cache key) → (entry id, the image's SERVED_COLUMNS), under the project's scope
_remembered = epochs.Memory(REMEMBER_FOR, REMEMBER_AT_MOST)


def _forget(project_id: str | None) -> None:
    """Drop what this process remembers of a project's live URLs (of every project: None)."""
    _remembered.forget(project_id)
    if project_id is None:
        _settings.clear()
    else:
        _settings.pop(project_id, None)


LIVE_EPOCH = epochs.register(
    epochs.Epoch(
        "pictor:live-epoch",
        watched={Image: ("deleted_at",), LiveCacheEntry: ("image_id",), Project: ()},
        forget=_forget,
        remember_for=REMEMBER_FOR,
        what="live cache entries",
        scope_of=lambda changed: changed.id if isinstance(changed, Project) else changed.project_id,
    )
)

# KEYS: live epoch, the entry's hits, dirty set. ARGV: stamp ("": not to be checked), entry
# id, the database's hit_count ("": unknown, the counter must exist), now, ttl.
# The count, or nil when the stamp is stale or the counter is missing.
_COUNT = SharedScript("""
if ARGV[1] ~= "" and redis.call("GET", KEYS[1]) ~= ARGV[1] then return false end
if redis.call("EXISTS", KEYS[2]) == 0 then
    if ARGV[3] == "" then return false end
    redis.call("HSET", KEYS[2], "n", ARGV[3], "flushed", ARGV[3])
end
local n = redis.call("HINCRBY", KEYS[2], "n", 1)
redis.call("HSET", KEYS[2], "at", ARGV[4])
redis.call("EXPIRE", KEYS[2], ARGV[5])
redis.call("SADD", KEYS[3], ARGV[2])
return n
""")
# KEYS: dirty set. ARGV: batch size, HITS_KEY. Takes up to a batch of dirty entries and marks
# their hits flushed: {{id, hits since the last flush, last hit}, ...}.
_CLAIM = SharedScript("""
local claimed = {}
for _, id in ipairs(redis.call("SPOP", KEYS[1], ARGV[1])) do
    local key = ARGV[2] .. id
    local n, flushed, at = unpack(redis.call("HMGET", key, "n", "flushed", "at"))
    if n and tonumber(n) > tonumber(flushed) then
        redis.call("HSET", key, "flushed", n)
        table.insert(claimed, {id, tostring(tonumber(n) - tonumber(flushed)), at})
    end
end
return claimed
""")
# KEYS: dirty set. ARGV: HITS_KEY, then id, hits, id, hits...: a flush that failed gives back.
_UNCLAIM = SharedScript("""
for i = 2, #ARGV, 2 do
    local key = ARGV[1] .. ARGV[i]
    if redis.call("EXISTS", key) == 1 then
        redis.call("HINCRBY", key, "flushed", -tonumber(ARGV[i + 1]))
        redis.call("SADD", KEYS[1], ARGV[i])
    end
end
return 0
""")
_FIND_ENTRY = database.DirectRead(
    select(LiveCacheEntry.id, LiveCacheEntry.hit_count, *SERVED_COLUMNS).where(*_ALIVE_ENTRY)
)
_entries = LiveCacheEntry.__table__
_ADD_HITS = (
    update(_entries)
    .where(_entries.c.id == bindparam("entry"))
    .values(hit_count=_entries.c.hit_count + bindparam("hits"), last_hit_at=bindparam("hit_at"))
)


def _hit_in_redis(shared: Redis, project_id: str, key: str) -> Served | None:
    now = str(time.time())
    found = _remembered.peek(project_id, key)
    if found is not None:  # its stamp is checked by the script
        (remembered_id, image), stamp = found
        hits = _COUNT(
            shared,
            keys=[LIVE_EPOCH.key_for(project_id), HITS_KEY + remembered_id, DIRTY_KEY],
            args=[stamp, remembered_id, "", now, HITS_TTL],
        )
        if hits is not None:
            return Served(*image, "HIT", int(hits), None)
        LIVE_EPOCH.forget(project_id)  # the project's epoch moved on: its entries may be gone
    # The epoch before the row: a deletion committed after this read replaces the epoch after
    # it, so the stamp can only be current if the row read is.
    stamp = LIVE_EPOCH.read(shared, project_id)
    row = _FIND_ENTRY.first(db.engine, {"live_project": project_id, "live_key": key})
    if row is None:
        return None
    entry_id, stored_hits, *image = row
    hits = _COUNT(
        shared,
        keys=[LIVE_EPOCH.key_for(project_id), HITS_KEY + entry_id, DIRTY_KEY],
        args=["", entry_id, stored_hits, now, HITS_TTL],
    )
    _remembered.remember(project_id, key, (entry_id, tuple(image)), stamp)
    return Served(*image, "HIT", int(hits), None)


def flush_hit_counts(batch: int = 500) -> int:
    """Add the hits counted in Redis since the last flush to the entries' `hit_count` (and
    their last hit time). Hits that cannot be written are given back for the next flush.
    Returns how many hits were written."""
    from app import ratelimit

    shared = ratelimit.shared_redis()
    if shared is None:
        return 0
    written = 0
    while claimed := _CLAIM(shared, keys=[DIRTY_KEY], args=[batch, HITS_KEY]):
        rows = [
            {
                "entry": entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
                "hits": int(hits),
                "hit_at": datetime.fromtimestamp(float(at), UTC),
            }
            for entry_id, hits, at in claimed
        ]
        try:
            db.session.execute(_ADD_HITS, rows)
            db.session.commit()
        except Exception:
            db.session.rollback()
            given_back = [value for row in rows for value in (row["entry"], row["hits"])]
            _UNCLAIM(shared, keys=[DIRTY_KEY], args=[HITS_KEY, *given_back])
            raise
        written += sum(row["hits"] for row in rows)
    return written


# --- hits counted in the database -----------------------------------------------------------

_COUNTED = {"hit_count": LiveCacheEntry.hit_count + 1, "last_hit_at": bindparam("hit_at")}
# Built once: a HIT is the hottest path of the API, and building statements costs more than
# running them.
_HIT_POSTGRES = database.DirectRead(
    update(LiveCacheEntry)
    .where(*_ALIVE_ENTRY)
    .values(**_COUNTED)
    .returning(
        *SERVED_COLUMNS,
        LiveCacheEntry.hit_count,
        func.set_config("synchronous_commit", "off", True),
    )
)
_COUNT_HIT = (
    update(LiveCacheEntry)
    .where(LiveCacheEntry.id == bindparam("live_entry"))
    .values(**_COUNTED)
    .returning(LiveCacheEntry.hit_count)
)


def _hit_in_database(project_id: str, key: str) -> Served | None:
    """The hit counted by an UPDATE of its entry, on its own autocommitting connection outside
    the request's transaction. PostgreSQL does it in one round trip: UPDATE … FROM images …
    RETURNING, with the synchronous commit off for that statement — a hit count is worth less
    than a disk flush per image served (a crash may lose the last few increments, never an
    image) — sent straight through the driver (`database.DirectRead`). SQLite cannot return
    columns of the joined table, so there it reads, then updates.
    """
    engine = db.engine
    now = utcnow()
    if engine.dialect.name == "postgresql":
        params = {"live_project": project_id, "live_key": key, "hit_at": now}
        found = _HIT_POSTGRES.first(engine, params)
        if found is None:
            return None
        *image, hits, _ = found
        return Served(*image, "HIT", hits, None)
    params = {"live_project": project_id, "live_key": key}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        found = conn.execute(_FIND_ENTRY.statement, params).first()
        if found is None:
            return None
        entry_id, _, *image = found
        hits = conn.execute(_COUNT_HIT, {"live_entry": entry_id, "hit_at": now}).scalar_one()
    return Served(*image, "HIT", hits, None)


def _reusable(project_id: str, key: str) -> Generation | None:
    """A generation for this key that is running, or finished well but not yet cached."""
    return db.session.scalar(
        select(Generation)
        .outerjoin(Image, Image.id == Generation.output_image_id)
        .where(
            Generation.project_id == project_id,
            Generation.live_cache_key == key,
            Generation.deleted_at.is_(None),
            or_(
                Generation.status.in_(IN_FLIGHT),
                and_(
                    Generation.status == "success",
                    Image.id.is_not(None),
                    Image.deleted_at.is_(None),
                ),
            ),
        )
        .order_by(Generation.created_at.desc())
        .limit(1)
    )


def _generation_for(
    project: Project,
    user: User,
    key: str,
    prompt: str,
    aspect_ratio: str,
    api_key: ApiKey | None,
    admit: Callable[[], None] | None,
    deadline: float,
) -> Generation | Served:
    """The one generation serving this key: found, or started under the single-flight lock."""
    redis = get_redis()
    lock = f"pictor:live:lock:{project.id}:{key}"
    while True:
        running = _reusable(project.id, key)
        if running is not None:
            return running
        token = secrets.token_hex(16)
        if redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
            try:
                cached = hit(project.id, key)
                if cached is not None:
                    return cached
                return _reusable(project.id, key) or _start(
                    project, user, key, prompt, aspect_ratio, api_key, admit
                )
            finally:
                _release(redis, lock, token)
        if time.monotonic() >= deadline:
            raise Timeout("Timed out waiting for the live image")
        db.session.rollback()  # end the read transaction: the next look sees new rows
        time.sleep(POLL_SECONDS)
        cached = hit(project.id, key)
        if cached is not None:
            return cached


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def _release(redis, lock: str, token: str) -> None:  # noqa: ANN001
    """Delete the lock only if it is still ours (it may have expired and been taken)."""
    redis.eval(_RELEASE, 1, lock, token)


def _start(
    project: Project,
    user: User,
    key: str,
    prompt: str,
    aspect_ratio: str,
    api_key: ApiKey | None,
    admit: Callable[[], None] | None,
) -> Generation:
    counted = _count_daily_miss(project)
    try:
        if admit is not None:
            admit()
        from app.services import generations

        gen, _ = generations.create(
            project,
            user,
            {"prompt": prompt, "aspectRatio": aspect_ratio},
            api_key=api_key,
            live_cache_key=key,
        )
    except BaseException:
        if counted:
            _uncount_daily_miss(project)
        raise
    return gen


def _daily_key(project: Project, now: datetime) -> str:
    return f"pictor:live:misses:{project.id}:{now.strftime('%Y-%m-%d')}"


def _count_daily_miss(project: Project) -> bool:
    """Count a MISS against liveDailyLimit (UTC days); 429 past it. True when counted."""
    limit = project.live_daily_limit
    if limit is None:
        return False
    now = datetime.now(UTC)
    redis = get_redis()
    name = _daily_key(project, now)
    used = redis.incr(name)
    redis.expire(name, 2 * 24 * 3600)
    if used > limit:
        redis.decr(name)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        raise RateLimited(
            "The project's daily limit of live generations is reached",
            details={"liveDailyLimit": limit},
            headers={"Retry-After": str(int((midnight - now).total_seconds()) + 1)},
        )
    return True


def _uncount_daily_miss(project: Project) -> None:
    get_redis().decr(_daily_key(project, datetime.now(UTC)))


def _finish(
    project: Project, key: str, prompt: str, aspect_ratio: str, gen: Generation, deadline: float
) -> Served:
    """Wait for the generation, then cache and answer its image."""
    from app.services import generations

    gen_id = gen.id
    if not gen.is_terminal:
        db.session.rollback()
        gen = generations.wait(gen_id, max(0.0, deadline - time.monotonic()))
    if gen.status == "cancelled":
        raise Conflict("The live generation was cancelled", code="INVALID_STATE")
    if gen.status == "failed":
        raise DomainError(
            gen.error_message or "The image could not be generated",
            code=gen.error_code or "PROVIDER_ERROR",
            status=502,
            headers={"X-Generation-Id": gen_id},
        )
    if gen.status != "success":
        raise Timeout(
            "Timed out waiting for the live image",
            details={"generationId": gen_id},
            headers={"X-Generation-Id": gen_id},
        )
    image = db.session.get(Image, gen.output_image_id) if gen.output_image_id else None
    if image is None or image.deleted_at is not None:
        raise Conflict("The live image was deleted", code="INVALID_STATE")
    columns = (image.id, image.storage_key, image.mime_type, image.sha256)
    hit_count = _store(project.id, key, prompt, aspect_ratio, image.id, gen_id)
    return Served(*columns, "MISS", hit_count, gen_id)


def _store(
    project_id: str, key: str, prompt: str, aspect_ratio: str, image_id: str, gen_id: str
) -> int:
    """Point the project's entry for `key` at `image` (insert, or repoint a stale one)."""
    for _attempt in range(2):
        entry = db.session.scalar(
            select(LiveCacheEntry).where(
                LiveCacheEntry.project_id == project_id, LiveCacheEntry.cache_key == key
            )
        )
        if entry is None:
            entry = LiveCacheEntry(
                project_id=project_id,
                cache_key=key,
                prompt=prompt,
                aspect_ratio=aspect_ratio,
                image_id=image_id,
                generation_id=gen_id,
                hit_count=0,
            )
            db.session.add(entry)
        elif entry.image_id != image_id:
            entry.image_id = image_id
            entry.generation_id = gen_id
        try:
            db.session.commit()
        except IntegrityError:  # another waiter stored it first: read theirs
            db.session.rollback()
            continue
        return entry.hit_count
    raise Conflict("The live cache entry could not be stored", code="INVALID_STATE")
