"""Projects list and the project pages."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for
from flask_login import current_user, login_required

from app.services import projects
from app.web.rendering import render_page

bp = Blueprint("projects", __name__)


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    return redirect(url_for("auth.login"))


@bp.get("/projects")
@login_required
def index():
    return render_page("projects/index.html", projects=projects.list_projects(current_user))
