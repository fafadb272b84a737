"""Browser tests: the real app on a loopback port, driven by Playwright with Debian chromium.

Fixtures:
- `live_server`: the app (SQLite, the test settings of tests/conftest.py) served by werkzeug in
  a thread on 127.0.0.1:<free port>; `live_server.url`, `live_server.app`.
- `browser`: one headless /usr/bin/chromium per test module.
- `page`: a fresh 1280×800 page. Console errors, uncaught exceptions and Content-Security-Policy
  violations are collected in `page.console_errors` and fail the test at teardown; a test that
  provokes one on purpose clears the list after checking it.

Without /usr/bin/chromium (or Playwright) the browser tests are skipped with the reason, except on
CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app import create_app, queue
from app.extensions import db
from tests.conftest import make_config

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}

# Reports each CSP violation to the test (init scripts are injected by the browser, so the
# page's CSP does not stop this one).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__pictorCspViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} ` +
    `at ${event.sourceFile || document.location.href}:${event.lineNumber}`
  );
});
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run on CI: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class LiveServer:
    url: str
    app: Flask


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    app = create_app(make_config(tmp_path, f"sqlite:///{tmp_path / 'e2e.db'}"))
    with app.app_context():
        db.create_all()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        queue.stop(app)  # the embedded worker thread and server, if a page queued a job
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it
    is open, which would break later tests that call asyncio.run()."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(10_000)
    errors: list[str] = []
    context.expose_function("__pictorCspViolation", lambda text: errors.append(f"CSP: {text}"))
    context.add_init_script(_CSP_LISTENER)
    tab = context.new_page()
    tab.console_errors = errors
    tab.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    yield tab
    context.close()
    if errors:
        pytest.fail("the browser reported errors:\n" + "\n".join(errors))
