"""Admin pages (admins only; everyone else gets 404): users, credits, resets, queue health."""

from __future__ import annotations

from flask import Blueprint, flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import IntegerField, RadioField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from app.errors import Invalid
from app.services import accounts, admin
from app.web.decorators import admin_required
from app.web.rendering import redirect_to, render_page

bp = Blueprint("admin", __name__, url_prefix="/admin")

USERS_PAGE = 25


class CreditForm(FlaskForm):
    kind = RadioField(
        "Type",
        choices=[
            SelectChoice("grant", "Grant: add credits"),
            SelectChoice("adjustment", "Adjustment: add or remove (use a minus sign)"),
        ],
        default="grant",
    )
    bucket = SelectField(
        "Bucket",
        choices=[
            SelectChoice("purchased", "Purchased (never resets)"),
            SelectChoice("monthly", "Monthly (until the next reset)"),
        ],
        default="purchased",
    )
    amount = IntegerField("Amount", validators=[InputRequired(message="Enter a whole number")])
    note = StringField(
        "Note",
        validators=[DataRequired(message="Say why in a note"), Length(max=admin.MAX_NOTE)],
        description="Shown in the user's credit history, with your email.",
    )


@bp.get("")
@admin_required
def index():
    return render_page(
        "admin/index.html",
        health=admin.queue_health(),
        failures=admin.failed_generations(limit=15),
    )


@bp.get("/queue")
@admin_required
def queue():
    """Queue health alone, polled by the overview page."""
    return render_page("admin/_queue.html", health=admin.queue_health())


@bp.post("/reset-all")
@admin_required
def reset_all():
    count = admin.reset_everyone()
    flash(f"Monthly credits reset for {count} user{'s' if count != 1 else ''}.", "success")
    return redirect_to(url_for("admin.index"))


@bp.get("/users")
@admin_required
def users():
    query = (request.args.get("q") or "").strip()
    offset = max(request.args.get("offset", 0, type=int), 0)
    rows, total = accounts.search_users(query or None, limit=USERS_PAGE, offset=offset)
    return render_page(
        "admin/users.html",
        fragment="admin/_users_table.html",
        users=rows,
        query=query,
        pagination={"total": total, "limit": USERS_PAGE, "offset": offset},
    )


def _user_page(user_id: str, form: CreditForm, status: int = 200):  # noqa: ANN202
    return render_page(
        "admin/user.html",
        status=status,
        user=admin.get_user(user_id),
        form=form,
        recent=admin.recent_transactions(user_id),
    )


@bp.get("/users/<user_id>")
@admin_required
def user(user_id: str):
    return _user_page(user_id, CreditForm())


@bp.post("/users/<user_id>/credits")
@admin_required
def change_credits(user_id: str):
    form = CreditForm()
    if not form.validate_on_submit():
        return _user_page(user_id, form, status=400)
    try:
        entry = admin.change_credits(
            current_user,
            user_id,
            kind=form.kind.data,
            amount=form.amount.data,
            bucket=form.bucket.data,
            note=form.note.data,
        )
    except Invalid as exc:
        field = next(iter(exc.details or {}), "amount")
        getattr(form, field, form.amount).errors.append(exc.message)
        return _user_page(user_id, form, status=400)
    flash(f"{entry.type.capitalize()} of {entry.amount:+,} credits recorded.", "success")
    return redirect_to(url_for("admin.user", user_id=user_id))


@bp.post("/users/<user_id>/reset")
@admin_required
def reset_user(user_id: str):
    admin.reset_user(current_user, user_id)
    flash("Monthly credits reset to the allowance; a new period has started.", "success")
    return redirect_to(url_for("admin.user", user_id=user_id))


@bp.post("/users/<user_id>/disable")
@admin_required
def disable_user(user_id: str):
    target = admin.set_disabled(current_user, user_id, True)
    flash(f"{target.email} is disabled and signed out everywhere.", "success")
    return redirect_to(url_for("admin.user", user_id=user_id))


@bp.post("/users/<user_id>/enable")
@admin_required
def enable_user(user_id: str):
    target = admin.set_disabled(current_user, user_id, False)
    flash(f"{target.email} can sign in again.", "success")
    return redirect_to(url_for("admin.user", user_id=user_id))
