"""Aliases (API.md §6): format rules, uniqueness, and 3-tier resolution.

1. Technical: `@last` (newest generated), `@first` (oldest generated), `@upload` (newest
   uploaded) — inside the flow when a flow context is given, else in the whole project.
2. Flow alias, when a flow context is given.
3. Project alias.
The first tier that matches wins. Deleted images never resolve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Invalid, not_found
from app.extensions import db
from app.models import FlowAlias, Image, is_uuid

ALIAS_RE = re.compile(r"^@[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9][A-Za-z0-9_-]{0,49}")
RESERVED = ("@last", "@first", "@upload")
MAX_REFERENCES = 4


@dataclass(frozen=True)
class Resolved:
    image: Image
    scope: str  # "technical" | "flow" | "project"
    flow_id: str | None
    ref: str


def validate_alias(alias: object, *, field: str = "alias") -> str:
    """The alias itself when well-formed and not reserved; else 400 INVALID_ALIAS/RESERVED_ALIAS."""
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise Invalid(
            "Alias must be @ followed by a letter or digit and up to 49 letters, digits, - or _",
            code="INVALID_ALIAS",
            details={field: "invalid alias"},
        )
    if alias.lower() in RESERVED:
        raise Invalid(
            f"{alias} is reserved", code="RESERVED_ALIAS", details={field: "reserved alias"}
        )
    return alias


def _alive(project_id: str):  # noqa: ANN202
    return select(Image).where(Image.project_id == project_id, Image.deleted_at.is_(None))


def _technical(project_id: str, ref: str, flow_id: str | None) -> Image | None:
    query = _alive(project_id)
    if flow_id:
        query = query.where(Image.flow_id == flow_id)
    name = ref.lower()
    if name == "@upload":
        query = query.where(Image.source == "uploaded").order_by(
            Image.created_at.desc(), Image.id.desc()
        )
    elif name == "@last":
        query = query.where(Image.source == "generated").order_by(
            Image.created_at.desc(), Image.id.desc()
        )
    else:
        query = query.where(Image.source == "generated").order_by(
            Image.created_at.asc(), Image.id.asc()
        )
    return db.session.scalar(query.limit(1))


def resolve(project_id: str, ref: str, flow_id: str | None = None) -> Resolved | None:
    """Resolve an alias with the 3-tier rules; None when nothing matches."""
    if ref.lower() in RESERVED:
        image = _technical(project_id, ref, flow_id)
        return Resolved(image, "technical", flow_id, ref) if image else None
    if flow_id:
        image = db.session.scalar(
            _alive(project_id)
            .join(FlowAlias, FlowAlias.image_id == Image.id)
            .where(FlowAlias.flow_id == flow_id, FlowAlias.alias == ref)
        )
        if image is not None:
            return Resolved(image, "flow", flow_id, ref)
    image = db.session.scalar(_alive(project_id).where(Image.alias == ref))
    return Resolved(image, "project", flow_id, ref) if image else None


def resolve_or_404(project_id: str, ref: str, flow_id: str | None = None) -> Resolved:
    found = resolve(project_id, ref, flow_id)
    if found is None:
        raise not_found("Image")
    return found


def resolve_reference(project_id: str, ref: object, flow_id: str | None) -> Resolved:
    """An image id or an alias, as `referenceImages` accepts; 404 with details.reference."""
    if isinstance(ref, str) and ref.startswith("@"):
        found = resolve(project_id, ref, flow_id)
        if found is not None:
            return found
    elif isinstance(ref, str) and is_uuid(ref):
        image = db.session.scalar(_alive(project_id).where(Image.id == ref))
        if image is not None:
            return Resolved(image, "id", image.flow_id, ref)
    error = not_found("Image")
    error.details = {"reference": ref if isinstance(ref, str) else str(ref)}
    raise error


def mentions(prompt: str) -> list[str]:
    """`@alias` mentions in a prompt, in order, without duplicates."""
    seen: list[str] = []
    for match in MENTION_RE.findall(prompt or ""):
        if match not in seen:
            seen.append(match)
    return seen


def resolve_references(
    project_id: str, refs: list[object] | None, prompt: str, flow_id: str | None
) -> list[Resolved]:
    """Explicit references first, then prompt mentions that resolve; no image twice.

    An explicit reference that does not resolve is a 404; a mention that does not resolve is
    just text (people write "@" for other reasons too).
    """
    refs = list(refs or [])
    if len(refs) > MAX_REFERENCES:
        raise Invalid(
            f"At most {MAX_REFERENCES} reference images",
            code="TOO_MANY_REFERENCES",
            details={"referenceImages": f"at most {MAX_REFERENCES}"},
        )
    resolved: list[Resolved] = []
    for ref in refs:
        found = resolve_reference(project_id, ref, flow_id)
        if all(r.image.id != found.image.id for r in resolved):
            resolved.append(found)
    for mention in mentions(prompt):
        found = resolve(project_id, mention, flow_id)
        if found is not None and all(r.image.id != found.image.id for r in resolved):
            resolved.append(found)
    return resolved


def ensure_project_alias_free(
    project_id: str, alias: str, *, except_image: str | None = None
) -> None:
    query = select(Image.id).where(Image.project_id == project_id, Image.alias == alias)
    if except_image:
        query = query.where(Image.id != except_image)
    if db.session.scalar(query) is not None:
        raise Conflict("Alias already exists", code="ALIAS_EXISTS", details={"alias": alias})


def set_project_alias(image: Image, alias: str | None) -> Image:
    """Give `image` a project alias (None removes it). 409 when another image has it. Commits."""
    if alias is not None:
        validate_alias(alias)
        ensure_project_alias_free(image.project_id, alias, except_image=image.id)
    image.alias = alias
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            "Alias already exists", code="ALIAS_EXISTS", details={"alias": alias}
        ) from None
    return image


def set_flow_alias(flow_id: str, alias: str, image_id: str) -> None:
    """Point a flow alias at an image (replacing an earlier target). Does not commit."""
    validate_alias(alias)
    existing = db.session.scalar(
        select(FlowAlias).where(FlowAlias.flow_id == flow_id, FlowAlias.alias == alias)
    )
    if existing is None:
        db.session.add(FlowAlias(flow_id=flow_id, alias=alias, image_id=image_id))
    else:
        existing.image_id = image_id
    db.session.flush()
