"""A project's canvas state, versioned for optimistic concurrency (API.md §8).

A write names the version it was based on; the UPDATE only applies when that is still the
stored version (compare-and-set in one statement), so two editors can never silently overwrite
each other: the slower one gets 412 and re-reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from app.errors import Invalid, PreconditionFailed, TooLarge
from app.extensions import db
from app.models import Project, utcnow

MAX_STATE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Canvas:
    state: dict[str, Any]
    version: int
    updated_at: datetime | None


def get_canvas(project_id: str) -> Canvas:
    row = db.session.execute(
        select(Project.canvas_state, Project.canvas_version, Project.canvas_updated_at).where(
            Project.id == project_id
        )
    ).one()
    return Canvas(row.canvas_state or {}, row.canvas_version, row.canvas_updated_at)


def save_canvas(project_id: str, state: object, expected_versions: set[int] | None) -> Canvas:
    """Store `state` if the stored version is one of `expected_versions` (None: any version).

    412 PRECONDITION_FAILED when another write got there first.
    """
    if not isinstance(state, dict):
        raise Invalid("state must be a JSON object", details={"state": "must be an object"})
    size = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_STATE_BYTES:
        raise TooLarge(
            "Canvas state must be at most 1 MB",
            code="PAYLOAD_TOO_LARGE",
            details={"maxBytes": MAX_STATE_BYTES},
        )
    current = get_canvas(project_id).version
    if expected_versions is not None and current not in expected_versions:
        raise _stale(current)
    now = utcnow()
    result = db.session.execute(
        update(Project)
        .where(Project.id == project_id, Project.canvas_version == current)
        .values(canvas_state=state, canvas_version=current + 1, canvas_updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        raise _stale(get_canvas(project_id).version)
    db.session.commit()
    return Canvas(state, current + 1, now)


def _stale(current: int) -> PreconditionFailed:
    return PreconditionFailed(
        "The canvas has changed since you read it; reload it and try again",
        details={"currentVersion": current},
        headers={"ETag": f'"{current}"'},
    )
