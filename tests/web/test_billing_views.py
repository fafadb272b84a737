"""The billing page, Checkout and Portal redirects against a fake Stripe, and the success page."""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import CreditTransaction, User
from app.services import credits
from tests import factories
from tests.fakes.stripe import (
    PRICE_PRO,
    PRICE_TOPUP,
    FakeStripe,
    fake_stripe,
    make_event,
    signed_headers,
)

__all__ = ["fake_stripe"]  # the fixture, imported for pytest


@pytest.fixture
def app_config(fake_stripe):
    return fake_stripe.config(TOPUP_CREDITS=500, PRO_MONTHLY_CREDITS=1000)


@pytest.fixture
def signed_in(client, user, auth):
    auth.login(user.email)
    return client


def page(client, path: str = "/billing", **kwargs) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def start_checkout(client, kind: str, request_key: str | None = None):
    token = form_token(page(client))
    data = {"csrf_token": token, "kind": kind}
    if request_key:
        data["request_key"] = request_key
    return client.post("/billing/checkout", data=data)


def set_customer(user: User, customer: str = "cus_existing") -> None:
    db.session.get(User, user.id).stripe_customer_id = customer
    db.session.commit()


def purchased(user: User) -> int:
    db.session.expire_all()
    return db.session.get(User, user.id).credits_purchased


def test_the_page_shows_plan_buckets_reset_date_and_the_purchase_buttons(signed_in, user):
    credits.add(user.id, 25, "topup", note="earlier pack")
    html = page(signed_in)
    assert "Billing &amp; credits" in html
    assert ">75<" in html  # balance
    assert "50 monthly · 25 purchased" in html
    assert user.credits_resets_at.strftime("%b") in html
    assert "Upgrade to Pro" in html and "Buy credits" in html
    assert "Manage subscription" not in html  # no Stripe customer yet
    assert "No invoices yet" in html
    assert "earlier pack" in html  # credit history


def test_without_stripe_the_page_says_so_and_offers_no_purchase(app, signed_in):
    app.config["STRIPE_SECRET_KEY"] = None
    html = page(signed_in)
    assert "Billing is not configured" in html
    for label in ("Upgrade to Pro", "Buy credits", "Manage subscription"):
        assert label not in html


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/billing")
    assert response.status_code in (302, 303)
    assert "/login" in response.headers["Location"]


def test_upgrade_redirects_to_a_subscription_checkout_for_this_user(
    signed_in, user, fake_stripe: FakeStripe
):
    response = start_checkout(signed_in, "pro")

    assert response.status_code == 303
    assert response.headers["Location"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    sent = fake_stripe.last("POST", "/v1/checkout/sessions")
    params = sent["params"]
    assert params["mode"] == "subscription"
    assert params["line_items[0][price]"] == PRICE_PRO
    assert params["client_reference_id"] == user.id
    assert params["customer_email"] == user.email
    assert "customer" not in params
    assert params["subscription_data[metadata][user_id]"] == user.id
    assert params["success_url"].endswith("/billing/success?session_id={CHECKOUT_SESSION_ID}")
    assert params["cancel_url"].endswith("/billing/cancel")
    assert sent["headers"]["Idempotency-Key"].startswith(f"checkout-{user.id}-pro-")


def test_buying_credits_reuses_the_stripe_customer(signed_in, user, fake_stripe: FakeStripe):
    set_customer(user)
    response = start_checkout(signed_in, "topup")

    assert response.status_code == 303
    params = fake_stripe.last("POST", "/v1/checkout/sessions")["params"]
    assert params["mode"] == "payment"
    assert params["line_items[0][price]"] == PRICE_TOPUP
    assert params["customer"] == "cus_existing"
    assert "customer_email" not in params and "customer_creation" not in params


def test_a_double_submitted_form_sends_the_same_idempotency_key(signed_in, fake_stripe):
    start_checkout(signed_in, "topup", request_key="3b8f6c1e-0d7a-4f4e-9a51-1f0b2c3d4e5f")
    start_checkout(signed_in, "topup", request_key="3b8f6c1e-0d7a-4f4e-9a51-1f0b2c3d4e5f")
    calls = fake_stripe.calls("POST", "/v1/checkout/sessions")
    keys = {call["headers"]["Idempotency-Key"] for call in calls}
    assert len(keys) == 1


def test_checkout_needs_the_csrf_token(signed_in, fake_stripe):
    response = signed_in.post("/billing/checkout", data={"kind": "pro"})
    assert response.status_code == 400
    assert fake_stripe.calls("POST", "/v1/checkout/sessions") == []


def test_a_pro_user_cannot_buy_pro_again(signed_in, user, fake_stripe):
    db.session.get(User, user.id).tier = "pro"
    db.session.commit()
    assert "Upgrade to Pro" not in page(signed_in)
    assert start_checkout(signed_in, "pro").status_code == 409
    assert fake_stripe.calls("POST", "/v1/checkout/sessions") == []


def test_stripe_failing_shows_an_error_page_not_a_crash(signed_in, fake_stripe):
    fake_stripe.fail_with = 400
    response = start_checkout(signed_in, "topup")
    assert response.status_code == 503
    assert "payment service is unavailable" in response.get_data(as_text=True)


def test_manage_subscription_redirects_to_the_billing_portal(signed_in, user, fake_stripe):
    set_customer(user, "cus_portal")
    html = page(signed_in)
    assert "Manage subscription" in html

    response = signed_in.post("/billing/portal", data={"csrf_token": form_token(html)})

    assert response.status_code == 303
    assert response.headers["Location"].startswith("https://billing.stripe.com/p/session/")
    params = fake_stripe.last("POST", "/v1/billing_portal/sessions")["params"]
    assert params["customer"] == "cus_portal"
    assert params["return_url"].endswith("/billing")


def test_the_portal_needs_a_stripe_customer(signed_in, fake_stripe):
    response = signed_in.post("/billing/portal", data={"csrf_token": form_token(page(signed_in))})
    assert response.status_code == 409
    assert fake_stripe.calls("POST", "/v1/billing_portal/sessions") == []


def test_invoices_are_listed_with_their_hosted_links(signed_in, user, fake_stripe):
    set_customer(user, "cus_inv")
    paid = fake_stripe.add_invoice("cus_inv", number="PIC-0042", amount_paid=1900)
    html = page(signed_in)
    assert 'hx-get="/billing/invoices"' in html

    fragment = page(signed_in, "/billing/invoices", headers={"HX-Request": "true"})

    assert "PIC-0042" in fragment and "19.00 USD" in fragment
    assert paid["hosted_invoice_url"] in fragment
    assert fake_stripe.last("GET", "/v1/invoices")["params"]["customer"] == "cus_inv"


def test_invoices_say_unavailable_when_stripe_is_down(signed_in, user, fake_stripe):
    set_customer(user, "cus_down")
    fake_stripe.fail_with = 400
    fragment = page(signed_in, "/billing/invoices", headers={"HX-Request": "true"})
    assert "Invoices unavailable" in fragment


def test_invoices_url_opened_directly_goes_to_the_billing_page(signed_in):
    response = signed_in.get("/billing/invoices")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/billing#invoices")


def test_credit_history_filters_by_type_and_pages(signed_in, user):
    for i in range(25):
        credits.debit(user.id, 1, generation_id=f"gen-{i:02d}")
        db.session.commit()
    credits.add(user.id, 3, "grant", note="a present")

    usage = page(signed_in, "/billing?type=usage")
    assert usage.count('<span class="badge badge--danger">usage</span>') == 20
    assert "a present" not in usage
    assert 'rel="next" href="/billing?type=usage&amp;offset=20' in usage

    second = page(signed_in, "/billing?type=usage&offset=20")
    assert second.count('<span class="badge badge--danger">usage</span>') == 5

    grants = page(signed_in, "/billing?type=grant")
    assert "a present" in grants and "+3" in grants


def test_credit_history_alone_for_htmx(signed_in):
    fragment = page(signed_in, "/billing?type=reset", headers={"HX-Request": "true"})
    assert fragment.lstrip().startswith('<div id="history">')
    assert "Welcome allowance" in fragment


def test_an_unknown_history_type_is_a_400(signed_in):
    assert signed_in.get("/billing?type=bogus").status_code == 400


def test_success_page_credits_a_paid_top_up_once(signed_in, user, fake_stripe):
    start_checkout(signed_in, "topup")
    session = fake_stripe.complete_session(next(iter(fake_stripe.sessions)))

    html = page(signed_in, f"/billing/success?session_id={session['id']}")
    page(signed_in, f"/billing/success?session_id={session['id']}")  # reload

    assert "500 credits have been added" in html
    assert purchased(user) == 500
    assert db.session.get(User, user.id).stripe_customer_id == session["customer"]

    # The webhook for the same purchase arrives afterwards: nothing more.
    payload = json.dumps(make_event("checkout.session.completed", session))
    response = signed_in.post("/webhooks/stripe", data=payload, headers=signed_headers(payload))
    assert response.status_code == 200
    assert purchased(user) == 500


def test_success_page_starts_pro_and_the_later_webhook_does_not_reset_again(
    signed_in, user, fake_stripe
):
    start_checkout(signed_in, "pro")
    session = fake_stripe.complete_session(next(iter(fake_stripe.sessions)))
    assert "Welcome to Pro" in page(signed_in, f"/billing/success?session_id={session['id']}")
    credits.debit(user.id, 10, generation_id="gen-after-upgrade")
    db.session.commit()

    payload = json.dumps(make_event("checkout.session.completed", session))
    signed_in.post("/webhooks/stripe", data=payload, headers=signed_headers(payload))

    db.session.expire_all()
    fresh = db.session.get(User, user.id)
    assert (fresh.tier, fresh.credits_monthly) == ("pro", 990)
    assert fresh.stripe_subscription_id == session["subscription"]


def test_success_page_for_an_unpaid_session_says_processing(signed_in, user, fake_stripe):
    start_checkout(signed_in, "topup")
    session_id = next(iter(fake_stripe.sessions))
    html = page(signed_in, f"/billing/success?session_id={session_id}")
    assert "Payment processing" in html
    assert purchased(user) == 0


def test_someone_elses_session_is_not_found(signed_in, user, fake_stripe):
    other = factories.make_user()
    session = fake_stripe.add_session(client_reference_id=other.id)
    fake_stripe.complete_session(session["id"])
    assert signed_in.get(f"/billing/success?session_id={session['id']}").status_code == 404
    assert signed_in.get("/billing/success?session_id=../../v1/invoices").status_code == 404
    assert purchased(other) == 0


def test_cancel_page_says_nothing_was_charged(signed_in):
    assert "Nothing was charged" in page(signed_in, "/billing/cancel")


def test_webhook_and_success_page_racing_credit_once(app, backend, user, fake_stripe):
    if backend != "postgres":
        pytest.skip("real concurrency needs PostgreSQL")
    session = fake_stripe.add_session(client_reference_id=user.id)
    session = fake_stripe.complete_session(session["id"])
    payload = json.dumps(make_event("checkout.session.completed", session))
    browsers = []
    for _ in range(3):
        browser = app.test_client()
        factories.AuthActions(browser).login(user.email)
        browsers.append(browser)
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def webhook() -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/webhooks/stripe", data=payload, headers=signed_headers(payload))
        statuses.append(response.status_code)

    def success(browser) -> None:
        barrier.wait()
        statuses.append(browser.get(f"/billing/success?session_id={session['id']}").status_code)

    threads = [threading.Thread(target=webhook) for _ in range(3)]
    threads += [threading.Thread(target=success, args=(b,)) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * 6
    assert purchased(user) == 500
    assert db.session.scalar(select(func.count()).where(CreditTransaction.type == "topup")) == 1
    assert credits.ledger_consistent(user.id)


def test_success_url_the_sdk_sent_is_absolute(signed_in, fake_stripe):
    start_checkout(signed_in, "pro")
    success_url = fake_stripe.last("POST", "/v1/checkout/sessions")["params"]["success_url"]
    parts = urlsplit(success_url)
    assert parts.scheme == "http" and parts.netloc == "localhost"
    assert parse_qs(parts.query) == {"session_id": ["{CHECKOUT_SESSION_ID}"]}
