"""The billing page in a real browser: balances, the Upgrade button, history filter, checkout.

Own minimal fixtures (`_billing_live_server`, `_billing_page`) so this file does not depend on
the shared e2e conftest being written in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from app import create_app
from app.extensions import db
from app.services import credits
from tests import factories
from tests.conftest import make_config
from tests.fakes.stripe import FakeStripe

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
EMAIL = "browser.billing@example.com"


@pytest.fixture
def _billing_live_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The app on SQLite, served on a loopback port, with Stripe aimed at a fake."""
    with FakeStripe() as stripe:
        config = make_config(
            tmp_path,
            f"sqlite:///{tmp_path / 'e2e.db'}",
            **stripe.config(TOPUP_CREDITS=500, PRO_MONTHLY_CREDITS=1000),
        )
        app = create_app(config)
        with app.app_context():
            db.create_all()
            user = factories.make_user(EMAIL)
            credits.add(user.id, 120, "topup", note="Credit pack purchase")
            credits.debit(user.id, 3, generation_id="e2e-generation-1")
            db.session.commit()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {"url": f"http://127.0.0.1:{server.port}", "stripe": stripe}
        finally:
            server.shutdown()
            thread.join(timeout=5)
            with app.app_context():
                db.engine.dispose()


@pytest.fixture
def _billing_page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.console_errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            context.close()
            browser.close()


def test_the_billing_page_shows_balances_and_lets_a_free_user_upgrade(
    _billing_live_server, _billing_page, tmp_path
):
    from playwright.sync_api import expect

    base, page = _billing_live_server["url"], _billing_page
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/projects")

    page.goto(f"{base}/billing")

    expect(page.get_by_role("heading", name="Billing & credits")).to_be_visible()
    balances = page.get_by_role("region", name="Credits")
    expect(balances).to_contain_text("167")  # 47 monthly + 120 purchased
    expect(balances).to_contain_text("47 monthly · 120 purchased")
    expect(balances).to_contain_text("Free")
    expect(page.get_by_role("button", name="Upgrade to Pro")).to_be_visible()
    expect(page.get_by_role("button", name="Buy credits")).to_be_visible()
    expect(page.get_by_text("No invoices yet")).to_be_visible()
    history = page.locator("#history")
    expect(history.get_by_role("row")).to_have_count(4)  # header + reset, topup, usage
    screenshot = tmp_path / "billing.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # The type filter swaps the history in place (hx-boost) and updates the address.
    history.get_by_role("link", name="Top-ups").click()
    page.wait_for_url(f"{base}/billing?type=topup")
    expect(page.locator("#history").get_by_role("row")).to_have_count(2)
    expect(page.locator("#history")).to_contain_text("Credit pack purchase")
    expect(page.get_by_role("button", name="Upgrade to Pro")).to_be_visible()

    # Upgrading posts the form (CSRF included) and follows the redirect to Stripe Checkout.
    page.route(
        "https://checkout.stripe.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<h1>Checkout</h1>"),
    )
    page.get_by_role("button", name="Upgrade to Pro").click()
    page.wait_for_url("https://checkout.stripe.com/c/pay/cs_test_*")
    sent = _billing_live_server["stripe"].last("POST", "/v1/checkout/sessions")["params"]
    assert sent["mode"] == "subscription" and sent["customer_email"] == EMAIL
    assert page.console_errors == []  # type: ignore[attr-defined]
