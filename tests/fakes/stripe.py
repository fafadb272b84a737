"""A fake Stripe API on a loopback port, spoken to by the real `stripe` SDK, and signed webhooks.

Only the calls Pictor makes are answered: create and retrieve Checkout Sessions, create Billing
Portal sessions, list invoices. Use the `fake_stripe` fixture (or the class as a context
manager) and point the app at it::

    from tests.fakes.stripe import FakeStripe, fake_stripe  # noqa: F401  (fixture import)

    def test_something(app, fake_stripe: FakeStripe) -> None:
        app.config.update(fake_stripe.config())
        ...
        sent = fake_stripe.last("POST", "/v1/checkout/sessions")["params"]
        assert sent["mode"] == "subscription"

Every request is recorded in `requests` as `{"method", "path", "params", "headers"}`; `params`
is the form-encoded body (or the query string) as a flat dict, with Stripe's bracket keys kept
as they are (`"line_items[0][price]"`). `complete_session(id, ...)` plays the customer paying:
it marks a stored session complete and returns it, ready to wrap in a webhook event with
`make_event()` and to sign with `signature_header()` or `signed_headers()`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

SECRET_KEY = "sk_test_fake"
WEBHOOK_SECRET = "whsec_test_secret"
PRICE_PRO = "price_pro_test"
PRICE_TOPUP = "price_topup_test"

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{next(_ids):06d}"


def make_event(
    type_: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A Stripe event envelope (snapshot payload) around `obj`."""
    return {
        "id": event_id or _new_id("evt"),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": created or int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        "data": {"object": obj},
    }


def signature_header(
    payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> str:
    """`Stripe-Signature`: `t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">`."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def signed_headers(
    payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    return {
        "Stripe-Signature": signature_header(payload, secret, timestamp),
        "Content-Type": "application/json",
    }


def invoice(
    customer: str,
    *,
    subscription: str | None = None,
    billing_reason: str = "subscription_cycle",
    metadata: dict[str, str] | None = None,
    amount_paid: int = 1900,
    number: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A paid invoice as Stripe's current API shapes it (subscription under `parent`)."""
    invoice_id = _new_id("in")
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer,
        "billing_reason": billing_reason,
        "status": "paid",
        "paid": True,
        "number": number or f"PIC-{invoice_id[-4:]}",
        "currency": "usd",
        "amount_paid": amount_paid,
        "amount_due": amount_paid,
        "total": amount_paid,
        "created": created or int(time.time()),
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/{invoice_id}/pdf",
        "parent": {
            "type": "subscription_details",
            "subscription_details": {
                "subscription": subscription,
                "metadata": metadata or {},
            },
        }
        if subscription
        else None,
    }


def subscription(
    sub_id: str, customer: str, *, metadata: dict[str, str] | None = None, status: str = "active"
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "object": "subscription",
        "customer": customer,
        "status": status,
        "metadata": metadata or {},
    }


class FakeStripe:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, list[dict[str, Any]]] = {}
        self.fail_with: int | None = None  # answer every API call with this status
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Stripe settings aimed at this server."""
        settings: dict[str, Any] = {
            "STRIPE_SECRET_KEY": SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_PRICE_PRO": PRICE_PRO,
            "STRIPE_PRICE_TOPUP": PRICE_TOPUP,
            "STRIPE_API_BASE": self.url,
        }
        settings.update(overrides)
        return settings

    # --- scripting -----------------------------------------------------------------------------

    def calls(self, method: str, path: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def last(self, method: str, path: str) -> dict[str, Any]:
        found = self.calls(method, path)
        assert found, f"no {method} {path} was made"
        return found[-1]

    def complete_session(
        self,
        session_id: str,
        *,
        customer: str | None = None,
        subscription: str | None = None,
        payment_status: str = "paid",
    ) -> dict[str, Any]:
        """The customer finished checkout: the session is `complete` (and paid by default)."""
        with self._lock:
            session = self.sessions[session_id]
            session["status"] = "complete"
            session["payment_status"] = payment_status
            session["customer"] = session["customer"] or customer or _new_id("cus")
            if session["mode"] == "subscription":
                session["subscription"] = subscription or _new_id("sub")
            return json.loads(json.dumps(session))

    def add_session(self, **fields: Any) -> dict[str, Any]:
        """Store a session as if created elsewhere (e.g. by another user's checkout)."""
        session = _session({"mode": "payment", **fields})
        with self._lock:
            self.sessions[session["id"]] = session
        return session

    def add_invoice(self, customer: str, **fields: Any) -> dict[str, Any]:
        created = invoice(customer, **fields)
        with self._lock:
            self.invoices.setdefault(customer, []).insert(0, created)
        return created

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- serving -------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/checkout/sessions":
            session = _session(params)
            with self._lock:
                self.sessions[session["id"]] = session
            return 200, session
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            with self._lock:
                session = self.sessions.get(path.rsplit("/", 1)[1])
            if session is None:
                return 404, _error("No such checkout.session", "resource_missing")
            return 200, session
        if method == "POST" and path == "/v1/billing_portal/sessions":
            if not params.get("customer"):
                return 400, _error("Missing required param: customer.", "parameter_missing")
            portal_id = _new_id("bps")
            return 200, {
                "id": portal_id,
                "object": "billing_portal.session",
                "customer": params["customer"],
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.com/p/session/{portal_id}",
            }
        if method == "GET" and path == "/v1/invoices":
            with self._lock:
                rows = list(self.invoices.get(params.get("customer", ""), []))
            limit = int(params.get("limit") or 10)
            return 200, {
                "object": "list",
                "url": "/v1/invoices",
                "has_more": len(rows) > limit,
                "data": rows[:limit],
            }
        return 404, _error(f"Unrecognized request URL ({method}: {path})", None)


def _session(params: dict[str, str]) -> dict[str, Any]:
    session_id = _new_id("cs")
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in params.items()
        if key.startswith("metadata[")
    }
    return {
        "id": session_id,
        "object": "checkout.session",
        "mode": params.get("mode"),
        "status": "open",
        "payment_status": "unpaid",
        "client_reference_id": params.get("client_reference_id"),
        "customer": params.get("customer"),
        "customer_email": params.get("customer_email"),
        "subscription": None,
        "metadata": metadata,
        "success_url": params.get("success_url"),
        "cancel_url": params.get("cancel_url"),
        "url": f"https://checkout.stripe.com/c/pay/{session_id}",
    }


def _error(message: str, code: str | None) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "message": message, "code": code}}


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            params = dict(parse_qsl(raw if method == "POST" else parts.query))
            with fake._lock:
                fake.requests.append(
                    {
                        "method": method,
                        "path": parts.path,
                        "params": params,
                        "headers": dict(self.headers),
                    }
                )
            if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                status, body = 401, _error("Invalid API Key provided", None)
            elif fake.fail_with is not None:
                status, body = fake.fail_with, _error("Fake Stripe failure", None)
            else:
                status, body = fake._answer(method, parts.path, params)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", _new_id("req"))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up and closed the connection

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A running FakeStripe, closed after the test."""
    with FakeStripe() as server:
        yield server
