"""Flows (API.md §5): chains of related generations and uploads with their own alias map."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update

from app.errors import Invalid, not_found
from app.extensions import db
from app.models import Flow, FlowAlias, Generation, Image, is_uuid, utcnow
from app.services import aliases

MAX_META_BYTES = 16 * 1024


def create_flow(
    project_id: str, meta: dict[str, Any] | None = None, *, commit: bool = True
) -> Flow:
    if meta is not None and not isinstance(meta, dict):
        raise Invalid("meta must be a JSON object", details={"meta": "must be an object"})
    flow = Flow(project_id=project_id, meta=meta or {})
    db.session.add(flow)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return flow


def get_flow(project_id: str, flow_id: object) -> Flow:
    """The project's flow, or 404 "Flow not found" (missing, malformed or another project's)."""
    flow = db.session.get(Flow, flow_id) if isinstance(flow_id, str) and is_uuid(flow_id) else None
    if flow is None or flow.project_id != project_id:
        raise not_found("Flow")
    return flow


def touch(flow_id: str | None) -> None:
    if flow_id:
        db.session.execute(update(Flow).where(Flow.id == flow_id).values(updated_at=utcnow()))


def alias_map(flow_id: str) -> dict[str, str]:
    """Flow alias → image id, for images that are not deleted."""
    rows = db.session.execute(
        select(FlowAlias.alias, FlowAlias.image_id)
        .join(Image, Image.id == FlowAlias.image_id)
        .where(FlowAlias.flow_id == flow_id, Image.deleted_at.is_(None))
        .order_by(FlowAlias.alias)
    )
    return {alias: image_id for alias, image_id in rows}


def counts(flow_ids: list[str]) -> dict[str, tuple[int, int]]:
    """flow id → (generation count, image count), in two grouped queries (no N+1)."""
    if not flow_ids:
        return {}
    gens = dict(
        db.session.execute(
            select(Generation.flow_id, func.count())
            .where(Generation.flow_id.in_(flow_ids), Generation.deleted_at.is_(None))
            .group_by(Generation.flow_id)
        ).all()
    )
    imgs = dict(
        db.session.execute(
            select(Image.flow_id, func.count())
            .where(Image.flow_id.in_(flow_ids), Image.deleted_at.is_(None))
            .group_by(Image.flow_id)
        ).all()
    )
    return {fid: (int(gens.get(fid, 0)), int(imgs.get(fid, 0))) for fid in flow_ids}


def merge_aliases(project_id: str, flow: Flow, mapping: object) -> Flow:
    """PUT /flows/{id}/aliases: add or repoint each alias; every image must be the project's."""
    if not isinstance(mapping, dict):
        raise Invalid(
            "aliases must be an object of alias → image id", details={"aliases": "object"}
        )
    for alias, image_id in mapping.items():
        aliases.validate_alias(alias)
        image = (
            db.session.get(Image, image_id)
            if isinstance(image_id, str) and is_uuid(image_id)
            else None
        )
        if image is None or image.project_id != project_id or image.deleted_at is not None:
            error = not_found("Image")
            error.details = {"alias": alias, "imageId": image_id}
            raise error
        aliases.set_flow_alias(flow.id, alias, image.id)
    touch(flow.id)
    db.session.commit()
    return flow


def remove_alias(flow: Flow, alias: str) -> None:
    result = db.session.execute(
        delete(FlowAlias).where(FlowAlias.flow_id == flow.id, FlowAlias.alias == alias)
    )
    if result.rowcount == 0:
        db.session.rollback()
        error = not_found("Alias")
        error.message = "Alias not found"
        raise error
    touch(flow.id)
    db.session.commit()


def delete_flow(flow: Flow) -> None:
    """Hard-delete the flow; its generations and images stay with flow_id null."""
    db.session.execute(update(Generation).where(Generation.flow_id == flow.id).values(flow_id=None))
    db.session.execute(update(Image).where(Image.flow_id == flow.id).values(flow_id=None))
    db.session.execute(delete(FlowAlias).where(FlowAlias.flow_id == flow.id))
    db.session.delete(flow)
    db.session.commit()
