"""Stripe: Checkout, the Billing Portal, invoices, and the events that change tiers and credits.

Money arrives by two roads that may both run, in any order, even at the same time: the signed
webhook (`handle_event`) and the customer's return to the success page (`confirm_checkout`).
Both end in `_fulfil_checkout`, which is keyed by the Checkout Session id, so a purchase is
credited once whichever road gets there first (API.md §10, docs/decisions.md "Billing").
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Invalid, ServiceUnavailable, not_found
from app.extensions import db
from app.models import StripeEvent, User, is_uuid
from app.services import credits

log = logging.getLogger(__name__)

KINDS = ("pro", "topup")
# Stripe's own tolerance for old signatures; we apply the same bound to future ones.
SIGNATURE_TOLERANCE = 300
PAID = ("paid", "no_payment_required")
_SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")
_REQUEST_KEY = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx"}
_ZERO_DECIMAL |= {"vnd", "vuv", "xaf", "xof", "xpf"}


@dataclass(frozen=True)
class Options:
    """What the billing page may offer this user."""

    configured: bool
    upgrade: bool
    topup: bool
    portal: bool


@dataclass(frozen=True)
class Invoice:
    number: str | None
    created: datetime
    amount: int
    currency: str
    status: str | None
    url: str | None
    pdf: str | None

    @property
    def display_amount(self) -> str:
        if self.currency.lower() in _ZERO_DECIMAL:
            return f"{self.amount:,} {self.currency.upper()}"
        return f"{self.amount / 100:,.2f} {self.currency.upper()}"


@dataclass(frozen=True)
class CheckoutOutcome:
    """What the success page tells the customer: `paid` or `pending`, for `pro` or `topup`."""

    status: str
    kind: str | None


# --- configuration and the client -------------------------------------------------------------


def configured() -> bool:
    return bool(current_app.config.get("STRIPE_SECRET_KEY"))


def options(user: User) -> Options:
    config = current_app.config
    ready = configured()
    return Options(
        configured=ready,
        upgrade=ready and bool(config.get("STRIPE_PRICE_PRO")) and user.tier != "pro",
        topup=ready and bool(config.get("STRIPE_PRICE_TOPUP")),
        portal=ready and bool(user.stripe_customer_id),
    )


def _client() -> stripe.StripeClient:
    """One client per app and settings (it keeps its HTTP connections)."""
    secret = current_app.config.get("STRIPE_SECRET_KEY")
    if not secret:
        raise ServiceUnavailable(
            "Payments are not configured on this server", code="BILLING_NOT_CONFIGURED"
        )
    base = current_app.config.get("STRIPE_API_BASE")
    cached = current_app.extensions.get("pictor.stripe")
    if cached is not None and cached[0] == (secret, base):
        return cached[1]
    client = stripe.StripeClient(
        secret,
        base_addresses={"api": base} if base else None,
        max_network_retries=2,
        http_client=stripe.RequestsClient(timeout=20),
    )
    current_app.extensions["pictor.stripe"] = ((secret, base), client)
    return client


@contextmanager
def _calling_stripe(what: str) -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as exc:
        log.warning("Stripe %s failed: %s", what, exc)
        raise ServiceUnavailable(
            "The payment service is unavailable right now; try again in a moment"
        ) from exc


# --- starting payments ------------------------------------------------------------------------


def create_checkout(
    user: User, kind: str, success_url: str, cancel_url: str, *, request_key: str | None = None
) -> str:
    """A Checkout Session for Pro (subscription) or a credit pack (one-time); returns its URL.

    `request_key` (from the form) makes a double submit return the same session.
    """
    if kind not in KINDS:
        raise Invalid("kind must be pro or topup", details={"kind": "unknown"})
    if kind == "pro" and user.tier == "pro":
        raise Conflict("You are already on the Pro plan", code="ALREADY_PRO")
    price = current_app.config.get("STRIPE_PRICE_PRO" if kind == "pro" else "STRIPE_PRICE_TOPUP")
    if not price:
        raise ServiceUnavailable(
            "This purchase is not configured on this server", code="BILLING_NOT_CONFIGURED"
        )
    params: dict[str, Any] = {
        "mode": "subscription" if kind == "pro" else "payment",
        "line_items": [{"price": price, "quantity": 1}],
        "client_reference_id": user.id,
        "metadata": {"user_id": user.id, "kind": kind},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if kind == "pro":
        # The subscription carries the user too, so its invoices and its end find them
        # even when they arrive before the checkout event (docs/decisions.md).
        params["subscription_data"] = {"metadata": {"user_id": user.id}}
    else:
        params["invoice_creation"] = {"enabled": True}
    if user.stripe_customer_id:
        params["customer"] = user.stripe_customer_id
    else:
        params["customer_email"] = user.email
        if kind == "topup":
            params["customer_creation"] = "always"
    if not request_key or not _REQUEST_KEY.match(request_key):
        request_key = str(uuid.uuid4())
    with _calling_stripe("checkout session create"):
        session = _client().v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"checkout-{user.id}-{kind}-{request_key}"},
        )
    return str(session.url)


def create_portal(user: User, return_url: str) -> str:
    """A Billing Portal session for the user's Stripe customer; returns its URL."""
    if not user.stripe_customer_id:
        raise Conflict("There is no subscription to manage yet", code="NO_STRIPE_CUSTOMER")
    with _calling_stripe("portal session create"):
        portal = _client().v1.billing_portal.sessions.create(
            params={"customer": user.stripe_customer_id, "return_url": return_url}
        )
    return str(portal.url)


def list_invoices(user: User, *, limit: int = 12) -> list[Invoice] | None:
    """The user's invoices, newest first; None when Stripe cannot be reached right now."""
    if not configured() or not user.stripe_customer_id:
        return []
    try:
        found = _client().v1.invoices.list(
            params={"customer": user.stripe_customer_id, "limit": limit}
        )
    except stripe.StripeError as exc:
        log.warning("Stripe invoice list failed: %s", exc)
        return None
    rows = []
    for item in found.data:
        raw = item.to_dict()
        rows.append(
            Invoice(
                number=raw.get("number"),
                created=datetime.fromtimestamp(int(raw.get("created") or 0), UTC),
                amount=int(raw.get("amount_paid") or raw.get("total") or 0),
                currency=str(raw.get("currency") or "usd"),
                status=raw.get("status"),
                url=raw.get("hosted_invoice_url"),
                pdf=raw.get("invoice_pdf"),
            )
        )
    return rows


def confirm_checkout(user: User, session_id: str) -> CheckoutOutcome:
    """The success page: fetch the session from Stripe and fulfil it if it is paid.

    The webhook may have done it already (or may do it a moment later): both are keyed by the
    session id, so the purchase is credited once. When Stripe cannot be reached the outcome is
    `pending`; the webhook still completes the purchase.
    """
    if not _SESSION_ID.match(session_id or ""):
        raise not_found("Checkout session")
    try:
        session = _client().v1.checkout.sessions.retrieve(session_id).to_dict()
    except stripe.InvalidRequestError as exc:
        raise not_found("Checkout session") from exc
    except stripe.StripeError as exc:
        log.warning("Stripe checkout session retrieve failed: %s", exc)
        return CheckoutOutcome("pending", None)
    if session.get("client_reference_id") != user.id:
        raise not_found("Checkout session")
    kind = "pro" if session.get("mode") == "subscription" else "topup"
    if session.get("payment_status") not in PAID:
        return CheckoutOutcome("pending", kind)
    _fulfil_checkout(session)
    db.session.commit()
    return CheckoutOutcome("paid", kind)


# --- webhooks ---------------------------------------------------------------------------------


def verify_webhook(payload: bytes, signature: str | None) -> dict[str, Any]:
    """The verified event as a dict. Bad, missing, old or future signatures are refused."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise ServiceUnavailable(
            "Stripe webhooks are not configured on this server", code="WEBHOOK_NOT_CONFIGURED"
        )
    try:
        event = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=SIGNATURE_TOLERANCE
        )
    except stripe.SignatureVerificationError as exc:
        raise Invalid("Invalid Stripe signature", code="INVALID_SIGNATURE") from exc
    except ValueError as exc:
        raise Invalid("The event body is not valid JSON", code="INVALID_JSON") from exc
    if _signed_at(signature or "") > time.time() + SIGNATURE_TOLERANCE:
        raise Invalid("Invalid Stripe signature", code="INVALID_SIGNATURE")
    return event.to_dict()


def _signed_at(header: str) -> int:
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            return int(value)
    return 0


def handle_event(event: dict[str, Any]) -> str:
    """Apply one verified event at most once: `applied`, `duplicate` or `ignored`.

    The event id is inserted first, in the transaction that applies the event (a primary key),
    so two deliveries of one event racing each other apply it once: the second waits on the
    first's row and then fails the insert.
    """
    handler = _HANDLERS.get(str(event.get("type")))
    if handler is None:
        return "ignored"
    event_id, type_ = str(event["id"]), str(event["type"])
    if not _claim(event_id, type_):
        return "duplicate"
    if not handler(event["data"]["object"]):
        db.session.rollback()  # nothing to remember: a later resend may still apply it
        return "ignored"
    _settle(event_id, type_)
    return "applied"


def _claim(key: str, type_: str) -> bool:
    """Insert a StripeEvent row; False when it exists (a racer's insert makes us wait, then fail).

    A failed claim rolls the whole transaction back (a savepoint would not be a real one on
    SQLite's driver); callers claim before they change anything, and `_settle` re-records an
    event whose claim went with it.
    """
    db.session.add(StripeEvent(id=key, type=type_))
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def _settle(event_id: str, type_: str) -> None:
    """Commit the event with its effects.

    A ledger call or a claim that lost a race rolls the whole transaction back, the event row
    with it; the effect is then already there (the racer applied it), so the event is recorded
    again on its own.
    """
    if db.session.get(StripeEvent, event_id) is None:
        db.session.add(StripeEvent(id=event_id, type=type_))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()


def _on_checkout(session: dict[str, Any]) -> bool:
    if session.get("payment_status") not in PAID:
        return False  # e.g. a bank debit still clearing: async_payment_succeeded follows
    return _fulfil_checkout(session)


def _fulfil_checkout(session: dict[str, Any]) -> bool:
    """Credit a paid Checkout Session once, whoever calls first. False if it buys nothing."""
    user = _user_by_id(session.get("client_reference_id")) or _user_by_id(
        (session.get("metadata") or {}).get("user_id")
    )
    if user is None:
        log.warning("checkout session %s names no known user", session.get("id"))
        return False
    mode = session.get("mode")
    if mode == "subscription":
        _start_subscription(user, session)
    elif mode == "payment":
        _remember_customer(user, session.get("customer"))
        credits.add(
            user.id,
            int(current_app.config["TOPUP_CREDITS"]),
            "topup",
            note="Credit pack purchase",
            dedupe_key=f"topup:{session['id']}",
        )
    else:
        return False  # a `setup` session buys nothing
    return True


def _start_subscription(user: User, session: dict[str, Any]) -> None:
    """Pro with a fresh Pro allowance, once per Checkout Session."""
    if not _claim(f"subscription:{session['id']}", "checkout.subscription"):
        return  # the other road got here first
    subscription = session.get("subscription")
    _remember_customer(user, session.get("customer"))
    if subscription and _ended(subscription):
        return  # its `customer.subscription.deleted` came first: stay on free
    renewed_already = user.tier == "pro" and user.stripe_subscription_id == subscription
    user.stripe_subscription_id = subscription
    if renewed_already:
        return  # an early invoice.paid already made them Pro with a fresh allowance
    user.tier = "pro"
    db.session.flush()
    credits.reset_monthly(user.id, force=True, note="Pro plan started")


def _on_invoice_paid(invoice: dict[str, Any]) -> bool:
    if invoice.get("billing_reason") != "subscription_cycle":
        return False  # the first invoice is the checkout's; one-off invoices are top-ups
    subscription, metadata = _invoice_subscription(invoice)
    user = _user_by_customer(invoice.get("customer")) or _user_by_id(metadata.get("user_id"))
    if user is None:
        log.warning("invoice %s names no known user", invoice.get("id"))
        return False
    if subscription and _ended(subscription):
        return False
    _remember_customer(user, invoice.get("customer"))
    user.tier = "pro"
    user.stripe_subscription_id = subscription or user.stripe_subscription_id
    db.session.flush()
    credits.reset_monthly(user.id, force=True, note="Pro plan renewed")
    return True


def _on_subscription_deleted(subscription: dict[str, Any]) -> bool:
    """Back to free. The monthly bucket keeps what is left until the period's reset."""
    sub_id = str(subscription["id"])
    _claim(f"subscription-ended:{sub_id}", "customer.subscription.deleted")
    user = _user_by_customer(subscription.get("customer")) or _user_by_id(
        (subscription.get("metadata") or {}).get("user_id")
    )
    if user is not None and user.stripe_subscription_id == sub_id:
        user.tier = "free"
        user.stripe_subscription_id = None
    return True


_HANDLERS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "checkout.session.completed": _on_checkout,
    "checkout.session.async_payment_succeeded": _on_checkout,
    "invoice.paid": _on_invoice_paid,
    "customer.subscription.deleted": _on_subscription_deleted,
}


def _ended(subscription_id: str) -> bool:
    marker = f"subscription-ended:{subscription_id}"
    return db.session.get(StripeEvent, marker) is not None


def _invoice_subscription(invoice: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The invoice's subscription id and metadata, in the current and the older API shapes."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    legacy = invoice.get("subscription_details") or {}
    subscription = details.get("subscription") or invoice.get("subscription")
    if isinstance(subscription, dict):
        subscription = subscription.get("id")
    return subscription, details.get("metadata") or legacy.get("metadata") or {}


def _user_by_id(user_id: Any) -> User | None:
    return db.session.get(User, user_id) if is_uuid(user_id) else None


def _user_by_customer(customer: Any) -> User | None:
    if not customer or not isinstance(customer, str):
        return None
    return db.session.scalar(select(User).where(User.stripe_customer_id == customer))


def _remember_customer(user: User, customer: Any) -> None:
    if isinstance(customer, str) and customer and user.stripe_customer_id != customer:
        user.stripe_customer_id = customer
