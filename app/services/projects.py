"""Projects: ownership, settings, secrets. Another user's project is always NotFound."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from app import queue
from app.errors import Invalid, ServiceUnavailable, not_found
from app.extensions import db
from app.models import Generation, Image, Project, is_uuid, storable_text, utcnow
from app.providers.base import ASPECT_RATIOS
from app.storage import get_storage

if TYPE_CHECKING:
    from app.models import User

log = logging.getLogger(__name__)

MAX_NAME = 120
REMOVE_FILES_JOB = "jobs.maintenance.remove_project_files"
MAX_MODEL_ID = 120  # the width of projects.default_model
# The project cards' cover mosaic has three cells.
PREVIEW_THUMBNAILS = 3


@dataclass(frozen=True)
class ProjectSummary:
    """A project with what its card shows: counts and its latest thumbnails."""

    project: Project
    image_count: int
    generation_count: int
    thumbnail_ids: list[str]


def new_live_secret() -> str:
    return "live_" + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    import base64

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _clean_name(name: object) -> str:
    name = (name if isinstance(name, str) else "").strip()
    if not storable_text(name):
        raise Invalid("Name must not contain NUL characters", details={"name": "NUL"})
    if not name:
        raise Invalid("Name is required", code="NAME_REQUIRED", details={"name": "required"})
    if len(name) > MAX_NAME:
        raise Invalid(f"Name must be at most {MAX_NAME} characters", details={"name": "too long"})
    return name


def create_project(owner: User, name: str, *, commit: bool = True) -> Project:
    project = Project(
        owner_id=owner.id,
        name=_clean_name(name),
        live_secret=new_live_secret(),
        webhook_secret=new_webhook_secret(),
        live_allowed_origins=[],
        canvas_state={},
    )
    db.session.add(project)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return project


def list_projects(owner: User) -> list[Project]:
    return list(
        db.session.scalars(
            select(Project).where(Project.owner_id == owner.id).order_by(Project.created_at)
        )
    )


def summaries(owner: User) -> list[ProjectSummary]:
    """Every project of `owner`, summarised for the projects page."""
    return summarise(list_projects(owner))


def summarise(owned: list[Project], thumbnails: int = PREVIEW_THUMBNAILS) -> list[ProjectSummary]:
    """These projects with their live image and generation counts and the ids of their latest
    `thumbnails` non-deleted images that have a thumbnail (three queries in all)."""
    ids = [p.id for p in owned]
    if not ids:
        return []
    image_counts = _counts(Image, ids)
    generation_counts = _counts(Generation, ids)
    ranked = (
        select(
            Image.project_id,
            Image.id,
            func.row_number()
            .over(partition_by=Image.project_id, order_by=(Image.created_at.desc(), Image.id))
            .label("position"),
        )
        .where(
            Image.project_id.in_(ids), Image.deleted_at.is_(None), Image.thumbnail_key.is_not(None)
        )
        .subquery()
    )
    latest: dict[str, list[str]] = {}
    for project_id, image_id in db.session.execute(
        select(ranked.c.project_id, ranked.c.id)
        .where(ranked.c.position <= thumbnails)
        .order_by(ranked.c.project_id, ranked.c.position)
    ):
        latest.setdefault(project_id, []).append(image_id)
    return [
        ProjectSummary(
            project=p,
            image_count=image_counts.get(p.id, 0),
            generation_count=generation_counts.get(p.id, 0),
            thumbnail_ids=latest.get(p.id, []),
        )
        for p in owned
    ]


def _counts(model: type[Image] | type[Generation], project_ids: list[str]) -> dict[str, int]:
    rows = db.session.execute(
        select(model.project_id, func.count())
        .where(model.project_id.in_(project_ids), model.deleted_at.is_(None))
        .group_by(model.project_id)
    )
    return {project_id: int(count) for project_id, count in rows}


def count_projects(owner: User) -> int:
    return int(db.session.scalar(select(func.count()).where(Project.owner_id == owner.id)) or 0)


def get_project(owner: User, project_id: str) -> Project:
    """The owner's project, or 404 — whether it is missing or someone else's."""
    if not is_uuid(project_id):
        raise not_found("Project")
    project = db.session.get(Project, project_id)
    if project is None or project.owner_id != owner.id:
        raise not_found("Project")
    return project


def rename_project(project: Project, name: str) -> Project:
    project.name = _clean_name(name)
    db.session.commit()
    return project


def delete_project(project: Project) -> None:
    """Delete a project and everything in it; its stored files go in a maintenance job
    (`remove_project_files`). A user keeps at least one project."""
    if count_projects(project.owner) <= 1:
        raise Invalid(
            "You need at least one project; create another before deleting this one",
            code="LAST_PROJECT",
        )
    project_id = project.id
    db.session.delete(project)
    db.session.commit()
    try:
        queue.enqueue(queue.MAINTENANCE_QUEUE, REMOVE_FILES_JOB, project_id)
    except ServiceUnavailable:  # the project is gone; its files stay, reachable by no URL
        log.warning("the files of deleted project %s stay in storage", project_id)


def remove_project_files(project_id: str) -> None:
    """Delete the stored files of a deleted project (every key of a project is under
    `<project id>/`). Run by the job `delete_project` queues; nothing happens if the project
    exists."""
    if db.session.get(Project, project_id) is None:
        get_storage().delete_prefix(project_id)


def update_settings(project: Project, changes: dict[str, Any]) -> Project:
    """PATCH semantics for the settable fields of API.md §8."""
    errors: dict[str, str] = {}
    if "name" in changes:
        try:
            project.name = _clean_name(changes["name"])
        except Invalid:
            errors["name"] = "must be 1–120 characters"
    if "defaultAspectRatio" in changes:
        value = changes["defaultAspectRatio"]
        if value not in ASPECT_RATIOS:
            raise Invalid("Invalid aspect ratio", code="INVALID_ASPECT_RATIO")
        project.default_aspect_ratio = value
    if "defaultModel" in changes:
        value = changes["defaultModel"]
        if value is not None and (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > MAX_MODEL_ID
            or not storable_text(value)
        ):
            errors["defaultModel"] = "must be a model id or null"
        else:
            project.default_model = value
    if "liveAllowedOrigins" in changes:
        value = changes["liveAllowedOrigins"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            errors["liveAllowedOrigins"] = "must be a list of host names"
        else:
            project.live_allowed_origins = [_origin_host(v) for v in value]
    if "liveDailyLimit" in changes:
        value = changes["liveDailyLimit"]
        if isinstance(value, float) and value.is_integer():  # JSON has one number type
            value = int(value)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**31 - 1
        ):
            errors["liveDailyLimit"] = "must be a non-negative integer or null"
        else:
            project.live_daily_limit = value
    if errors:
        db.session.rollback()
        raise Invalid("Invalid project settings", details=errors)
    db.session.commit()
    return project


def _origin_host(value: str) -> str:
    """Accept `https://example.com`, `example.com` or `example.com:8080`; keep host[:port]."""
    value = value.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    return value.split("/", 1)[0]


def rotate_live_secret(project: Project) -> Project:
    """New live secret; the previous one keeps verifying for 24 h (API.md §7)."""
    project.live_secret_previous = project.live_secret
    project.live_secret_rotated_at = utcnow()
    project.live_secret = new_live_secret()
    db.session.commit()
    return project


def rotate_webhook_secret(project: Project) -> Project:
    project.webhook_secret = new_webhook_secret()
    db.session.commit()
    return project
