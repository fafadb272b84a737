"""Images of a project (API.md §6): upload, listing, aliases, focal point, soft delete, purge."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError

from app import epochs
from app.errors import Conflict, Invalid, TooLarge, not_found
from app.extensions import db
from app.models import IMAGE_SOURCES, FlowAlias, Image, LiveCacheEntry, is_uuid, utcnow
from app.services import aliases, flows, imaging, live
from app.services.listing import Page, fetch_page

log = logging.getLogger(__name__)
PURGE_BATCH = 200


def get_image(project_id: str, image_id: object, *, include_deleted: bool = False) -> Image:
    """The project's image, or 404 "Image not found" (missing, deleted, another project's)."""
    image = (
        db.session.get(Image, image_id) if isinstance(image_id, str) and is_uuid(image_id) else None
    )
    if image is None or image.project_id != project_id:
        raise not_found("Image")
    if image.deleted_at is not None and not include_deleted:
        raise not_found("Image")
    return image


def parse_meta_text(text: str | None) -> dict[str, Any] | None:
    """The `meta` form field of an upload: JSON text of an object (≤ 16 KB)."""
    if text is None or text.strip() == "":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise Invalid("meta must be JSON text", details={"meta": "invalid JSON"}) from None
    return flows.validate_meta(value)


def upload(
    project_id: str,
    data: bytes,
    *,
    alias: str | None = None,
    flow_id: str | None = None,
    flow_alias: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Image:
    """Store an uploaded image (judged by decoding, re-encoded) in a flow; a new flow without one.

    Checks cost before work: size (413), field formats (400), the flow (404), the alias (409),
    then decoding (415). Nothing is stored or recorded when any of them fails.
    """
    max_bytes = current_app.config["MAX_UPLOAD_BYTES"]
    if len(data) > max_bytes:
        raise TooLarge("File too large", details={"maxBytes": max_bytes})
    if alias is not None:
        aliases.validate_alias(alias)
    if flow_alias is not None:
        aliases.validate_alias(flow_alias, field="flowAlias")
    meta = flows.validate_meta(meta) if meta is not None else None
    flow = flows.get_flow(project_id, flow_id, to_add_to=True) if flow_id is not None else None
    if alias is not None:
        aliases.ensure_project_alias_free(project_id, alias)
    decoded = imaging.decode(data, max_bytes=max_bytes)
    encoded = imaging.encode(decoded, decoded.format)
    if flow is None:
        flow = flows.create_flow(project_id, commit=False)
    image = imaging.store(project_id, encoded, source="uploaded", flow_id=flow.id, meta=meta)
    image.alias = alias
    try:
        if flow_alias is not None:
            aliases.set_flow_alias(flow.id, flow_alias, image.id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        imaging.remove_files(image)
        raise Conflict(
            "Alias already exists", code="ALIAS_EXISTS", details={"alias": alias}
        ) from None
    except BaseException:
        db.session.rollback()
        imaging.remove_files(image)
        raise
    return image


def list_query(
    project_id: str,
    *,
    flow_id: str | None = None,
    source: str | None = None,
    alias: str | None = None,
    include_deleted: bool = False,
) -> Select[Any]:
    """Images of the project, newest first, on the (project, deleted_at, created_at) index."""
    if source is not None and source not in IMAGE_SOURCES:
        raise Invalid(
            "source must be generated or uploaded",
            details={"source": "must be one of " + ", ".join(IMAGE_SOURCES)},
        )
    query = select(Image).where(Image.project_id == project_id)
    if not include_deleted:
        query = query.where(Image.deleted_at.is_(None))
    if flow_id is not None:
        query = query.where(Image.flow_id == flows.get_flow(project_id, flow_id).id)
    if source is not None:
        query = query.where(Image.source == source)
    if alias is not None:
        query = query.where(Image.alias == aliases.validate_alias(alias))
    return query.order_by(Image.created_at.desc(), Image.id.desc())


def list_images(project_id: str, *, limit: int, offset: int, **filters: Any) -> Page[Image]:
    memo = ("images", project_id, *sorted(filters.items()))
    return fetch_page(list_query(project_id, **filters), limit=limit, offset=offset, memo=memo)


def resolve(project_id: str, alias: str, flow_id: str | None = None) -> aliases.Resolved:
    """GET /images/resolve/{alias}: the 3-tier rules; unknown → 404 "Image not found"."""
    if not aliases.ALIAS_RE.fullmatch(alias):
        aliases.validate_alias(alias)
    flow = flows.get_flow(project_id, flow_id) if flow_id is not None else None
    return aliases.resolve_or_404(project_id, alias, flow.id if flow else None)


def _focal_point(value: object) -> tuple[float, float]:
    def coordinate(name: str) -> float:
        raw = value.get(name) if isinstance(value, dict) else None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
            raise Invalid(
                "focalPoint needs x and y between 0 and 1",
                details={f"focalPoint.{name}": "must be a number from 0 to 1"},
            )
        return float(raw)

    return coordinate("x"), coordinate("y")


def update_image(image: Image, changes: dict[str, Any]) -> Image:
    """PUT /images/{id}: any of `alias` (null removes), `focalPoint`, `meta` (replaces)."""
    alias = changes.get("alias")
    if alias is not None:
        aliases.validate_alias(alias)
    focal = _focal_point(changes["focalPoint"]) if "focalPoint" in changes else None
    meta = flows.validate_meta(changes["meta"]) if "meta" in changes else None
    if alias is not None:
        aliases.ensure_project_alias_free(image.project_id, alias, except_image=image.id)
    if focal is not None:
        image.focal_x, image.focal_y = focal
    if meta is not None:
        image.meta = meta
    if "alias" in changes:
        return aliases.set_project_alias(image, alias)
    db.session.commit()
    return image


def set_alias(image: Image, alias: object) -> Image:
    """PUT /images/{id}/alias: `{"alias": "@x"}` (null removes)."""
    if alias is not None:
        aliases.validate_alias(alias)
    return aliases.set_project_alias(image, alias)


def delete_image(image: Image, *, hard: bool = False) -> None:
    """Soft delete (hidden, URLs 404, alias freed) or, with `hard`, records and files now."""
    if hard:
        _remove([image])
        db.session.commit()
        return
    if image.deleted_at is not None:
        raise not_found("Image")
    hide(image, utcnow())
    db.session.commit()


def hide(image: Image, when: datetime) -> None:
    """Soft-delete it in the session: hidden, its URLs 404, its alias freed and kept for a
    restore. The caller commits."""
    image.deleted_at = when
    image.deleted_alias, image.alias = image.alias, None


def restore_image(image: Image, *, now: datetime | None = None) -> Image:
    """Undo a soft delete within IMAGE_RETENTION_DAYS; the alias comes back when still free."""
    if image.deleted_at is None:
        raise Conflict("Image is not deleted", code="INVALID_STATE")
    if image.deleted_at < _retention_cutoff(now):
        raise not_found("Image")
    if image.deleted_alias is not None:
        taken = db.session.scalar(
            select(Image.id).where(
                Image.project_id == image.project_id, Image.alias == image.deleted_alias
            )
        )
        if taken is None:
            image.alias = image.deleted_alias
    image.deleted_alias = None
    image.deleted_at = None
    try:
        db.session.commit()
    except IntegrityError:  # the alias was taken in the meantime: restore without it
        db.session.rollback()
        image.alias = None
        image.deleted_alias = None
        image.deleted_at = None
        db.session.commit()
    return image


def _retention_cutoff(now: datetime | None) -> datetime:
    return (now or utcnow()) - timedelta(days=current_app.config["IMAGE_RETENTION_DAYS"])


def _remove(images: list[Image]) -> None:
    """Delete the files, then the rows and what points at them (not committed).

    Files go first: if anything fails halfway, the rows are still there and the next purge
    finishes the job (deleting a missing file is not an error).
    """
    for image in images:
        imaging.remove_files(image)
    ids = [image.id for image in images]
    db.session.execute(delete(FlowAlias).where(FlowAlias.image_id.in_(ids)))
    db.session.execute(delete(LiveCacheEntry).where(LiveCacheEntry.image_id.in_(ids)))
    db.session.execute(delete(Image).where(Image.id.in_(ids)))
    # Bulk statements: the flush does not see them.
    epochs.note_change(db.session, live.LIVE_EPOCH, {image.project_id for image in images})
    from app.services.generations import note_changed

    note_changed(*(image.generation_id for image in images))


def purge_expired(now: datetime | None = None) -> int:
    """Remove, records and files, images soft-deleted longer than IMAGE_RETENTION_DAYS.

    Scheduled by the worker; works in batches on the deleted_at index. Returns how many went.
    """
    cutoff = _retention_cutoff(now)
    purged = 0
    while True:
        batch = list(
            db.session.scalars(
                select(Image)
                .where(Image.deleted_at.is_not(None), Image.deleted_at < cutoff)
                .order_by(Image.deleted_at)
                .limit(PURGE_BATCH)
            )
        )
        if not batch:
            break
        _remove(batch)
        db.session.commit()
        purged += len(batch)
    if purged:
        log.info("purged %d images deleted before %s", purged, cutoff.isoformat())
    return purged
