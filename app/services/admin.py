"""The admin pages' operations: users, credit corrections, resets, queue health, failures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError
from sqlalchemy import select

from app.errors import Invalid, not_found
from app.extensions import db
from app.models import CreditTransaction, Generation, Project, User, is_uuid
from app.services import accounts, credits

log = logging.getLogger(__name__)

MAX_NOTE = 500


@dataclass(frozen=True)
class QueueCounts:
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    state: str
    queues: list[str]
    last_heartbeat: datetime | None


@dataclass(frozen=True)
class QueueHealth:
    queues: list[QueueCounts]
    workers: list[WorkerInfo]


@dataclass(frozen=True)
class FailedGeneration:
    generation: Generation
    project_name: str
    user_email: str


def get_user(user_id: str) -> User:
    user = db.session.get(User, user_id) if is_uuid(user_id) else None
    if user is None:
        raise not_found("User")
    return user


def change_credits(
    admin: User, user_id: str, *, kind: str, amount: int, bucket: str, note: str
) -> CreditTransaction | None:
    """A `grant` (adds) or an `adjustment` (adds or removes), with a note naming the admin."""
    note = (note or "").strip()
    if not note:
        raise Invalid("Say why in a note", code="NOTE_REQUIRED", details={"note": "required"})
    if len(note) > MAX_NOTE:
        raise Invalid(f"Keep the note under {MAX_NOTE} characters", details={"note": "too long"})
    if kind not in ("grant", "adjustment"):
        raise Invalid("Choose a grant or an adjustment", details={"kind": "unknown"})
    if amount == 0 or (kind == "grant" and amount < 0):
        raise Invalid(
            "A grant must be a positive number of credits"
            if kind == "grant"
            else "An adjustment must not be zero",
            code="INVALID_AMOUNT",
            details={"amount": "invalid"},
        )
    user = get_user(user_id)
    return credits.add(user.id, amount, kind, bucket=bucket, note=f"{note} (by {admin.email})")


def reset_user(admin: User, user_id: str) -> CreditTransaction | None:
    """Set one user's monthly bucket to their allowance now and start a new period."""
    user = get_user(user_id)
    return credits.reset_monthly(user.id, force=True, note=f"Reset by {admin.email}")


def reset_everyone() -> int:
    """Every user's monthly bucket back to their allowance now, whatever their period."""
    return credits.reset_due(force_all=True)


def set_disabled(admin: User, user_id: str, disabled: bool) -> User:
    """Disable (ending every session) or re-enable an account. Never your own."""
    user = get_user(user_id)
    if user.id == admin.id:
        raise Invalid("You cannot disable your own account", code="CANNOT_DISABLE_SELF")
    accounts.set_disabled(user, disabled)
    return user


def recent_transactions(user_id: str, *, limit: int = 10) -> list[CreditTransaction]:
    rows, _ = credits.transactions(user_id, limit=limit)
    return rows


def queue_health() -> QueueHealth | None:
    """Job counts per queue and the live workers, from RQ; None when Redis is unreachable."""
    from rq import Queue, Worker

    from app.queue import GENERATION_QUEUE, MAINTENANCE_QUEUE, get_redis

    try:
        conn = get_redis()
        counts = []
        for name in (GENERATION_QUEUE, MAINTENANCE_QUEUE):
            queue = Queue(name, connection=conn)
            counts.append(
                QueueCounts(
                    name=name,
                    queued=queue.count,
                    started=queue.started_job_registry.count,
                    failed=queue.failed_job_registry.count,
                    scheduled=queue.scheduled_job_registry.count,
                )
            )
        workers = [
            WorkerInfo(
                name=worker.name,
                state=str(getattr(worker.get_state(), "value", worker.get_state())),
                queues=worker.queue_names(),
                last_heartbeat=worker.last_heartbeat,
            )
            for worker in Worker.all(connection=conn)
        ]
    except (RedisError, OSError) as exc:
        log.warning("queue health unavailable: %s", exc)
        return None
    return QueueHealth(queues=counts, workers=sorted(workers, key=lambda w: w.name))


def failed_generations(*, limit: int = 10) -> list[FailedGeneration]:
    """The latest failed generations, newest first, with their project and owner."""
    rows = db.session.execute(
        select(Generation, Project.name, User.email)
        .join(Project, Project.id == Generation.project_id)
        .join(User, User.id == Generation.user_id)
        .where(Generation.status == "failed")
        .order_by(Generation.created_at.desc(), Generation.id.desc())
        .limit(limit)
    ).all()
    return [FailedGeneration(gen, name, email) for gen, name, email in rows]
