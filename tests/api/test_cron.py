"""/api/cron/reset-credits: bearer secret, due users only, idempotent per period (API.md §10)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import CreditTransaction, User, utcnow
from app.services import credits
from tests import factories

CRON = "/api/cron/reset-credits"
SECRET = "test-cron-secret"  # tests/conftest.py sets CRON_SECRET to this


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_due(user: User, days: int = 1) -> None:
    db.session.execute(
        db.update(User)
        .where(User.id == user.id)
        .values(credits_resets_at=utcnow() - timedelta(days=days))
    )
    db.session.commit()


def fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong-secret"), bearer(""), {"Authorization": SECRET}, {"X-API-Key": SECRET}],
    ids=["missing", "wrong", "empty", "no scheme", "other header"],
)
def test_without_the_right_secret_the_cron_answers_401_and_resets_nobody(client, user, headers):
    make_due(user)
    response = client.post(CRON, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "UNAUTHORIZED"
    assert fresh(user).credits_resets_at < utcnow()


def test_with_no_secret_configured_every_call_is_refused(app, client, user):
    app.config["CRON_SECRET"] = None
    make_due(user)
    assert client.post(CRON, headers=bearer("")).status_code == 401
    assert client.post(CRON, headers=bearer("None")).status_code == 401


def test_due_users_are_reset_and_a_second_call_resets_nobody(client, user):
    credits.debit(user.id, 30, generation_id="gen-cron")
    credits.add(user.id, 9, "topup", note="pack")
    db.session.commit()
    make_due(user)
    not_due = factories.make_user()

    first = client.post(CRON, headers=bearer(SECRET))
    second = client.get(CRON, headers=bearer(SECRET))

    assert first.status_code == 200
    assert first.get_json() == {"message": "Credit reset completed", "resetCount": 1}
    assert second.get_json() == {"message": "Credit reset completed", "resetCount": 0}
    user = fresh(user)
    assert (user.credits_monthly, user.credits_purchased) == (50, 9)
    assert user.credits_resets_at > utcnow() + timedelta(days=27)
    assert fresh(not_due).credits_monthly == 50
    assert credits.ledger_consistent(user.id)


def test_get_is_accepted_too(client, user):
    make_due(user)
    response = client.get(CRON, headers=bearer(SECRET))
    assert response.status_code == 200
    assert response.get_json()["resetCount"] == 1


def test_a_reset_racing_in_flight_debits_loses_no_update(app, backend):
    """Debits before the reset are wiped by it, debits after it count; none is lost."""
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    user = factories.make_user()
    credits.add(user.id, 5, "topup", note="pack")
    make_due(user)
    user_id = user.id  # read before the threads: an expired instance would reload in them
    debits = 30
    barrier = threading.Barrier(debits + 1)
    statuses: list[int] = []

    def debit(i: int) -> None:
        with app.app_context():
            barrier.wait()
            credits.debit(user_id, 1, generation_id=f"race-{i}")
            db.session.commit()
            db.session.remove()

    def reset() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(CRON, headers=bearer(SECRET)).status_code)

    threads = [threading.Thread(target=debit, args=(i,)) for i in range(debits)]
    threads.insert(debits // 2, threading.Thread(target=reset))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200]
    rows = db.session.scalars(
        select(CreditTransaction).where(CreditTransaction.user_id == user_id)
    ).all()
    reset_row = next(r for r in rows if r.type == "reset" and r.note is None)
    # The reset set the monthly bucket to the allowance: it took back exactly what the debits
    # before it had spent, and every debit after it is still in the balance.
    spent_before_reset = reset_row.monthly_delta
    spent_after_reset = debits - spent_before_reset
    user = fresh(user)
    assert user.credits_balance == 50 + 5 - spent_after_reset
    assert user.credits_monthly == 50 - spent_after_reset
    assert credits.ledger_consistent(user.id)
