"""Rate limits for /api/v1 (API.md §3), applied centrally: no route is decorated by hand.

Two budgets per caller: generation-creating requests share `RATELIMIT_GENERATIONS`, every
other /api/v1 request shares `RATELIMIT_DEFAULT`. The counters live in Flask-Limiter's storage
(Redis when `REDIS_URL` is set, so every gunicorn process and machine shares them) and are
counted with its fixed-window strategy. The caller is the API key (by id), else the signed-in
user, else the client address (a request that fails authentication is counted too).

Every /api/v1 response carries `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until the
window resets) for the budget the request was counted against; a 429 adds `Retry-After`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from flask.wrappers import Response
from limits import RateLimitItem, parse
from redis.exceptions import RedisError

from app.errors import RateLimited, ServiceUnavailable, Unauthorized
from app.extensions import limiter

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
    return parse(current_app.config[_SETTING[budget]])


def consume(budget: str, identity: str) -> Window:
    """Count one request of `identity` against `budget`; RateLimited (429) when it is spent.

    The window is remembered for the response headers of the current request.
    """
    item = _item(budget)
    try:
        allowed = limiter.limiter.hit(item, budget, identity)
        stats = limiter.limiter.get_window_stats(item, budget, identity)
    except RedisError as exc:
        raise ServiceUnavailable("Rate limit storage is unavailable") from exc
    window = Window(
        limit=item.amount,
        remaining=stats.remaining,
        reset_in=max(0, math.ceil(stats.reset_time - time.time())),
    )
    g.rate_window = window
    if not allowed:
        raise RateLimited(
            f"Rate limit of {item.amount} per {item.multiples} {item.GRANULARITY.name} exceeded",
            details={"limit": item.amount, "budget": budget},
            headers={"Retry-After": str(max(1, window.reset_in))},
        )
    return window


def caller_identity() -> str:
    """Whom a /api/v1 request is counted for: `key:<id>`, `user:<id>` or `ip:<address>`."""
    from app.api.auth import current_principal

    try:
        found = current_principal()
    except Unauthorized:
        return f"ip:{request.remote_addr or 'unknown'}"
    if found.api_key is not None:
        return f"key:{found.api_key.id}"
    return f"user:{found.user.id}"


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
