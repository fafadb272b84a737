"""The credit ledger (API.md §8, DESIGN.md "Money and credits").

Every balance change is one conditional UPDATE plus one ledger row in the same transaction.
The UPDATE also stores the deltas it applied (computed from the row as it stood) and returns
them, so the ledger row is exact without ever reading a balance and writing it back.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Integer,
    Update,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError

from app import database
from app.errors import InsufficientCredits, Invalid
from app.extensions import db
from app.models import TRANSACTION_TYPES, CreditTransaction, User, utcnow


def monthly_allowance(tier: str) -> int:
    key = "PRO_MONTHLY_CREDITS" if tier == "pro" else "FREE_MONTHLY_CREDITS"
    return int(current_app.config[key])


def next_reset(after: datetime) -> datetime:
    """Same day next month (clamped to the month's length), same time of day."""
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    day = min(after.day, calendar.monthrange(year, month)[1])
    return after.replace(year=year, month=month, day=day)


def _balance_update(
    user_id: Any,
    monthly_delta: Any,
    purchased_delta: Any,
    *,
    condition: ColumnElement[bool] | None = None,
    extra_values: dict[str, Any] | None = None,
) -> Update:
    """The conditional UPDATE of both buckets, which stores the deltas it applied (computed
    from the row as it stands) and returns them with the new balances."""
    values = {
        "credits_monthly": User.credits_monthly + monthly_delta,
        "credits_purchased": User.credits_purchased + purchased_delta,
        "last_monthly_delta": monthly_delta,
        "last_purchased_delta": purchased_delta,
        **(extra_values or {}),
    }
    return (
        update(User)
        .where(User.id == user_id, condition if condition is not None else true())
        .values(values)
        .returning(
            User.credits_monthly,
            User.credits_purchased,
            User.last_monthly_delta,
            User.last_purchased_delta,
        )
    )


# Every generation's request debits: that UPDATE is built once, its cost and user bound
# parameters (building and caching it per call was ~0.3 ms of CPU).
_COST = bindparam("cost", type_=Integer)
_FROM_MONTHLY = case((User.credits_monthly >= _COST, _COST), else_=User.credits_monthly)
_DEBIT = _balance_update(
    bindparam("user_id"),
    -_FROM_MONTHLY,
    -(_COST - _FROM_MONTHLY),
    condition=User.credits_monthly + User.credits_purchased >= _COST,
)


def _apply(
    user_id: str,
    type_: str,
    statement: Update,
    params: dict[str, Any] | None = None,
    *,
    generation_id: str | None = None,
    note: str | None = None,
    dedupe_key: str | None = None,
) -> CreditTransaction | None:
    """A balance UPDATE (`_balance_update`) plus its ledger row; None if its WHERE failed.

    The UPDATE goes on the session's connection, inside its transaction, without the ORM's
    bookkeeping for a bulk statement (~0.4 ms of CPU): a loaded User reads its buckets
    again instead."""
    row = db.session.connection().execute(statement, params or {}).first()
    if row is None:
        return None
    database.expire_loaded(db.session(), User, user_id)
    monthly, purchased, d_monthly, d_purchased = (int(v) for v in row)
    entry = CreditTransaction(
        user_id=user_id,
        type=type_,
        amount=d_monthly + d_purchased,
        monthly_delta=d_monthly,
        purchased_delta=d_purchased,
        balance_after=monthly + purchased,
        generation_id=generation_id,
        note=note,
        dedupe_key=dedupe_key,
    )
    db.session.add(entry)
    db.session.flush()
    return entry


def debit(
    user_id: str, cost: int, *, generation_id: str | None = None, note: str | None = None
) -> CreditTransaction:
    """Take `cost` credits, monthly bucket first. Does not commit: the caller commits the
    debit together with what it paid for. InsufficientCredits when the balance is too low."""
    if cost < 0:
        raise ValueError("cost must be >= 0")
    entry = _apply(
        user_id,
        "usage",
        _DEBIT,
        {"user_id": user_id, "cost": cost},
        generation_id=generation_id,
        note=note,
        dedupe_key=f"usage:{generation_id}" if generation_id else None,
    )
    if entry is None:
        raise InsufficientCredits(
            "Not enough credits", details={"required": cost, "balance": balance(user_id)}
        )
    return entry


def refund(generation_id: str, *, note: str | None = None) -> CreditTransaction | None:
    """Give back what a generation was charged, to the buckets it came from, exactly once.

    Returns the refund row, or None when nothing was charged or it was already refunded.
    Commits; the unique dedupe key settles a race between two refund paths.
    """
    usage = db.session.scalar(
        select(CreditTransaction).where(CreditTransaction.dedupe_key == f"usage:{generation_id}")
    )
    if usage is None or usage.amount == 0:
        return None
    if _exists(f"refund:{generation_id}"):
        return None
    try:
        with db.session.begin_nested():
            entry = _apply(
                usage.user_id,
                "refund",
                _balance_update(usage.user_id, -usage.monthly_delta, -usage.purchased_delta),
                generation_id=generation_id,
                note=note,
                dedupe_key=f"refund:{generation_id}",
            )
    except IntegrityError:
        db.session.rollback()
        return None
    db.session.commit()
    return entry


def _exists(dedupe_key: str) -> bool:
    found = db.session.scalar(
        select(CreditTransaction.id).where(CreditTransaction.dedupe_key == dedupe_key)
    )
    return found is not None


def add(
    user_id: str,
    amount: int,
    type_: str,
    *,
    bucket: str = "purchased",
    note: str | None = None,
    dedupe_key: str | None = None,
) -> CreditTransaction | None:
    """Add credits (`topup`, `grant`) or change them (`adjustment`, may be negative).

    A negative adjustment never takes the bucket below zero. Idempotent with a dedupe_key:
    returns None when that key was already applied. Commits.
    """
    if type_ not in ("topup", "grant", "adjustment"):
        raise Invalid(f"Unknown credit operation {type_!r}")
    if bucket not in ("monthly", "purchased"):
        raise Invalid("bucket must be monthly or purchased")
    if amount < 0 and type_ != "adjustment":
        raise Invalid("Only an adjustment may be negative", code="INVALID_AMOUNT")
    if dedupe_key and _exists(dedupe_key):
        return None
    column = User.credits_monthly if bucket == "monthly" else User.credits_purchased
    deltas = (amount, 0) if bucket == "monthly" else (0, amount)
    try:
        with db.session.begin_nested():
            entry = _apply(
                user_id,
                type_,
                _balance_update(user_id, *deltas, condition=column + amount >= 0),
                note=note,
                dedupe_key=dedupe_key,
            )
    except IntegrityError:
        db.session.rollback()
        return None
    if entry is None:
        db.session.rollback()
        raise Invalid("That would take the balance below zero", code="INVALID_AMOUNT")
    db.session.commit()
    return entry


def reset_monthly(
    user_id: str, *, now: datetime | None = None, force: bool = False, note: str | None = None
) -> CreditTransaction | None:
    """Set the monthly bucket to the tier's allowance when its period has ended (or `force`).

    The UPDATE is guarded by `credits_resets_at`, so two resets racing for one period apply
    once; and it sets the bucket from the row as it stands, so a racing debit is not lost.
    Returns the ledger row, or None when the user was not due. Commits.
    """
    now = now or utcnow()
    tier = db.session.scalar(select(User.tier).where(User.id == user_id))
    if tier is None:
        return None
    allowance = monthly_allowance(tier)
    due = or_(User.credits_resets_at.is_(None), User.credits_resets_at <= now)
    entry = _apply(
        user_id,
        "reset",
        _balance_update(
            user_id,
            literal(allowance) - User.credits_monthly,
            0,
            condition=None if force else due,
            extra_values={"credits_resets_at": next_reset(now)},
        ),
        note=note,
    )
    db.session.commit()
    return entry


def reset_due(*, now: datetime | None = None, force_all: bool = False) -> int:
    """Reset every user whose period ended (everyone with force_all). Returns how many."""
    now = now or utcnow()
    query = select(User.id)
    if not force_all:
        query = query.where(or_(User.credits_resets_at.is_(None), User.credits_resets_at <= now))
    return sum(
        1
        for user_id in db.session.scalars(query).all()
        if reset_monthly(user_id, now=now, force=force_all) is not None
    )


def balance(user_id: str) -> int:
    row = db.session.execute(
        select(User.credits_monthly + User.credits_purchased).where(User.id == user_id)
    ).scalar()
    return int(row or 0)


def ledger_balance(user_id: str) -> int:
    total = db.session.scalar(
        select(func.coalesce(func.sum(CreditTransaction.amount), 0)).where(
            CreditTransaction.user_id == user_id
        )
    )
    return int(total or 0)


def ledger_consistent(user_id: str) -> bool:
    """True when the user's balance equals the sum of their ledger rows."""
    return ledger_balance(user_id) == balance(user_id)


def transactions(
    user_id: str, *, type_: str | None = None, limit: int = 20, offset: int = 0
) -> tuple[list[CreditTransaction], int]:
    if type_ is not None and type_ not in TRANSACTION_TYPES:
        raise Invalid(
            f"type must be one of: {', '.join(TRANSACTION_TYPES)}",
            details={"type": "unknown transaction type"},
        )
    query = select(CreditTransaction).where(CreditTransaction.user_id == user_id)
    if type_:
        query = query.where(CreditTransaction.type == type_)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(CreditTransaction.created_at.desc(), CreditTransaction.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)
