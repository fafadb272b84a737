"""POST /webhooks/stripe: signatures, replays, and which events change anything (API.md §10)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, StripeEvent, User
from tests.fakes.stripe import WEBHOOK_SECRET, make_event, signed_headers


@pytest.fixture
def app_config():
    return {"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "TOPUP_CREDITS": 500}


def topup_event(user: User, session_id: str = "cs_test_topup1") -> dict:
    return make_event(
        "checkout.session.completed",
        {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "payment_status": "paid",
            "client_reference_id": user.id,
            "customer": "cus_webhook1",
            "metadata": {"user_id": user.id, "kind": "topup"},
        },
    )


def post(client, payload: str, headers: dict[str, str] | None):
    return client.post("/webhooks/stripe", data=payload, headers=headers or {})


def writes() -> tuple[int, int]:
    """(stripe event rows, ledger rows): what a refused webhook must not change."""
    events = db.session.scalar(select(func.count()).select_from(StripeEvent))
    rows = db.session.scalar(select(func.count()).select_from(CreditTransaction))
    return events, rows


def purchased(user: User) -> int:
    db.session.expire_all()
    return db.session.get(User, user.id).credits_purchased


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "missing header", "old timestamp", "future timestamp", "tampered body"],
)
def test_bad_signatures_are_refused_and_nothing_is_written(client, user, case):
    payload = json.dumps(topup_event(user))
    headers = {
        "wrong secret": signed_headers(payload, secret="whsec_someone_else"),
        "missing header": {"Content-Type": "application/json"},
        "old timestamp": signed_headers(payload, timestamp=int(time.time()) - 301),
        "future timestamp": signed_headers(payload, timestamp=int(time.time()) + 301),
        "tampered body": signed_headers(payload.replace("payment", "subscription", 1)),
    }[case]
    before = writes()

    response = post(client, payload, headers)

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "INVALID_SIGNATURE"
    assert writes() == before
    assert purchased(user) == 0


def test_a_little_clock_skew_is_accepted(client, user):
    payload = json.dumps(topup_event(user))
    response = post(client, payload, signed_headers(payload, timestamp=int(time.time()) + 30))
    assert response.status_code == 200
    assert purchased(user) == 500


def test_webhook_without_a_configured_secret_answers_503_and_writes_nothing(app, client, user):
    app.config["STRIPE_WEBHOOK_SECRET"] = None
    payload = json.dumps(topup_event(user))
    before = writes()

    response = post(client, payload, signed_headers(payload))

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "WEBHOOK_NOT_CONFIGURED"
    assert writes() == before


def test_a_signed_body_that_is_not_json_is_a_400(client):
    response = post(client, "not json", signed_headers("not json"))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "INVALID_JSON"


def test_a_topup_is_credited_and_a_replay_changes_nothing(client, user):
    payload = json.dumps(topup_event(user))

    first = post(client, payload, signed_headers(payload))
    second = post(client, payload, signed_headers(payload))

    assert first.status_code == 200 and first.get_json()["result"] == "applied"
    assert second.status_code == 200 and second.get_json()["result"] == "duplicate"
    assert purchased(user) == 500
    topups = db.session.scalars(
        select(CreditTransaction).where(CreditTransaction.type == "topup")
    ).all()
    assert [(t.amount, t.dedupe_key) for t in topups] == [(500, "topup:cs_test_topup1")]
    assert db.session.get(User, user.id).stripe_customer_id == "cus_webhook1"


def test_the_same_purchase_in_two_events_is_credited_once(client, user):
    """completed and async_payment_succeeded both name the session: one top-up."""
    completed = topup_event(user, "cs_test_twice")
    succeeded = dict(
        completed, id="evt_test_async", type="checkout.session.async_payment_succeeded"
    )
    for event in (completed, succeeded):
        payload = json.dumps(event)
        assert post(client, payload, signed_headers(payload)).status_code == 200
    assert purchased(user) == 500


def test_an_unpaid_checkout_waits_for_async_payment_succeeded(client, user):
    pending = topup_event(user, "cs_test_async")
    pending["data"]["object"]["payment_status"] = "unpaid"
    payload = json.dumps(pending)
    assert post(client, payload, signed_headers(payload)).get_json()["result"] == "ignored"
    assert purchased(user) == 0

    paid = make_event(
        "checkout.session.async_payment_succeeded",
        dict(pending["data"]["object"], payment_status="paid"),
    )
    payload = json.dumps(paid)
    assert post(client, payload, signed_headers(payload)).get_json()["result"] == "applied"
    assert purchased(user) == 500


def test_other_event_types_are_acknowledged_and_ignored(client, user):
    payload = json.dumps(make_event("customer.created", {"id": "cus_x", "object": "customer"}))
    before = writes()
    response = post(client, payload, signed_headers(payload))
    assert response.status_code == 200
    assert response.get_json()["result"] == "ignored"
    assert writes() == before


def test_a_setup_session_buys_nothing(client, user):
    event = topup_event(user, "cs_test_setup")
    event["data"]["object"].update(mode="setup", payment_status="no_payment_required")
    payload = json.dumps(event)
    assert post(client, payload, signed_headers(payload)).get_json()["result"] == "ignored"
    assert purchased(user) == 0
