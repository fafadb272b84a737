"""Sign up, sign in, sign out (email + password; Google when configured)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user

from app.errors import Conflict, Invalid, Unauthorized
from app.services import accounts
from app.web.forms import LoginForm, SignupForm
from app.web.rendering import render_page

bp = Blueprint("auth", __name__)


def _safe_next(default: str) -> str:
    target = request.args.get("next") or ""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def start_session(user) -> None:  # noqa: ANN001
    """Rotate the session at sign-in: nothing from the anonymous session carries over."""
    session.clear()
    login_user(user)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data, form.password.data)
        except Unauthorized as exc:
            form.password.errors.append(exc.message)
        else:
            start_session(user)
            return redirect(_safe_next(url_for("projects.index")), code=303)
    return render_page("auth/login.html", form=form, status=400 if form.errors else 200)


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
            return redirect(url_for("projects.index"), code=303)
    return render_page("auth/signup.html", form=form, status=400 if form.errors else 200)


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        accounts.end_sessions(current_user)
    logout_user()
    session.clear()
    flash("You have been signed out.", "info")
    return redirect(url_for("auth.login"), code=303)
