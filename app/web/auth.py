"""Sign up, sign in, sign out (email + password; Google when configured)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from authlib.integrations.flask_client import FlaskOAuth2App, OAuthError
from flask import Blueprint, Flask, current_app, flash, redirect, request, session, url_for
from flask.wrappers import Response
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from joserfc.errors import JoseError
from requests import RequestException

from app.api.serializers import external_url
from app.errors import Conflict, Invalid, Unauthorized
from app.extensions import oauth
from app.models import User
from app.services import accounts
from app.web.forms import LoginForm, SignupForm
from app.web.rendering import render_page

bp = Blueprint("auth", __name__)
log = logging.getLogger(__name__)

GOOGLE = "google"
GOOGLE_EXTENSION = "pictor.google"
GOOGLE_NEXT = "google_next"
GOOGLE_FAILED = "Google sign-in did not complete. Please try again."


def register_google(app: Flask) -> None:
    """Register the Google OIDC client when GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are set.

    Authlib keeps registered clients on the shared `oauth` object; the previous app's client is
    dropped first and each app keeps its own in `app.extensions`, so every app create_app builds
    (tests build many) talks to the provider its own settings name.
    """
    oauth._clients.pop(GOOGLE, None)
    oauth._registry.pop(GOOGLE, None)
    if not (app.config["GOOGLE_CLIENT_ID"] and app.config["GOOGLE_CLIENT_SECRET"]):
        return
    app.extensions[GOOGLE_EXTENSION] = oauth.register(
        GOOGLE,
        client_id=app.config["GOOGLE_CLIENT_ID"],
        client_secret=app.config["GOOGLE_CLIENT_SECRET"],
        server_metadata_url=app.config["GOOGLE_DISCOVERY_URL"],
        client_kwargs={
            "scope": "openid email profile",
            "code_challenge_method": "S256",
            "default_timeout": 10,
        },
    )


def google_client() -> FlaskOAuth2App | None:
    """This app's Google client, or None when Google sign-in is not configured."""
    return current_app.extensions.get(GOOGLE_EXTENSION)


def safe_next(target: str | None, default: str) -> str:
    """`target` when it is a path on this site, else `default` (no open redirects)."""
    target = (target or "").strip()
    if not target or any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def start_session(user: User) -> None:
    """Rotate the session at sign-in: nothing from the anonymous session carries over."""
    session.clear()
    login_user(user)


def _auth_page(template: str, form: FlaskForm, status: int) -> Response:
    return render_page(
        template,
        form=form,
        next_url=safe_next(request.args.get("next"), ""),
        google_enabled=google_client() is not None,
        status=status,
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next"), url_for("projects.index")))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data, form.password.data)
        except Unauthorized as exc:
            form.password.errors.append(exc.message)
        else:
            start_session(user)
            return redirect(safe_next(request.args.get("next"), url_for("projects.index")), 303)
    return _auth_page("auth/login.html", form, 422 if form.errors else 200)


@bp.route("/signup", methods=["GET", "POST"])
def signup():
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_user(form.email.data, form.password.data)
        except (Invalid, Conflict) as exc:
            field = "email" if exc.details and "email" in exc.details else "password"
            getattr(form, field).errors.append(exc.message)
        else:
            start_session(user)
            flash("Welcome to Pictor! Your first project is ready.", "success")
            return redirect(url_for("projects.index"), 303)
    return _auth_page("auth/signup.html", form, 422 if form.errors else 200)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        accounts.end_sessions(current_user)
    logout_user()
    session.clear()
    flash("You have been signed out.", "info")
    return redirect(url_for("auth.login"), 303)


@bp.get("/auth/google")
def google_login():
    client = google_client()
    if client is None:
        return redirect(url_for("auth.login"))
    session[GOOGLE_NEXT] = safe_next(request.args.get("next"), "")
    try:
        return client.authorize_redirect(external_url("auth.google_callback"))
    except RequestException as exc:
        log.warning("Google discovery failed: %s", exc)
        flash("Google sign-in is unavailable right now. Please try again later.", "error")
        return redirect(url_for("auth.login"), 303)


@bp.get("/auth/google/callback")
def google_callback():
    client = google_client()
    if client is None:
        return redirect(url_for("auth.login"))
    next_url = session.pop(GOOGLE_NEXT, "")
    try:
        # Checks the state against the session, sends the PKCE verifier, and validates the
        # id_token (signature, iss, aud, exp, nonce).
        token = client.authorize_access_token()
    except (OAuthError, JoseError, RequestException) as exc:
        log.info("Google sign-in refused: %r", exc)
        flash(GOOGLE_FAILED, "error")
        return redirect(url_for("auth.login"), 303)
    claims = token.get("userinfo")
    if not claims or not claims.get("sub"):
        flash(GOOGLE_FAILED, "error")
        return redirect(url_for("auth.login"), 303)
    try:
        user = accounts.sign_in_with_google(
            sub=claims["sub"],
            email=claims.get("email") or "",
            email_verified=claims.get("email_verified") is True,
            name=claims.get("name"),
        )
    except (Unauthorized, Invalid) as exc:
        flash(exc.message, "error")
        return redirect(url_for("auth.login"), 303)
    start_session(user)
    return redirect(safe_next(next_url, url_for("projects.index")), 303)
