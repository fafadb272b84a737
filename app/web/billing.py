"""Billing page, Stripe Checkout and Portal redirects, and the Stripe webhook (API.md §10)."""

from __future__ import annotations

import uuid

from flask import Blueprint, current_app, jsonify, redirect, request, url_for
from flask_login import current_user

from app.api.serializers import external_url
from app.services import billing, credits
from app.web.decorators import login_required
from app.web.rendering import is_fragment_request, render_page

bp = Blueprint("billing", __name__)

HISTORY_PAGE = 20
HISTORY_TYPES = (
    ("usage", "Usage"),
    ("refund", "Refunds"),
    ("reset", "Resets"),
    ("topup", "Top-ups"),
    ("grant", "Grants"),
    ("adjustment", "Adjustments"),
)


@bp.get("/billing")
@login_required
def index():
    type_ = request.args.get("type") or None
    offset = max(request.args.get("offset", 0, type=int), 0)
    rows, total = credits.transactions(
        current_user.id, type_=type_, limit=HISTORY_PAGE, offset=offset
    )
    return render_page(
        "billing/index.html",
        fragment="billing/_history.html",
        options=billing.options(current_user),
        allowance=credits.monthly_allowance(current_user.tier),
        pro_allowance=credits.monthly_allowance("pro"),
        topup_credits=current_app.config["TOPUP_CREDITS"],
        history=rows,
        history_types=HISTORY_TYPES,
        history_type=type_,
        pagination={"total": total, "limit": HISTORY_PAGE, "offset": offset},
        request_key=str(uuid.uuid4()),
    )


@bp.get("/billing/invoices")
@login_required
def invoices():
    """The invoices list, loaded into the billing page after it renders (Stripe is slow)."""
    if not is_fragment_request():
        return redirect(url_for("billing.index", _anchor="invoices"))
    return render_page("billing/_invoices.html", invoices=billing.list_invoices(current_user))


@bp.post("/billing/checkout")
@login_required
def checkout():
    url = billing.create_checkout(
        current_user,
        request.form.get("kind", ""),
        success_url=external_url("billing.success") + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=external_url("billing.cancel"),
        request_key=request.form.get("request_key"),
    )
    return redirect(url, code=303)


@bp.post("/billing/portal")
@login_required
def portal():
    return redirect(billing.create_portal(current_user, external_url("billing.index")), code=303)


@bp.get("/billing/success")
@login_required
def success():
    outcome = billing.confirm_checkout(current_user, request.args.get("session_id", ""))
    return render_page(
        "billing/success.html",
        outcome=outcome,
        allowance=credits.monthly_allowance("pro"),
        topup_credits=current_app.config["TOPUP_CREDITS"],
    )


@bp.get("/billing/cancel")
@login_required
def cancel():
    return render_page("billing/cancel.html")


@bp.post("/webhooks/stripe")
def stripe_webhook():
    event = billing.verify_webhook(request.get_data(), request.headers.get("Stripe-Signature"))
    return jsonify({"received": True, "result": billing.handle_event(event)})
