"""Who is calling: an API key (header only) or the web session (CSRF checked on writes)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request
from flask_login import current_user

from app.api import bp
from app.errors import Unauthorized
from app.models import ApiKey, Project, User
from app.services import api_keys, projects

PUBLIC_ENDPOINTS = {"api.openapi_document"}


@dataclass(frozen=True)
class Principal:
    project: Project
    user: User  # the project's owner, who pays for what the project does
    api_key: ApiKey | None


def _key_from_headers() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _session_project(user: User) -> Project:
    """The project a web-session caller acts in: `X-Project-Id` header, else the first one."""
    wanted = request.headers.get("X-Project-Id") or request.args.get("projectId")
    if wanted:
        return projects.get_project(user, wanted)
    owned = projects.list_projects(user)
    if not owned:
        raise Unauthorized("This account has no project")
    return owned[0]


def authenticate_request() -> Principal:
    plaintext = _key_from_headers()
    if plaintext is not None:
        key = api_keys.authenticate(plaintext)
        return Principal(project=key.project, user=key.project.owner, api_key=key)
    if current_user.is_authenticated:
        return Principal(project=_session_project(current_user), user=current_user, api_key=None)
    raise Unauthorized("Missing or invalid API key")


def current_principal() -> Principal:
    """The caller, authenticated once per request (the rate limiter asks before the views)."""
    found = g.get("principal")
    if found is None:
        found = g.principal = authenticate_request()
    return found


@bp.before_request
def require_principal() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS":
        return
    current_principal()


def principal() -> Principal:
    return g.principal
