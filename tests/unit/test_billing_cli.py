"""`flask credits reset [--all]` and `flask credits grant EMAIL N` (API.md §11)."""

from __future__ import annotations

from datetime import timedelta

from app.extensions import db
from app.models import User, utcnow
from app.services import credits
from tests import factories


def fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def test_reset_resets_only_users_whose_period_ended(runner, user):
    other = factories.make_user()
    credits.debit(user.id, 20, generation_id="gen-cli-1")
    credits.debit(other.id, 20, generation_id="gen-cli-2")
    db.session.commit()
    db.session.execute(
        db.update(User).where(User.id == user.id).values(credits_resets_at=utcnow() - timedelta(1))
    )
    db.session.commit()

    result = runner.invoke(args=["credits", "reset"])
    again = runner.invoke(args=["credits", "reset"])

    assert result.exit_code == 0, result.output
    assert "Reset the monthly credits of 1 user" in result.output
    assert "of 0 users" in again.output
    assert fresh(user).credits_monthly == 50
    assert fresh(other).credits_monthly == 30


def test_reset_all_resets_everyone_now(runner, user):
    other = factories.make_user()
    credits.debit(other.id, 7, generation_id="gen-cli-3")
    db.session.commit()
    result = runner.invoke(args=["credits", "reset", "--all"])
    assert result.exit_code == 0, result.output
    assert "of 2 users" in result.output
    assert fresh(other).credits_monthly == 50


def test_grant_adds_purchased_credits_as_a_grant_row(runner, user):
    result = runner.invoke(args=["credits", "grant", user.email.upper(), "40"])
    assert result.exit_code == 0, result.output
    assert "balance is now 90" in result.output
    rows, _ = credits.transactions(user.id, type_="grant")
    assert [(r.amount, r.note) for r in rows] == [(40, "Granted from the command line")]
    assert fresh(user).credits_purchased == 40


def test_grant_refuses_unknown_users_and_non_positive_amounts(runner, user):
    unknown = runner.invoke(args=["credits", "grant", "nobody@example.com", "5"])
    zero = runner.invoke(args=["credits", "grant", user.email, "0"])
    assert unknown.exit_code != 0 and "No user with email" in unknown.output
    assert zero.exit_code != 0
    assert credits.transactions(user.id, type_="grant")[1] == 0
