"""Stripe events end in the right tier and credits, once, whatever their order (API.md §10)."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, StripeEvent, User, utcnow
from app.services import credits
from tests.fakes.stripe import (
    WEBHOOK_SECRET,
    invoice,
    make_event,
    signed_headers,
    subscription,
)

PRO = 1000
FREE = 50


@pytest.fixture
def app_config():
    return {
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PRO_MONTHLY_CREDITS": PRO,
        "FREE_MONTHLY_CREDITS": FREE,
    }


def send(client, event: dict) -> str:
    payload = json.dumps(event)
    response = client.post("/webhooks/stripe", data=payload, headers=signed_headers(payload))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["result"]


def fresh(user: User) -> User:
    db.session.expire_all()
    return db.session.get(User, user.id)


def subscription_checkout(user: User, session_id="cs_test_sub1", sub="sub_1", cus="cus_1"):
    return make_event(
        "checkout.session.completed",
        {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "payment_status": "paid",
            "client_reference_id": user.id,
            "customer": cus,
            "subscription": sub,
            "metadata": {"user_id": user.id, "kind": "pro"},
        },
    )


def cycle_invoice(user: User | None, sub="sub_1", cus="cus_1", reason="subscription_cycle"):
    metadata = {"user_id": user.id} if user else {}
    return make_event(
        "invoice.paid",
        invoice(cus, subscription=sub, billing_reason=reason, metadata=metadata),
    )


def deleted(user: User, sub="sub_1", cus="cus_1"):
    return make_event(
        "customer.subscription.deleted",
        subscription(sub, cus, metadata={"user_id": user.id}, status="canceled"),
    )


def resets(user: User) -> list[str | None]:
    rows = db.session.scalars(
        select(CreditTransaction)
        .where(CreditTransaction.user_id == user.id, CreditTransaction.type == "reset")
        .order_by(CreditTransaction.created_at)
    ).all()
    return [row.note for row in rows]


def spend(user: User, amount: int, tag: str) -> None:
    credits.debit(user.id, amount, generation_id=f"gen-{tag}")
    db.session.commit()


def test_subscription_lifecycle_checkout_renewal_and_cancellation(client, user):
    assert send(client, subscription_checkout(user)) == "applied"
    user = fresh(user)
    assert (user.tier, user.credits_monthly) == ("pro", PRO)
    assert (user.stripe_customer_id, user.stripe_subscription_id) == ("cus_1", "sub_1")
    first_period_end = user.credits_resets_at

    spend(user, 300, "a")
    assert send(client, cycle_invoice(user)) == "applied"
    user = fresh(user)
    assert user.credits_monthly == PRO
    assert user.credits_resets_at >= first_period_end

    spend(user, 100, "b")
    assert send(client, deleted(user)) == "applied"
    user = fresh(user)
    assert (user.tier, user.stripe_subscription_id) == ("free", None)
    assert user.credits_monthly == PRO - 100  # kept until the period ends
    assert user.stripe_customer_id == "cus_1"  # invoices and the portal stay reachable

    credits.reset_due(now=user.credits_resets_at + timedelta(seconds=1))
    assert fresh(user).credits_monthly == FREE
    assert resets(user) == [
        "Welcome allowance",
        "Pro plan started",
        "Pro plan renewed",
        None,
    ]
    assert credits.ledger_consistent(user.id)


def test_the_first_invoice_of_a_subscription_does_not_reset_again(client, user):
    send(client, subscription_checkout(user))
    spend(fresh(user), 10, "c")
    assert send(client, cycle_invoice(user, reason="subscription_create")) == "ignored"
    assert fresh(user).credits_monthly == PRO - 10


def test_invoice_paid_before_checkout_ends_pro_with_one_fresh_allowance(client, user):
    """The renewal arrives first, for a customer we have not seen: the subscription's
    metadata names the user. The late checkout event then changes nothing but ids."""
    assert send(client, cycle_invoice(user)) == "applied"
    user = fresh(user)
    assert (user.tier, user.credits_monthly, user.stripe_customer_id) == ("pro", PRO, "cus_1")

    spend(user, 5, "d")
    assert send(client, subscription_checkout(user)) == "applied"
    user = fresh(user)
    assert (user.tier, user.credits_monthly) == ("pro", PRO - 5)
    assert user.stripe_subscription_id == "sub_1"
    assert resets(user) == ["Welcome allowance", "Pro plan renewed"]


def test_subscription_deleted_before_checkout_leaves_the_user_on_free(client, user):
    assert send(client, deleted(user)) == "applied"
    assert send(client, subscription_checkout(user)) == "applied"
    user = fresh(user)
    assert (user.tier, user.credits_monthly, user.stripe_subscription_id) == ("free", FREE, None)
    assert user.stripe_customer_id == "cus_1"
    # …and a renewal of the ended subscription cannot revive it.
    assert send(client, cycle_invoice(user)) == "ignored"
    assert fresh(user).tier == "free"


def test_ending_an_old_subscription_does_not_downgrade_the_current_one(client, user):
    send(client, subscription_checkout(user, session_id="cs_test_new", sub="sub_new"))
    assert send(client, deleted(user, sub="sub_old")) == "applied"
    assert fresh(user).tier == "pro"


def test_invoice_for_an_unknown_customer_is_ignored_and_not_remembered(client, user):
    event = cycle_invoice(None, cus="cus_stranger", sub="sub_stranger")
    assert send(client, event) == "ignored"
    assert db.session.get(StripeEvent, event["id"]) is None  # a resend may still apply it
    assert fresh(user).tier == "free"


def test_a_renewal_replayed_resets_once(client, user):
    send(client, subscription_checkout(user))
    renewal = cycle_invoice(user)
    assert send(client, renewal) == "applied"
    spend(fresh(user), 7, "e")
    assert send(client, renewal) == "duplicate"
    assert fresh(user).credits_monthly == PRO - 7


def _post_concurrently(app, payloads: list[tuple[str, dict[str, str]]]) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(payloads))

    def deliver(payload: str, headers: dict[str, str]) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/webhooks/stripe", data=payload, headers=headers)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver, args=item) for item in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_the_same_event_delivered_concurrently_is_applied_once(app, backend, user):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    event = make_event(
        "checkout.session.completed",
        {
            "id": "cs_test_race",
            "object": "checkout.session",
            "mode": "payment",
            "payment_status": "paid",
            "client_reference_id": user.id,
            "customer": "cus_race",
        },
    )
    payload = json.dumps(event)
    statuses = _post_concurrently(app, [(payload, signed_headers(payload))] * 8)

    assert statuses == [200] * 8
    user = fresh(user)
    assert user.credits_purchased == app.config["TOPUP_CREDITS"]
    topups = db.session.scalar(select(func.count()).where(CreditTransaction.type == "topup"))
    assert topups == 1
    assert db.session.get(StripeEvent, event["id"]) is not None
    assert credits.ledger_consistent(user.id)


def test_a_subscription_checkout_delivered_concurrently_starts_pro_once(app, backend, user):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    # Two distinct events for one session (completed + async success) racing each other.
    first = subscription_checkout(user, session_id="cs_test_subrace")
    second = dict(first, id="evt_test_subrace_2", type="checkout.session.async_payment_succeeded")
    payloads = []
    for event in (first, second) * 3:
        payload = json.dumps(dict(event, id=f"{event['id']}-{len(payloads)}"))
        payloads.append((payload, signed_headers(payload)))
    assert _post_concurrently(app, payloads) == [200] * 6
    user = fresh(user)
    assert (user.tier, user.credits_monthly) == ("pro", PRO)
    assert resets(user) == ["Welcome allowance", "Pro plan started"]
    assert credits.ledger_consistent(user.id)


def test_the_period_after_a_renewal_starts_at_the_renewal(client, user):
    send(client, subscription_checkout(user))
    before = utcnow()
    send(client, cycle_invoice(user))
    resets_at = fresh(user).credits_resets_at
    assert resets_at - before > timedelta(days=27)
