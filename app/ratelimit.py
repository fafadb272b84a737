"""Rate limits for /api/v1 (API.md §3), applied centrally: no route is decorated by hand.

Two budgets per caller: generation-creating requests share `RATELIMIT_GENERATIONS`, every
other /api/v1 request shares `RATELIMIT_DEFAULT`. The counters live in Flask-Limiter's storage
(Redis when `REDIS_URL` is set, so every gunicorn process and machine shares them) and are
counted in its fixed windows, on Redis in one round trip (`_COUNT`), which also reads
the auth epoch that remembered API keys are checked against (app/services/api_keys.py). The
caller is the API key (by id), else the signed-in user, else the client address (a request that
fails authentication is counted too).

Every /api/v1 response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the
window resets) for the budget the request was counted against; a 429 adds `Retry-After`.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, request
from flask.wrappers import Response
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from redis import Redis
from redis.exceptions import RedisError

from app import epochs
from app.errors import RateLimited, ServiceUnavailable, Unauthorized
from app.extensions import limiter
from app.redis_scripts import SharedScript
from app.services import api_keys

API_PREFIX = "/api/v1/"
GENERATION_ENDPOINTS = frozenset(
    {
        "api.create_generation",
        "api.regenerate_generation",
        "api.retry_generation",
        "api.upscale_image",
    }
)
DEFAULT_BUDGET = "default"
GENERATION_BUDGET = "generations"
_SETTING = {DEFAULT_BUDGET: "RATELIMIT_DEFAULT", GENERATION_BUDGET: "RATELIMIT_GENERATIONS"}
# Count a request and read its window in one round trip. Flask-Limiter's fixed window takes
# three (the increment script, then GET and TTL for the headers); the key and its expiry are
# the same as its, so both count in the same windows. KEYS[2] is the auth epoch, read here to
# save API-key authentication a round trip of its own; KEYS[3], when given, the epoch the
# request's endpoint asked for (`read_epoch_with_count`).
_COUNT = SharedScript("""
local count = redis.call("INCRBY", KEYS[1], 1)
local ttl = redis.call("TTL", KEYS[1])
if ttl < 0 then
    redis.call("EXPIRE", KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {count, ttl, redis.call("MGET", unpack(KEYS, 2))}
""")
# endpoint → the key of the epoch its requests read with their count, from the view arguments
_EPOCH_FOR: dict[str, Callable[[dict[str, Any]], str | None]] = {}


@dataclass(frozen=True)
class Window:
    limit: int
    remaining: int
    reset_in: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_in),
        }


def _item(budget: str) -> RateLimitItem:
    return _parse(current_app.config[_SETTING[budget]])


@functools.lru_cache(maxsize=64)
def _parse(setting: str) -> RateLimitItem:
    return parse(setting)


def shared_redis() -> Redis | None:
    """The Redis that every process shares the counters (and the auth epoch) through; None
    with memory:// storage (one process)."""
    storage = limiter.storage
    return storage.get_connection() if isinstance(storage, RedisStorage) else None


def shared_redis_is_the_queues() -> bool:
    """Whether `shared_redis` is the queue's Redis (RATELIMIT_STORAGE_URI = REDIS_URL, the
    default), so that what the queue's subscribers listen for can be published on it."""
    config = current_app.config
    return bool(config.get("REDIS_URL")) and config.get("RATELIMIT_STORAGE_URI") == config.get(
        "REDIS_URL"
    )


def read_epoch_with_count(endpoint: str, key_for: Callable[[dict[str, Any]], str | None]) -> None:
    """Have the requests of `endpoint` read an epoch (its key from the view arguments, or
    None for none) in their count's round trip; the view finds it with `epoch_read`."""
    _EPOCH_FOR[endpoint] = key_for


def epoch_key_for(endpoint: str | None, view_args: dict[str, Any]) -> str | None:
    """The key of the epoch the requests of `endpoint` read with their count, if any."""
    key_for = _EPOCH_FOR.get(endpoint or "")
    return key_for(view_args) if key_for is not None else None


def epoch_read() -> str | None:
    """The epoch this request read with its count ("" when Redis has none), or None when it
    read none (no Redis, or an endpoint that asks for none)."""
    return g.get("endpoint_epoch")


@dataclass(frozen=True)
class Counted:
    """One request counted: for whom, whether it was within the limit, the window, and the
    epochs read with the count ("" when Redis has none; None when none was read)."""

    budget: str
    identity: str
    allowed: bool
    window: Window
    auth_epoch: str | None = None
    endpoint_epoch: str | None = None


# Where a request counted before Flask saw it (app.fastpath) leaves its count for `consume`.
COUNTED_KEY = "pictor.counted"


def count(budget: str, identity: str, epoch_key: str | None = None) -> Counted:
    """Count one request of `identity` against `budget` in the storage. On Redis, the auth
    epoch is read with it, and the epoch at `epoch_key` when given. RedisError when Redis is
    unreachable."""
    item = _item(budget)
    storage = limiter.storage
    if isinstance(storage, RedisStorage):
        key = storage.prefixed_key(item.key_for(budget, identity))
        keys = [key, api_keys.EPOCH_KEY] + ([epoch_key] if epoch_key is not None else [])
        hits, ttl, found = _COUNT(storage.get_connection(), keys=keys, args=[item.get_expiry()])
        window = Window(item.amount, max(0, item.amount - int(hits)), max(0, int(ttl)))
        return Counted(
            budget,
            identity,
            int(hits) <= item.amount,
            window,
            epochs.value_of(found[0]),
            epochs.value_of(found[1]) if epoch_key is not None else None,
        )
    allowed = limiter.limiter.hit(item, budget, identity)  # memory:// (one process, tests)
    stats = limiter.limiter.get_window_stats(item, budget, identity)
    reset_in = max(0, math.ceil(stats.reset_time - time.time()))
    return Counted(budget, identity, allowed, Window(item.amount, stats.remaining, reset_in))


def consume(budget: str, identity: str) -> Window:
    """Count one request of `identity` against `budget` (unless it was counted before Flask
    saw it); RateLimited (429) when it is spent.

    The window is remembered for the response headers of the current request, the auth
    epoch read with it in `g.auth_epoch`, and the endpoint's epoch in `g.endpoint_epoch`.
    """
    counted = request.environ.pop(COUNTED_KEY, None)
    if counted is None or (counted.budget, counted.identity) != (budget, identity):
        try:
            counted = count(
                budget, identity, epoch_key_for(request.endpoint, request.view_args or {})
            )
        except RedisError as exc:
            raise ServiceUnavailable("Rate limit storage is unavailable") from exc
    g.rate_window = counted.window
    if counted.auth_epoch is not None:
        g.auth_epoch = counted.auth_epoch
    if counted.endpoint_epoch is not None:
        g.endpoint_epoch = counted.endpoint_epoch
    if not counted.allowed:
        item = _item(budget)
        raise RateLimited(
            f"Rate limit of {item.amount} per {item.multiples} {item.GRANULARITY.name} exceeded",
            details={"limit": item.amount, "budget": budget},
            headers={"Retry-After": str(max(1, counted.window.reset_in))},
        )
    return counted.window


def key_identity(key_id: str) -> str:
    return f"key:{key_id}"


def caller_identity() -> str:
    """Whom a /api/v1 request is counted for: `key:<id>`, `user:<id>` or `ip:<address>`."""
    from app.api.auth import current_principal

    try:
        found = current_principal()
    except Unauthorized:
        return f"ip:{request.remote_addr or 'unknown'}"
    if found.api_key_id is not None:
        return key_identity(found.api_key_id)
    return f"user:{found.user_id}"


def budget_for(endpoint: str | None) -> str:
    return GENERATION_BUDGET if endpoint in GENERATION_ENDPOINTS else DEFAULT_BUDGET


def init_app(app: Flask) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config.get("REDIS_URL") or "memory://")
    limiter.init_app(app)

    @app.before_request
    def count_api_request() -> None:
        if request.path.startswith(API_PREFIX):
            consume(budget_for(request.endpoint), caller_identity())

    @app.after_request
    def rate_limit_headers(response: Response) -> Response:
        window = g.get("rate_window")
        if window is not None:
            response.headers.update(window.headers())
        return response
