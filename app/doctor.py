"""`flask --app wsgi doctor`: check a deployment, one line per check (API.md §11).

Each check answers OK, WARN (works, but not as a production deployment should) or FAIL
(broken). A check that raises is a FAIL with the error as its detail, so one broken
dependency never hides the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select, text

from app.extensions import db
from app.observability import brief

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<9}  {self.detail}"


def _embedded() -> bool:
    return not current_app.config.get("REDIS_URL")


def check_database() -> tuple[str, str]:
    db.session.execute(text("SELECT 1"))
    return OK, db.engine.url.render_as_string(hide_password=True)


def check_schema() -> tuple[str, str]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(current_app.extensions["migrate"].directory).get_heads())
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # no chatter
    with db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    wanted = ", ".join(sorted(heads))
    if current == heads:
        return OK, f"at head {wanted}"
    if not current:
        return FAIL, f"no schema version; run `flask --app wsgi db upgrade` (head is {wanted})"
    return FAIL, f"at {', '.join(sorted(current))}, head is {wanted}; run `flask db upgrade`"


def check_redis() -> tuple[str, str]:
    if _embedded():
        return OK, "embedded in-process queue (REDIS_URL unset: one process only)"
    from redis.exceptions import ResponseError

    from app.queue import get_redis

    conn = get_redis()
    conn.ping()
    try:
        policy = conn.config_get("maxmemory-policy").get("maxmemory-policy")
    except ResponseError:
        return WARN, "reachable; cannot read maxmemory-policy (CONFIG disabled?): keep noeviction"
    if policy != "noeviction":
        return WARN, f"maxmemory-policy is {policy}: Redis may evict jobs and locks; use noeviction"
    return OK, "reachable, maxmemory-policy noeviction"


def check_storage() -> tuple[str, str]:
    from app.storage import get_storage

    get_storage().check()
    config = current_app.config
    where = config["S3_BUCKET"] if config["STORAGE_BACKEND"] == "s3" else config["STORAGE_DIR"]
    return OK, f"{config['STORAGE_BACKEND']} {where} writable"


def check_workers() -> tuple[str, str]:
    if _embedded():
        return OK, "embedded worker thread in the web process"
    from rq import Worker

    from app.queue import QUEUES, get_redis

    workers = Worker.all(connection=get_redis())
    if not workers:
        return WARN, "no RQ worker alive; start `flask --app wsgi worker`"
    served = {name for worker in workers for name in worker.queue_names()}
    missing = [name for name in QUEUES if name not in served]
    hosts = ", ".join(sorted({worker.hostname or "?" for worker in workers}))
    if missing:
        return WARN, f"{len(workers)} alive on {hosts}, none serving {', '.join(missing)}"
    return OK, f"{len(workers)} alive on {hosts}"


def check_scheduler() -> tuple[str, str]:
    """RQ's scheduler (retries, delayed webhooks) holds a lock per queue, and one process
    leads the periodic jobs (stuck sweep, webhook retries, credit reset, purge)."""
    if _embedded():
        return OK, "embedded scheduler in the web process"
    from rq.scheduler import RQScheduler

    from app.queue import CRON_LEADER_KEY, QUEUES, get_redis

    conn = get_redis()
    problems = [
        f"no scheduler holds {name}"
        for name in QUEUES
        if not conn.exists(RQScheduler.get_locking_key(name))
    ]
    if not conn.exists(CRON_LEADER_KEY):
        problems.append("no process leads the periodic jobs")
    if problems:
        return WARN, f"{'; '.join(problems)}: retries and periodic jobs wait; start a worker"
    return OK, f"running for {', '.join(QUEUES)}; periodic jobs led"


def inconsistent_ledgers(limit: int = 5) -> tuple[int, list[tuple[str, int, int]]]:
    """Users whose balance differs from the sum of their ledger rows, in one grouped query.

    The same rule as credits.ledger_consistent, for everyone at once and from one snapshot.
    Returns how many users differ and the first `limit` as (email, balance, ledger sum).
    """
    from app.models import CreditTransaction, User

    ledger = (
        select(CreditTransaction.user_id, func.sum(CreditTransaction.amount).label("total"))
        .group_by(CreditTransaction.user_id)
        .subquery()
    )
    balance = User.credits_monthly + User.credits_purchased
    total = func.coalesce(ledger.c.total, 0)
    rows = db.session.execute(
        select(User.email, balance, total)
        .outerjoin(ledger, ledger.c.user_id == User.id)
        .where(balance != total)
        .order_by(User.email)
    ).all()
    return len(rows), [(email, int(bal), int(led)) for email, bal, led in rows[:limit]]


def check_ledger() -> tuple[str, str]:
    from app.models import User

    users = db.session.scalar(select(func.count()).select_from(User)) or 0
    count, sample = inconsistent_ledgers()
    if count:
        shown = "; ".join(f"{email} balance {bal} vs ledger {led}" for email, bal, led in sample)
        return FAIL, f"{count} of {users} users' balances differ from their ledger: {shown}"
    return OK, f"{users} users, every balance equals the sum of its ledger"


CHECKS: list[tuple[str, Callable[[], tuple[str, str]]]] = [
    ("database", check_database),
    ("schema", check_schema),
    ("redis", check_redis),
    ("storage", check_storage),
    ("workers", check_workers),
    ("scheduler", check_scheduler),
    ("ledger", check_ledger),
]


def run_checks() -> list[Check]:
    results = []
    for name, probe in CHECKS:
        try:
            status, detail = probe()
        except Exception as exc:  # noqa: BLE001  (a broken dependency is the answer, not a crash)
            db.session.rollback()
            status, detail = FAIL, brief(exc)
        results.append(Check(name, status, detail))
    return results
