"""Who is calling: an API key (header only) or the web session (CSRF checked on writes)."""

from __future__ import annotations

from functools import cached_property

from flask import g, request
from flask_login import current_user

from app import ratelimit
from app.api import bp
from app.errors import Unauthorized
from app.extensions import db
from app.models import ApiKey, Project, User
from app.services import api_keys, projects

PUBLIC_ENDPOINTS = {"api.openapi_document"}


class Principal:
    """The caller: a project and its owner (who pays for what the project does), and the API
    key it came with. Held as ids: a view loads the objects it uses (most need only ids)."""

    def __init__(
        self,
        project_id: str,
        user_id: str,
        api_key_id: str | None = None,
        *,
        stamp: str | None = None,
        project: Project | None = None,
        user: User | None = None,
    ) -> None:
        self.project_id, self.user_id, self.api_key_id = project_id, user_id, api_key_id
        self.stamp = stamp  # a remembered key's auth epoch, not yet checked (api_keys.Grant)
        if project is not None:
            self.project = project
        if user is not None:
            self.user = user

    @classmethod
    def of_key(cls, grant: api_keys.Grant) -> Principal:
        return cls(grant.project_id, grant.user_id, grant.key_id, stamp=grant.stamp)

    @cached_property
    def project(self) -> Project:
        return _load(Project, self.project_id)

    @cached_property
    def user(self) -> User:
        return _load(User, self.user_id)

    @cached_property
    def api_key(self) -> ApiKey | None:
        return None if self.api_key_id is None else _load(ApiKey, self.api_key_id)


def _load(model: type, row_id: str):  # noqa: ANN202
    found = db.session.get(model, row_id)
    if found is None:  # deleted since the key was read
        raise Unauthorized("Missing or invalid API key")
    return found


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The API key a request carries: `X-API-Key`, else `Authorization: Bearer`."""
    if x_api_key:
        return x_api_key.strip()
    scheme, _, value = (authorization or "").partition(" ")
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
    plaintext = key_from_headers(
        request.headers.get("X-API-Key"), request.headers.get("Authorization")
    )
    if plaintext is not None:
        return Principal.of_key(api_keys.authenticate(plaintext, ratelimit.shared_redis()))
    if current_user.is_authenticated:
        project = _session_project(current_user)
        return Principal(project.id, current_user.id, project=project, user=current_user)
    raise Unauthorized("Missing or invalid API key")


def current_principal() -> Principal:
    """The caller, authenticated once per request (the rate limiter asks before the views)."""
    found = g.get("principal")
    if found is None:
        found = g.principal = authenticate_request()
    return found


@bp.before_request
def require_principal() -> None:
    """Every route but the public ones needs a caller. A remembered API key is trusted only
    while its stamp is the auth epoch, which the rate limiter has just read; otherwise the
    key is read from the database again (and refused if it has been revoked since)."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.method == "OPTIONS":
        return
    if not api_keys.trusted(current_principal().stamp, g.get("auth_epoch")):
        g.principal = authenticate_request()


def principal() -> Principal:
    return g.principal
