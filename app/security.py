"""Session loading, CSRF enforcement and security headers for every response."""

from __future__ import annotations

from flask import Flask, Response, flash, g, request, session
from flask_login import current_user, login_url

from app.extensions import csrf, htmx, login_manager

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Endpoints authenticated by a signature or a bearer secret instead of a session cookie.
CSRF_EXEMPT_ENDPOINTS = {"billing.stripe_webhook", "ops.cron_reset_credits"}

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self' https://checkout.stripe.com https://billing.stripe.com "
    "https://accounts.google.com; frame-ancestors 'none'"
)


def uses_api_key() -> bool:
    """An /api/v1 request that carries a key authenticates by the key, not by the cookie."""
    if not request.path.startswith("/api/"):
        return False
    auth = request.headers.get("Authorization", "")
    return bool(request.headers.get("X-API-Key") or auth.lower().startswith("bearer "))


def response_headers(production: bool) -> list[tuple[str, str]]:
    """The headers every response carries unless it sets its own."""
    headers = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("X-Frame-Options", "DENY"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if production:
        headers.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    return headers


def init_app(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(identity: str):  # noqa: ANN202
        from app.services.accounts import load_session_user

        return load_session_user(identity)

    @login_manager.unauthorized_handler
    def sign_in_first() -> Response:
        """To the sign-in page and back. An htmx request gets HX-Redirect, so the whole page
        goes there (not the sign-in form swapped into a fragment) and returns to that page."""
        from app.web.rendering import redirect_to

        flash(login_manager.login_message, login_manager.login_message_category)
        here = (request.headers.get("HX-Current-URL") if htmx else None) or request.url
        return redirect_to(login_url(login_manager.login_view, next_url=here))

    @app.before_request
    def enforce_csrf() -> None:
        if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT_ENDPOINTS:
            return
        if uses_api_key() or request.path.startswith("/live/"):
            return
        if request.path.startswith("/api/") and not current_user.is_authenticated:
            return  # no session to ride on: the API answers 401 instead
        csrf.protect()

    defaults = response_headers(app.config["PRODUCTION"])

    @app.after_request
    def security_headers(response: Response) -> Response:
        headers = response.headers
        for name, value in defaults:
            headers.setdefault(name, value)
        if _signed_in():
            headers.setdefault("Cache-Control", "private, no-store")
        return response


def _signed_in() -> bool:
    """Whether the response is for a signed-in person, without a database lookup of its own.

    The user is looked at only if the request loaded it; otherwise a session naming a user is
    enough to keep the response out of shared caches (so a 503 page renders with the database
    down).
    """
    user = g.get("_login_user")
    if user is not None:
        return bool(user.is_authenticated)
    return "_user_id" in session
