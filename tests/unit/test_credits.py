"""The credit ledger: buckets, exact-once refunds, idempotent resets, no overdraft."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.errors import InsufficientCredits, Invalid
from app.extensions import db
from app.models import CreditTransaction, User, utcnow
from app.services import credits
from tests import factories


def _reload(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def test_new_user_gets_the_free_allowance_as_a_reset_row(user):
    assert user.credits_monthly == 50
    assert user.credits_purchased == 0
    rows, total = credits.transactions(user.id)
    assert total == 1
    assert rows[0].type == "reset" and rows[0].amount == 50 and rows[0].balance_after == 50
    assert user.credits_resets_at is not None


def test_debit_takes_monthly_first_then_purchased(user):
    credits.add(user.id, 10, "topup", note="top-up")
    db.session.execute(db.update(User).where(User.id == user.id).values(credits_monthly=3))
    db.session.commit()
    row = credits.debit(user.id, 5, generation_id="g-1")
    db.session.commit()
    user = _reload(user)
    assert (user.credits_monthly, user.credits_purchased) == (0, 8)
    assert (row.monthly_delta, row.purchased_delta, row.amount) == (-3, -2, -5)
    assert row.balance_after == 8


def test_debit_refuses_when_balance_is_too_low_and_changes_nothing(user):
    with pytest.raises(InsufficientCredits):
        credits.debit(user.id, 51, generation_id="g-x")
    db.session.rollback()
    assert _reload(user).credits_balance == 50
    assert credits.transactions(user.id)[1] == 1


def test_refund_returns_to_the_buckets_it_came_from_exactly_once(user):
    credits.add(user.id, 10, "topup")
    db.session.execute(db.update(User).where(User.id == user.id).values(credits_monthly=1))
    db.session.commit()
    credits.debit(user.id, 4, generation_id="g-2")
    db.session.commit()
    first = credits.refund("g-2", note="failed")
    second = credits.refund("g-2", note="failed again")
    user = _reload(user)
    assert first is not None and first.amount == 4
    assert second is None
    assert (user.credits_monthly, user.credits_purchased) == (1, 10)
    refunds = db.session.scalar(select(func.count()).where(CreditTransaction.type == "refund"))
    assert refunds == 1


def test_refund_of_an_uncharged_generation_does_nothing(user):
    assert credits.refund("never-charged") is None


def test_reset_is_idempotent_within_a_period_and_keeps_purchased(user):
    credits.add(user.id, 7, "topup")
    credits.debit(user.id, 20, generation_id="g-3")
    db.session.commit()
    assert credits.reset_due() == 0  # period has not ended yet
    later = utcnow() + timedelta(days=32)
    assert credits.reset_due(now=later) == 1
    assert credits.reset_due(now=later) == 0
    user = _reload(user)
    assert (user.credits_monthly, user.credits_purchased) == (50, 7)
    assert credits.ledger_consistent(user.id)


def test_negative_adjustment_cannot_go_below_zero(user):
    with pytest.raises(Invalid):
        credits.add(user.id, -51, "adjustment", bucket="monthly")
    row = credits.add(user.id, -10, "adjustment", bucket="monthly", note="goodwill fix")
    assert row.amount == -10 and _reload(user).credits_balance == 40


def test_dedupe_key_applies_a_topup_once(user):
    assert credits.add(user.id, 500, "topup", dedupe_key="topup:cs_1") is not None
    assert credits.add(user.id, 500, "topup", dedupe_key="topup:cs_1") is None
    assert _reload(user).credits_purchased == 500


def test_ledger_matches_balance_after_mixed_operations(user):
    credits.add(user.id, 5, "grant", note="welcome")
    for i in range(3):
        credits.debit(user.id, 2, generation_id=f"g-m{i}")
        db.session.commit()
    credits.refund("g-m1")
    credits.reset_monthly(user.id, force=True)
    assert credits.ledger_consistent(user.id)


def test_concurrent_debits_never_overdraw(app, backend):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    user = factories.make_user()
    db.session.execute(db.update(User).where(User.id == user.id).values(credits_monthly=10))
    db.session.commit()
    user_id = user.id  # threads must not touch the test's session (or its objects)
    accepted: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        with app.app_context():
            try:
                credits.debit(user_id, 1, generation_id=f"c-{i}")
                db.session.commit()
            except InsufficientCredits:
                db.session.rollback()
            else:
                with lock:
                    accepted.append(f"c-{i}")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    user = _reload(user)
    assert len(accepted) == 10
    assert user.credits_balance == 0
    usage = db.session.scalar(select(func.count()).where(CreditTransaction.type == "usage"))
    assert usage == 10
