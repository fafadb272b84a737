"""Webhooks to clients (API.md §9), signed the Standard Webhooks way.

A generation that ends with a `webhookUrl` gets one delivery row, written in the same
transaction as its ending. A delivery is tried by a job on the maintenance queue; a failed try
(non-2xx, no answer in 10 s, refused address) schedules the next one with exponential backoff
through RQ's scheduler, up to 6 tries in all. The `webhook-id` is the delivery's id, so it is the
same on every retry. A periodic job picks up deliveries whose scheduled try was lost.

Each try first claims the row with a conditional UPDATE (a short lease), so two jobs for the same
delivery never both send it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import urllib3
from flask import current_app
from sqlalchemy import or_, select, update

from app.errors import Invalid, ServiceUnavailable
from app.extensions import db
from app.models import Generation, Image, Project, WebhookDelivery, utcnow
from app.observability import current_request_id

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
MAX_URL_LENGTH = 2048
UNSAFE_URL_CHARACTER = re.compile(r"[\x00-\x20\x7f]")
EVENT_TYPES = {"success": "generation.completed", "failed": "generation.failed"}
DELIVER_JOB = "jobs.maintenance.deliver_webhook"
_LEASE = timedelta(seconds=60)
# RQ's scheduler works in whole seconds, so a delayed try may start up to a second early.
_EARLY = timedelta(seconds=1)
_MISSED_AFTER = timedelta(seconds=5)
_DUE_BATCH = 200
_MAX_ERROR = 500


class RefusedDestination(Exception):
    """The URL's host resolves to an address webhooks may not be sent to."""


def validate_url(url: object) -> str:
    """An http(s) URL with a host; a literal private address is refused unless allowed."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise _bad_url(f"must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if UNSAFE_URL_CHARACTER.search(url):  # urlsplit would quietly drop some of them
        raise _bad_url("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed [IPv6] host
        raise _bad_url("must be an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad_url("must be an http(s) URL")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and _forbidden(literal) and not _allow_private():
        raise _bad_url("private, loopback and link-local addresses are not allowed")
    return url


def _bad_url(reason: str) -> Invalid:
    return Invalid(
        f"webhookUrl {reason}", code="INVALID_WEBHOOK_URL", details={"webhookUrl": reason}
    )


def _allow_private() -> bool:
    return bool(current_app.config.get("WEBHOOK_ALLOW_PRIVATE"))


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_destination(url: str) -> str:
    """The address to deliver to: the host's first address, after checking that every address
    it resolves to is public (unless WEBHOOK_ALLOW_PRIVATE); RefusedDestination otherwise, or
    when it does not resolve. The delivery connects to this address, so a name that resolves
    elsewhere a moment later (DNS rebinding) cannot send it to a private one."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedDestination(f"cannot resolve {parts.hostname}: {exc}") from exc
    addresses = [info[4][0].split("%", 1)[0] for info in infos]
    if not addresses:
        raise RefusedDestination(f"cannot resolve {parts.hostname}")
    if not _allow_private() and any(_forbidden(ipaddress.ip_address(a)) for a in addresses):
        raise RefusedDestination(f"{parts.hostname} resolves to a non-public address")
    return addresses[0]


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the whsec_ secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def schedule(generation: Generation, output: Image | None) -> WebhookDelivery | None:
    """Add the delivery for a generation that just ended (not committed). None without a URL."""
    event_type = EVENT_TYPES.get(generation.status)
    if not generation.webhook_url or event_type is None:
        return None
    from app.api import serializers

    delivery = WebhookDelivery(
        project_id=generation.project_id,
        generation_id=generation.id,
        url=generation.webhook_url,
        event_type=event_type,
        payload={"type": event_type, "data": serializers.generation(generation, output)},
        next_attempt_at=utcnow(),
    )
    db.session.add(delivery)
    db.session.flush()
    return delivery


def enqueue(delivery_id: str, delay: float | None = None) -> None:
    """Queue a try; if the queue is down the periodic sweep of due deliveries sends it later."""
    from app import queue

    try:
        queue.enqueue(queue.MAINTENANCE_QUEUE, DELIVER_JOB, delivery_id, delay=delay, result_ttl=60)
    except ServiceUnavailable:
        log.warning("webhook %s not queued; the periodic sweep will send it", delivery_id)


def backoff(attempt: int) -> float:
    """Seconds to wait after failed try number `attempt` (1-based): base × 4^(attempt-1)."""
    return float(current_app.config["WEBHOOK_RETRY_BASE_SECONDS"]) * 4 ** (attempt - 1)


def deliver(delivery_id: str) -> bool:
    """Make one try of a delivery. True when the receiver answered 2xx."""
    attempt = _claim(delivery_id)
    if attempt is None:
        return False
    status_code, error = _post(attempt)
    ok = status_code is not None and 200 <= status_code < 300
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        return ok
    delivery.last_status_code = status_code
    delivery.last_error = error[:_MAX_ERROR] if error else None
    retry_in = None
    if ok:
        delivery.status, delivery.delivered_at = "delivered", utcnow()
        delivery.next_attempt_at = None
    elif delivery.attempts >= MAX_ATTEMPTS or (error or "").startswith("refused:"):
        delivery.status, delivery.next_attempt_at = "failed", None
    else:
        retry_in = backoff(delivery.attempts)
        delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
    db.session.commit()
    if retry_in is not None:
        enqueue(delivery_id, delay=retry_in)
    return ok


@dataclass(frozen=True)
class _Attempt:
    id: str
    url: str
    payload: dict[str, Any]
    secret: str


def _claim(delivery_id: str) -> _Attempt | None:
    """Take the delivery for one try (attempts + 1, a lease), or None if it is not due."""
    now = utcnow()
    due = now + _EARLY
    claimed = db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= due),
        )
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + _LEASE)
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        return None
    delivery = db.session.get(WebhookDelivery, delivery_id, populate_existing=True)
    secret = db.session.scalar(
        select(Project.webhook_secret).where(Project.id == delivery.project_id)
    )
    attempt = _Attempt(delivery.id, delivery.url, delivery.payload, secret or "")
    db.session.commit()  # no database connection is held while the receiver answers
    return attempt


def _post(attempt: _Attempt) -> tuple[int | None, str | None]:
    try:
        address = check_destination(attempt.url)
    except RefusedDestination as exc:
        log.warning("webhook %s refused: %s", attempt.id, exc)
        return None, f"refused: {exc}"
    body = json.dumps(attempt.payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Pictor-Webhooks/1",
        "webhook-id": attempt.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(attempt.secret, attempt.id, timestamp, body),
    }
    request_id = current_request_id()
    if request_id:  # the id of the API request that created the generation
        headers["X-Request-Id"] = request_id
    try:
        status = _send(attempt.url, address, body, headers)
    except urllib3.exceptions.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


def _send(url: str, address: str, body: bytes, headers: dict[str, str]) -> int:
    """POST `body` to `url` over a connection to `address` (checked by check_destination):
    the Host header, TLS server name and certificate check are the URL's host's. No
    redirects, no retries (a failed try is retried later, with backoff). The status code."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    timeout = urllib3.Timeout(total=float(current_app.config["WEBHOOK_TIMEOUT_SECONDS"]))
    if parts.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    with pool:
        response = pool.urlopen(
            "POST", target, body=body, headers={**headers, "Host": host}, redirect=False
        )
        return response.status


def deliver_due(now: datetime | None = None) -> int:
    """Queue the tries whose time has passed without being made (lost schedule, dead worker)."""
    now = now or utcnow()
    ids = db.session.scalars(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now - _MISSED_AFTER,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(_DUE_BATCH)
    ).all()
    db.session.commit()
    for delivery_id in ids:
        enqueue(delivery_id)
    return len(ids)
