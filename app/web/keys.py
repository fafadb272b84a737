"""API keys page: create (plaintext shown once), list, revoke."""

from __future__ import annotations

from flask import Blueprint
from flask_login import current_user, login_required

from app.services import api_keys
from app.web.rendering import render_page

bp = Blueprint("keys", __name__)


@bp.get("/keys")
@login_required
def index():
    return render_page("keys/index.html", keys=api_keys.list_keys(current_user))
