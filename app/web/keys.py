"""API keys page: create (the plaintext shown once), list, revoke. Works without scripts."""

from __future__ import annotations

import json
import secrets

from flask import Blueprint, flash, request, session, url_for
from flask.wrappers import Response
from flask_login import current_user, login_required

from app import queue
from app.errors import Invalid
from app.services import api_keys, projects
from app.web.forms import ApiKeyForm
from app.web.rendering import is_fragment_request, redirect_to, render_page

bp = Blueprint("keys", __name__)

# A key just created is shown by the GET after the POST's redirect. Its plaintext waits in
# Redis for that GET (at most SHOWN_WITHIN seconds, then it is gone); the session cookie, which
# is signed but readable, only carries a random token naming it.
NEW_KEY = "new_api_key"
SHOWN_WITHIN = 300


def _held_at(token: str) -> str:
    return f"pictor:new-api-key:{current_user.id}:{token}"


def _hold(created: api_keys.CreatedKey) -> None:
    token = secrets.token_urlsafe(24)
    shown = json.dumps({"name": created.key.name, "plaintext": created.plaintext})
    queue.get_redis().set(_held_at(token), shown, ex=SHOWN_WITHIN)
    session[NEW_KEY] = token


def _take_held() -> dict[str, str] | None:
    """The key held for this GET, once: gone from Redis and from the session."""
    token = session.pop(NEW_KEY, None)
    if not isinstance(token, str):
        return None
    held = queue.get_redis().getdel(_held_at(token))
    return json.loads(held) if held else None


def _form(formdata: bool = True) -> ApiKeyForm:
    form = ApiKeyForm() if formdata else ApiKeyForm(formdata=None)
    form.project.choices = [(p.id, p.name) for p in projects.list_projects(current_user)]
    return form


def _page(form: ApiKeyForm, status: int = 200) -> Response:
    keys = api_keys.list_keys(current_user)
    return render_page(
        "keys/index.html",
        form=form,
        rows=[(key, api_keys.key_status(key)) for key in keys],
        created=_take_held(),
        status=status,
    )


@bp.get("/keys")
@login_required
def index():
    form = _form(formdata=False)
    wanted = request.args.get("project")
    if wanted in {value for value, _ in form.project.choices}:
        form.project.data = wanted
    return _page(form)


@bp.post("/keys")
@login_required
def create():
    form = _form()
    if form.validate_on_submit():
        project = projects.get_project(current_user, form.project.data)
        try:
            created = api_keys.create_key(current_user, project, form.name.data)
        except Invalid as exc:
            form.name.errors.append(exc.message)
        else:
            _hold(created)
            return redirect_to(url_for("keys.index"))
    return _page(form, status=422)


@bp.post("/keys/<key_id>/revoke")
@login_required
def revoke(key_id: str):
    key = api_keys.revoke_key(current_user, key_id)
    message = f"Revoked “{key.name}”. Requests with it are refused from now on."
    if not is_fragment_request():
        flash(message, "success")
        return redirect_to(url_for("keys.index"))
    response = render_page("keys/_row.html", key=key, status_name=api_keys.key_status(key))
    response.headers["HX-Trigger"] = json.dumps({"toast": {"message": message, "level": "success"}})
    return response
