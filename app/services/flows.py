"""Flows (API.md §5): chains of related generations and uploads with their own alias map."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, select, update

from app import database
from app.errors import Invalid, not_found
from app.extensions import db
from app.models import Flow, FlowAlias, Generation, Image, is_uuid, utcnow
from app.services import aliases
from app.services.listing import Page, fetch_page
from app.storage import Storage, get_storage

MAX_META_BYTES = 16 * 1024


def validate_meta(meta: object, *, field: str = "meta") -> dict[str, Any]:
    """Free JSON metadata: an object of at most 16 KB once encoded."""
    if not isinstance(meta, dict):
        raise Invalid(f"{field} must be a JSON object", details={field: "must be an object"})
    size = len(json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_META_BYTES:
        raise Invalid(
            f"{field} must be at most 16 KB", details={field: f"at most {MAX_META_BYTES} bytes"}
        )
    return meta


def create_flow(
    project_id: str, meta: dict[str, Any] | None = None, *, commit: bool = True
) -> Flow:
    flow = Flow(project_id=project_id, meta=validate_meta(meta) if meta is not None else {})
    db.session.add(flow)
    if commit:
        db.session.commit()
    else:
        db.session.flush()
    return flow


def get_flow(project_id: str, flow_id: object, *, to_add_to: bool = False) -> Flow:
    """The project's flow, or 404 "Flow not found" (missing, malformed or another project's).

    `to_add_to`: the caller is about to add a row to the flow, so the flow is held (PostgreSQL
    `FOR KEY SHARE`, until commit) against a concurrent delete_flow — which then waits and
    detaches the new row too — instead of the insert failing its foreign key (a 500).
    Adding to one flow from many requests at once does not serialise: key-share locks
    don't conflict with each other nor with the flow's `updated_at` touch.
    """
    flow = None
    if isinstance(flow_id, str) and is_uuid(flow_id):
        lock = {"key_share": True, "read": True} if to_add_to else None  # FOR KEY SHARE
        flow = db.session.get(Flow, flow_id, with_for_update=lock)
    if flow is None or flow.project_id != project_id:
        raise not_found("Flow")
    return flow


_flows = Flow.__table__
# Built once and sent on the session's connection, not through the ORM: its bookkeeping for an
# UPDATE (matching the statement against loaded objects) cost ~0.6 ms of CPU in a work-horse,
# for a statement that only locks a row and stamps it.
_TOUCH = (
    update(_flows)
    .where(_flows.c.id == bindparam("flow_id"))
    .values(updated_at=bindparam("now"))
    .returning(_flows.c.id)
)


def touch(flow_id: str | None) -> str | None:
    """Stamp the flow's `updated_at`: its id, or None when there is none (deleted meanwhile).

    The UPDATE keeps the flow's row locked until the transaction ends, FOR NO KEY UPDATE: an
    image stored into it meanwhile cannot lose its flow to a deletion (`delete_flow` locks
    the flow first, then sees the image), and no share lock has to be upgraded while a
    deletion waits for it."""
    if not flow_id:
        return None
    touched = (
        db.session.connection()
        .execute(_TOUCH, {"flow_id": flow_id, "now": utcnow()})
        .scalar_one_or_none()
    )
    database.expire_loaded(db.session(), Flow, flow_id, ["updated_at"])
    return touched


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
    """404 for an alias the flow does not have (one that is not even an alias is not looked up:
    it could hold a NUL, which PostgreSQL refuses in a query)."""
    result = None
    if aliases.ALIAS_RE.fullmatch(alias):
        result = db.session.execute(
            delete(FlowAlias).where(FlowAlias.flow_id == flow.id, FlowAlias.alias == alias)
        )
    if result is None or result.rowcount == 0:
        db.session.rollback()
        error = not_found("Alias")
        error.message = "Alias not found"
        raise error
    touch(flow.id)
    db.session.commit()


def delete_flow(flow: Flow) -> None:
    """Hard-delete the flow; its generations and images stay with flow_id null."""
    # Locked first: an image being stored into the flow commits before this goes on.
    db.session.execute(select(Flow.id).where(Flow.id == flow.id).with_for_update())
    from app.services.generations import note_changed

    # Bulk statements: each names the generations whose poll must be read again.
    for model, generation_id in ((Generation, Generation.id), (Image, Image.generation_id)):
        moved = db.session.execute(
            update(model)
            .where(model.flow_id == flow.id)
            .values(flow_id=None)
            .returning(generation_id)
        ).scalars()
        note_changed(*moved)
    db.session.execute(delete(FlowAlias).where(FlowAlias.flow_id == flow.id))
    db.session.delete(flow)
    db.session.commit()


def list_query(project_id: str) -> Select[Any]:
    return (
        select(Flow)
        .where(Flow.project_id == project_id)
        .order_by(Flow.created_at.desc(), Flow.id.desc())
    )


def list_flows(project_id: str, *, limit: int, offset: int) -> Page[Flow]:
    return fetch_page(
        list_query(project_id), limit=limit, offset=offset, memo=("flows", project_id)
    )


def alias_maps(flow_ids: list[str]) -> dict[str, dict[str, str]]:
    """flow id → {alias: image id} for many flows in one query (alive images only)."""
    maps: dict[str, dict[str, str]] = {fid: {} for fid in flow_ids}
    if not flow_ids:
        return maps
    rows = db.session.execute(
        select(FlowAlias.flow_id, FlowAlias.alias, FlowAlias.image_id)
        .join(Image, Image.id == FlowAlias.image_id)
        .where(FlowAlias.flow_id.in_(flow_ids), Image.deleted_at.is_(None))
        .order_by(FlowAlias.alias)
    )
    for flow_id, alias, image_id in rows:
        maps[flow_id][alias] = image_id
    return maps


@dataclass(frozen=True)
class Summary:
    generation_count: int
    image_count: int
    aliases: dict[str, str]


def summaries(flow_list: list[Flow]) -> dict[str, Summary]:
    """Counts and alias maps for a page of flows: three queries whatever the page size."""
    ids = [flow.id for flow in flow_list]
    numbers = counts(ids)
    maps = alias_maps(ids)
    return {fid: Summary(numbers[fid][0], numbers[fid][1], maps[fid]) for fid in ids}


def images_query(flow: Flow) -> Select[Any]:
    """The flow's images (generated and uploaded), oldest first."""
    return (
        select(Image)
        .where(Image.flow_id == flow.id, Image.deleted_at.is_(None))
        .order_by(Image.created_at.asc(), Image.id.asc())
    )


def flow_images(flow: Flow, *, limit: int, offset: int) -> Page[Image]:
    return fetch_page(images_query(flow), limit=limit, offset=offset, memo=("flow-images", flow.id))


def flow_generations(
    flow: Flow, *, limit: int, offset: int
) -> tuple[Page[Generation], dict[str, Image]]:
    """The flow's generations, oldest first, and their output images (one query for all)."""
    query = (
        select(Generation)
        .where(Generation.flow_id == flow.id, Generation.deleted_at.is_(None))
        .order_by(Generation.created_at.asc(), Generation.id.asc())
    )
    found = fetch_page(query, limit=limit, offset=offset, memo=("flow-generations", flow.id))
    output_ids = [gen.output_image_id for gen in found.items if gen.output_image_id]
    outputs = (
        {
            image.id: image
            for image in db.session.scalars(
                select(Image).where(Image.id.in_(output_ids), Image.deleted_at.is_(None))
            )
        }
        if output_ids
        else {}
    )
    return found, outputs


def archive_name(index: int, image: Image, flow_aliases: dict[str, str]) -> str:
    """`NNN-<alias or id>.<ext>`: the project alias, else a flow alias, else the id (no `@`)."""
    label = image.alias or flow_aliases.get(image.id) or image.id
    return f"{index:03d}-{label.removeprefix('@')}.{image.extension}"


def archive(flow: Flow) -> Iterator[bytes]:
    """A ZIP of the flow's images, produced piece by piece as it is sent (never whole in memory).

    The rows are read now; the returned iterator only reads stored bytes, chunk by chunk.
    """
    by_image: dict[str, str] = {}
    for alias, image_id in alias_map(flow.id).items():
        by_image.setdefault(image_id, alias)
    entries = [
        (archive_name(index, image, by_image), image.storage_key, image.created_at)
        for index, image in enumerate(db.session.scalars(images_query(flow)), start=1)
    ]
    return _zip_stream(entries, get_storage())


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken away as soon as they are written."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _zip_stream(entries: list[tuple[str, str, datetime]], storage: Storage) -> Iterator[bytes]:
    sink = _Sink()
    # Images are already compressed: store them as they are.
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive_file:
        for name, key, created_at in entries:
            info = zipfile.ZipInfo(name, date_time=created_at.timetuple()[:6])
            with archive_file.open(info, mode="w") as member:
                for chunk in storage.open_chunks(key):
                    member.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
