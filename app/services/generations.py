"""Generations (API.md §4): accepted and charged at once, run by a worker, ended exactly once.

`create` validates the request, resolves its references, checks aliases, debits the credits and
inserts the row, puts the job on the queue and only then commits: a queue that is down (503)
leaves nothing behind, and the worker waits briefly for a row whose commit it overtook.

The worker's `run` moves a generation pending → processing → success through the stages
(queued, enhancing, resolving, generating, storing, done), each saved and announced on the
generation's Redis channel. Every other ending — a provider error, RQ's failure callback, the
work-horse-killed hook, the sweeper, a cancel — goes through a conditional UPDATE from a live
status plus `credits.refund` (unique per generation), so whoever gets there first ends it and a
generation is refunded at most once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from flask import current_app
from PIL import Image as PILImage
from redis.exceptions import RedisError
from rq import Callback, Retry
from sqlalchemy import bindparam, case, false, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from app import database, epochs, queue
from app.errors import Conflict, Invalid, TierRestricted, TooLarge, UnsupportedMedia, not_found
from app.extensions import db
from app.models import (
    STATUSES,
    ApiKey,
    Generation,
    Image,
    Project,
    User,
    WebhookDelivery,
    is_uuid,
    new_id,
    storable_text,
    utcnow,
)
from app.providers import (
    ASPECT_RATIOS,
    TEMPLATES,
    ModelInfo,
    ProviderError,
    Reference,
    get_provider,
)
from app.services import aliases, credits, flows, images, imaging, webhooks
from app.storage import StorageError, get_storage

log = logging.getLogger(__name__)

MAX_PROMPT = 4000
MAX_META_BYTES = 16 * 1024
MAX_SEED = 2**31 - 1
MAX_KEY_LENGTH = 255
IDEMPOTENCY_TTL = timedelta(hours=24)
UPSCALE_FACTORS = (2, 4)
UPSCALE_MAX_SIDE = 4096
UPSCALE_MODEL = "pillow-lanczos"
WORKER_LOST_MESSAGE = "The worker running this generation stopped unexpectedly"
LIVE_STATUSES = ("pending", "processing")
RUN_JOB = "jobs.generate.run"
FAILURE_CALLBACK = "jobs.generate.on_failure"
# The job may overtake the commit of its row (create enqueues before committing).
_ROW_WAIT_SECONDS = 5.0
_PROGRESS, _ENDED = "progress", "ended"  # what a generation's channel says
_PENDING_GRACE = timedelta(seconds=60)
_STARTED_GRACE = timedelta(seconds=10)
_DEADLINE_GRACE_SECONDS = 60
_SWEEP_BATCH = 500


class _Ended(Exception):
    """The generation was ended elsewhere (sweeper, cancel) while this worker ran it."""


class _MissingReference(Exception):
    """A reference or source image's row or bytes are gone."""


@dataclass
class _Spec:
    """A validated generation request."""

    prompt: str
    negative_prompt: str | None
    aspect_ratio: str
    reference_inputs: list[str]
    references: list[aliases.Resolved]
    flow_id: str | None
    alias: str | None
    flow_alias: str | None
    auto_enhance: bool
    template: str | None
    seed: int | None
    model: ModelInfo
    meta: dict[str, Any] = field(default_factory=dict)
    webhook_url: str | None = None
    request_id: str | None = None


def channel(generation_id: str) -> str:
    """The Redis pub/sub channel announcing a generation's changes."""
    return f"pictor:generation:{generation_id}"


# --- validation ------------------------------------------------------------------------------


def _invalid(name: str, reason: str, *, code: str = "VALIDATION_ERROR") -> Invalid:
    return Invalid(f"{name} {reason}", code=code, details={name: reason})


def _optional_text(params: dict[str, Any], name: str, max_length: int) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(name, "must be a string")
    value = value.strip()
    if len(value) > max_length:
        raise _invalid(name, f"must be at most {max_length} characters")
    if not storable_text(value):
        raise _invalid(name, "must not contain NUL characters")
    return value or None


def _prompt(params: dict[str, Any]) -> str:
    raw = params.get("prompt")
    if raw is not None and not isinstance(raw, str):
        raise _invalid("prompt", "must be a string")
    prompt = (raw or "").strip()
    if not prompt:
        raise Invalid("Prompt is required", code="PROMPT_REQUIRED", details={"prompt": "required"})
    if len(prompt) > MAX_PROMPT:
        raise _invalid("prompt", f"must be at most {MAX_PROMPT} characters")
    if not storable_text(prompt):
        raise _invalid("prompt", "must not contain NUL characters")
    return prompt


def _aspect_ratio(project: Project, value: object) -> str:
    ratio = value if value is not None else (project.default_aspect_ratio or "1:1")
    if ratio not in ASPECT_RATIOS:
        raise Invalid(
            "Invalid aspect ratio",
            code="INVALID_ASPECT_RATIO",
            details={"aspectRatio": f"one of {', '.join(ASPECT_RATIOS)}"},
        )
    return str(ratio)


def _flag(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(name, "must be true or false")
    return value


def _template(value: object) -> str | None:
    if value is None:
        return None
    if value not in TEMPLATES:
        raise _invalid("template", f"must be one of {', '.join(TEMPLATES)}")
    return str(value)


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # JSON has one number type
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise _invalid("seed", f"must be an integer from 0 to {MAX_SEED}")
    return value


def _meta(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid("meta", "must be a JSON object")
    if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_META_BYTES:
        raise _invalid("meta", "must be at most 16 KB of JSON")
    return value


def _references(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("referenceImages", "must be an array of image ids or aliases")
    return list(value)


def _alias(params: dict[str, Any], name: str, legacy: str) -> str | None:
    """The alias under its name, else under its legacy name; each one given must be valid."""
    given = [
        aliases.validate_alias(params[field], field=field)
        for field in (name, legacy)
        if params.get(field) is not None
    ]
    return given[0] if given else None


def models() -> list[ModelInfo]:
    """The models this deployment offers (GET /models)."""
    return get_provider(current_app.config).models()


def _model(project: Project, user: User, requested: object) -> ModelInfo:
    catalog = models()
    by_id = {m.id: m for m in catalog}
    default = next((m for m in catalog if m.default), catalog[0])
    if requested is not None:
        if requested not in by_id:
            raise _invalid("model", f"must be one of {', '.join(by_id)}")
        info = by_id[str(requested)]
    else:
        info = by_id.get(project.default_model or "", default)
    if user.tier not in info.tiers:
        raise TierRestricted(
            f"The model {info.id} is not available on the {user.tier} plan",
            details={"model": info.id, "tier": user.tier},
        )
    return info


def _ensure_alias_available(project_id: str, alias: str, *, except_image: str | None) -> None:
    """409 when an image has the alias or a generation still running will take it."""
    aliases.ensure_project_alias_free(project_id, alias, except_image=except_image)
    claimed = db.session.scalar(
        select(Generation.id).where(
            Generation.project_id == project_id,
            Generation.alias == alias,
            Generation.status.in_(LIVE_STATUSES),
            Generation.deleted_at.is_(None),
        )
    )
    if claimed is not None:
        raise Conflict("Alias already exists", code="ALIAS_EXISTS", details={"alias": alias})


def _spec(
    project: Project, user: User, params: object, *, except_image: str | None = None
) -> _Spec:
    """Validate a POST /generations body and resolve what it refers to. Reads only."""
    if not isinstance(params, dict):
        raise Invalid("Request body must be a JSON object", code="INVALID_JSON")
    prompt = _prompt(params)
    spec = _Spec(
        prompt=prompt,
        negative_prompt=_optional_text(params, "negativePrompt", MAX_PROMPT),
        aspect_ratio=_aspect_ratio(project, params.get("aspectRatio")),
        reference_inputs=_references(params.get("referenceImages")),
        references=[],
        flow_id=None,
        alias=_alias(params, "alias", "assignAlias"),
        flow_alias=_alias(params, "flowAlias", "assignFlowAlias"),
        auto_enhance=_flag(params, "autoEnhance"),
        template=_template(params.get("template")),
        seed=_seed(params.get("seed")),
        model=_model(project, user, params.get("model")),
        meta=_meta(params.get("meta")),
        webhook_url=(
            webhooks.validate_url(params["webhookUrl"])
            if params.get("webhookUrl") is not None
            else None
        ),
        request_id=_optional_text(params, "requestId", MAX_KEY_LENGTH),
    )
    if params.get("flowId") is not None:
        spec.flow_id = flows.get_flow(project.id, params["flowId"], to_add_to=True).id
    spec.references = aliases.resolve_references(
        project.id, spec.reference_inputs, prompt, spec.flow_id
    )
    if spec.alias:
        _ensure_alias_available(project.id, spec.alias, except_image=except_image)
    return spec


def _reference_list(references: Iterable[aliases.Resolved]) -> list[dict[str, Any]]:
    return [{"imageId": r.image.id, "ref": r.ref, "scope": r.scope} for r in references]


def price(
    project: Project, user: User, params: dict[str, Any], *, idempotency_key: str | None = None
) -> dict[str, Any]:
    """dryRun: validate, resolve and price a request without writing or charging anything."""
    spec = _spec(project, user, params)
    _idempotency_key(idempotency_key, spec)
    return {
        "valid": True,
        "creditsCharged": spec.model.credits,
        "model": spec.model.id,
        "referenceImages": _reference_list(spec.references),
    }


# --- accepting -------------------------------------------------------------------------------


def _idempotency_key(header: str | None, spec: _Spec) -> str | None:
    """The Idempotency-Key header, else `requestId`; 1 to 255 characters."""
    key = header if header is not None else spec.request_id
    if key is not None and not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise _invalid("idempotencyKey", f"must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def _request_hash(params: dict[str, Any]) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(project_id: str, key: str, request_hash: str) -> Generation | None:
    """The generation an idempotency key already created, if the key is still valid.

    An expired key (older than 24 h) is released, so it can be used again.
    """
    earlier = db.session.scalar(
        select(Generation).where(
            Generation.project_id == project_id, Generation.idempotency_key == key
        )
    )
    if earlier is None:
        return None
    if earlier.created_at <= utcnow() - IDEMPOTENCY_TTL:
        earlier.idempotency_key = None
        db.session.flush()
        return None
    if earlier.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was used with a different request body",
            code="IDEMPOTENCY_CONFLICT",
            details={"idempotencyKey": key},
        )
    return earlier


def create(
    project: Project,
    user: User,
    params: dict[str, Any],
    *,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
    live_cache_key: str | None = None,
    enqueue: bool = True,
) -> tuple[Generation, bool]:
    """Accept a generation: validate, charge, queue. Returns (generation, created).

    `created` is False when the idempotency key (Idempotency-Key header, else `requestId`)
    names an earlier request with the same body. `enqueue=False` leaves the job to the caller
    (the demo seed runs it in-process).
    """
    spec = _spec(project, user, params)
    key = _idempotency_key(idempotency_key, spec)
    request_hash = None
    if key is not None:
        request_hash = _request_hash(params)
        earlier = _replay(project.id, key, request_hash)
        if earlier is not None:
            return earlier, False
    generation = Generation(
        id=new_id(),
        project_id=project.id,
        user_id=user.id,
        api_key_id=api_key.id if api_key else None,
        kind="generate",
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        aspect_ratio=spec.aspect_ratio,
        seed=spec.seed if spec.seed is not None else secrets.randbelow(MAX_SEED + 1),
        model=spec.model.id,
        template=spec.template,
        auto_enhance=spec.auto_enhance,
        reference_inputs=spec.reference_inputs,
        reference_images=_reference_list(spec.references),
        alias=spec.alias,
        flow_alias=spec.flow_alias,
        flow_id=spec.flow_id,
        credits_charged=spec.model.credits,
        meta=spec.meta,
        request_id=spec.request_id,
        idempotency_key=key,
        request_hash=request_hash,
        webhook_url=spec.webhook_url,
        live_cache_key=live_cache_key,
    )
    try:
        return _accept(generation, enqueue=enqueue, new_flow=spec.flow_id is None), True
    except IntegrityError:
        # Another request with the same idempotency key committed first.
        db.session.rollback()
        if key is None or request_hash is None:
            raise
        earlier = _replay(project.id, key, request_hash)
        if earlier is None:
            raise
        return earlier, False


def _accept(generation: Generation, *, enqueue: bool = True, new_flow: bool = False) -> Generation:
    """Insert, debit, enqueue, commit — or leave nothing behind. With `new_flow` the generation
    starts a flow of its own; a flow it joins is touched instead (its `updated_at`)."""
    generation.status, generation.stage = "pending", "queued"
    generation.job_id = generation.id
    try:
        if new_flow:
            generation.flow_id = flows.create_flow(generation.project_id, commit=False).id
        db.session.add(generation)
        db.session.flush()
        credits.debit(
            generation.user_id,
            generation.credits_charged,
            generation_id=generation.id,
            note=f"{generation.kind.capitalize()} {generation.id}",
        )
        if not new_flow:
            flows.touch(generation.flow_id)
        if enqueue:
            _enqueue(generation.id)
    except BaseException:
        db.session.rollback()
        raise
    database.commit_keeping(db.session(), generation)  # its answer needs no SELECT
    return generation


def _enqueue(generation_id: str) -> None:
    queue.enqueue(
        queue.GENERATION_QUEUE,
        RUN_JOB,
        generation_id,
        job_id=generation_id,
        job_timeout=int(current_app.config["JOB_TIMEOUT_SECONDS"]),
        result_ttl=600,
        failure_ttl=7 * 24 * 3600,
        retry=Retry(max=2, interval=[2, 10]),
        on_failure=Callback(FAILURE_CALLBACK),
    )


def regenerate(
    project: Project, user: User, generation_id: str, *, api_key: ApiKey | None = None
) -> Generation:
    """Run a generation's request again as a new, charged generation (`regeneratedFrom`).

    References are resolved again now; the aliases move to the new output when it is done
    (the project alias only if the old output still holds it or it is free). A new seed is
    drawn: send the old seed in a new request for the identical picture.
    """
    source = get_generation(project.id, generation_id)
    if source.kind == "upscale":
        return create_upscale(
            project,
            user,
            source.source_image_id or "",
            source.upscale_factor or 2,
            api_key=api_key,
            regenerated_from=source.id,
        )
    params: dict[str, Any] = {
        "prompt": source.prompt,
        "negativePrompt": source.negative_prompt,
        "aspectRatio": source.aspect_ratio,
        "referenceImages": source.reference_inputs,
        "flowId": source.flow_id,
        "flowAlias": source.flow_alias,
        "autoEnhance": source.auto_enhance,
        "template": source.template,
        "model": source.model,
        "meta": source.meta,
        "webhookUrl": source.webhook_url,
    }
    if source.alias and _alias_movable(project.id, source):
        params["alias"] = source.alias
    spec = _spec(project, user, params, except_image=source.output_image_id)
    generation = Generation(
        id=new_id(),
        project_id=project.id,
        user_id=user.id,
        api_key_id=api_key.id if api_key else None,
        kind="generate",
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        aspect_ratio=spec.aspect_ratio,
        seed=secrets.randbelow(MAX_SEED + 1),
        model=spec.model.id,
        template=spec.template,
        auto_enhance=spec.auto_enhance,
        reference_inputs=spec.reference_inputs,
        reference_images=_reference_list(spec.references),
        alias=spec.alias,
        flow_alias=spec.flow_alias,
        flow_id=spec.flow_id,
        credits_charged=spec.model.credits,
        meta=spec.meta,
        webhook_url=spec.webhook_url,
        regenerated_from=source.id,
    )
    return _accept(generation, new_flow=spec.flow_id is None)


def _alias_movable(project_id: str, source: Generation) -> bool:
    """True when the source's alias is free or still held by the source's own output."""
    try:
        _ensure_alias_available(project_id, source.alias or "", except_image=source.output_image_id)
    except Conflict:
        return False
    return True


def create_upscale(
    project: Project,
    user: User,
    image_id: str,
    scale: object,
    *,
    api_key: ApiKey | None = None,
    regenerated_from: str | None = None,
) -> Generation:
    """Queue an upscale of an image (2× or 4×, at most 4096 px a side), charged like a
    generation; the result is a new image with source "generated"."""
    if isinstance(scale, bool) or scale not in UPSCALE_FACTORS:
        raise _invalid("scale", "must be 2 or 4")
    factor = int(scale)  # type: ignore[call-overload]
    image = images.get_image(project.id, image_id)
    width, height = image.width * factor, image.height * factor
    if max(width, height) > UPSCALE_MAX_SIDE:
        raise Invalid(
            f"The result would be {width}×{height}; at most {UPSCALE_MAX_SIDE} px a side",
            details={"scale": f"too large for a {image.width}×{image.height} image"},
        )
    source_generation = db.session.get(Generation, image.generation_id or "")
    cost = int(current_app.config["CREDITS_PER_GENERATION"])
    generation = Generation(
        id=new_id(),
        project_id=project.id,
        user_id=user.id,
        api_key_id=api_key.id if api_key else None,
        kind="upscale",
        prompt=f"Upscale {factor}×",
        aspect_ratio=(
            source_generation.aspect_ratio
            if source_generation
            else nearest_ratio(image.width, image.height)
        ),
        model=UPSCALE_MODEL,
        source_image_id=image.id,
        upscale_factor=factor,
        reference_inputs=[image.id],
        reference_images=[{"imageId": image.id, "ref": image.id, "scope": "id"}],
        flow_id=image.flow_id,
        credits_charged=cost,
        meta={},
        regenerated_from=regenerated_from,
    )
    return _accept(generation)


def nearest_ratio(width: int, height: int) -> str:
    """The listed aspect ratio closest to width:height."""
    target = math.log(width / height)
    return min(
        ASPECT_RATIOS,
        key=lambda r: abs(math.log(int(r.split(":")[0]) / int(r.split(":")[1])) - target),
    )


# --- reading ---------------------------------------------------------------------------------


def get_generation(
    project_id: str, generation_id: object, *, include_deleted: bool = False
) -> Generation:
    """The project's generation, or 404 "Generation not found"."""
    generation = (
        db.session.get(Generation, generation_id)
        if isinstance(generation_id, str) and is_uuid(generation_id)
        else None
    )
    if generation is None or generation.project_id != project_id:
        raise not_found("Generation")
    if generation.deleted_at is not None and not include_deleted:
        raise not_found("Generation")
    return generation


_GENERATION_FIELDS = tuple(Generation.__mapper__.column_attrs.keys())
_IMAGE_FIELDS = tuple(Image.__mapper__.column_attrs.keys())
_WITH_OUTPUT = database.DirectRead(
    select(
        *(getattr(Generation, name) for name in _GENERATION_FIELDS),
        *(getattr(Image, name) for name in _IMAGE_FIELDS),
    )
    .outerjoin(Image, Image.id == Generation.output_image_id)
    .where(
        Generation.id == bindparam("generation_id"),
        Generation.project_id == bindparam("project_id"),
    )
)


# GET /generations/{id} is what clients poll. A process remembers what it read (`_reads`),
# under the generation's epoch (app/epochs.py), which every commit that changes the generation
# or its output image replaces: the rate limiter reads the epoch in the request's count
# (`ratelimit.read_epoch_with_count`), so a poll of a remembered generation costs no
# database statement. One epoch per generation, so that a busy generation leaves every other
# remembered; Redis drops an epoch unused for an hour (a lost epoch matches no stamp).
# At most 2,000 generations per process: ~3.5 KB each, and the API's response body (~1.2 KB;
# one per URL base, a few at most); a long prompt and 16 KB of meta make one ~45 KB in all,
# so a few MB of what is being polled, not the history.
_reads = epochs.Memory(remember_for=60.0, at_most=2_000)
READS_EPOCH = epochs.register(
    epochs.Epoch(
        "pictor:generation-epoch",
        watched={Generation: _GENERATION_FIELDS, Image: _IMAGE_FIELDS},
        forget=_reads.forget,
        remember_for=_reads.remember_for,
        what="generation reads",
        scope_of=lambda changed: (
            changed.id if isinstance(changed, Generation) else changed.generation_id
        ),
        expire_after=3600,
    )
)


def read_epoch_key(generation_id: object) -> str | None:
    """The key of a generation's epoch, None for an id that names none."""
    if isinstance(generation_id, str) and is_uuid(generation_id):
        return READS_EPOCH.key_for(generation_id)
    return None


def note_changed(*generation_ids: str | None) -> None:
    """For bulk statements on generations or images (the flush does not see them)."""
    epochs.note_change(db.session, READS_EPOCH, {gid for gid in generation_ids if gid})


@dataclass
class Read:
    """A generation and its output image as read-only records (the models' attribute names,
    nothing loaded into the session), and what callers made of them while they are remembered
    (`rendered`: the API keeps its response body per URL base here)."""

    generation: SimpleNamespace
    output: SimpleNamespace | None
    rendered: dict[Hashable, bytes] = field(default_factory=dict)


def read(
    project_id: str,
    generation_id: object,
    *,
    include_deleted: bool = False,
    epoch: str | None = None,
) -> Read:
    """The project's generation and its output image, in one statement read through the
    driver (`database.DirectRead`); 404 as get_generation.

    With `epoch`, the generation's epoch as the request read it ("" when Redis has none),
    the read is remembered, and given back without a statement while the epoch stays the
    one read before it."""
    found = recall(project_id, generation_id, epoch, include_deleted=True)
    if found is None:
        if not (isinstance(generation_id, str) and is_uuid(generation_id)):
            raise not_found("Generation")
        stamp = epoch
        if epoch == "":  # first read since Redis lost it: the epoch before the rows
            from app import ratelimit

            shared = ratelimit.shared_redis()
            stamp = READS_EPOCH.read(shared, generation_id) if shared is not None else ""
        found = _read_records(project_id, generation_id)
        if found is None:  # not remembered: a generation is inserted without a new epoch
            raise not_found("Generation")
        _reads.remember(generation_id, project_id, found, stamp or "")
    if found.generation.deleted_at is not None and not include_deleted:
        raise not_found("Generation")
    return found


def recall(
    project_id: str, generation_id: object, epoch: str | None, *, include_deleted: bool = False
) -> Read | None:
    """The read of the project's generation this process remembers while `epoch` is the
    generation's epoch, without a statement; None when there is none (or it is deleted and
    `include_deleted` is not set): `read` then says why."""
    if not epoch or not isinstance(generation_id, str):
        return None
    found = _reads.recall(generation_id, project_id, epoch)
    if found is None or (found.generation.deleted_at is not None and not include_deleted):
        return None
    return found


def _read_records(project_id: str, generation_id: str) -> Read | None:
    row = _WITH_OUTPUT.first(db.engine, {"generation_id": generation_id, "project_id": project_id})
    if row is None:
        return None
    split = len(_GENERATION_FIELDS)
    generation = SimpleNamespace(**dict(zip(_GENERATION_FIELDS, row[:split], strict=True)))
    output = None
    if row[split] is not None:
        output = SimpleNamespace(**dict(zip(_IMAGE_FIELDS, row[split:], strict=True)))
    return Read(generation, output)


def list_generations(
    project_id: str,
    *,
    flow_id: str | None = None,
    status: str | None = None,
    q: str | None = None,
    include_deleted: bool = False,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[Generation], int]:
    """Newest first. `q`: every word must appear in the prompt, case-insensitive."""
    if status is not None and status not in STATUSES:
        raise _invalid("status", f"must be one of {', '.join(STATUSES)}")
    query = select(Generation).where(Generation.project_id == project_id)
    if not include_deleted:
        query = query.where(Generation.deleted_at.is_(None))
    if flow_id is not None:
        query = query.where(Generation.flow_id == flows.get_flow(project_id, flow_id).id)
    if status is not None:
        query = query.where(Generation.status == status)
    for word in (q or "").split():
        if not storable_text(word):  # no prompt holds one
            query = query.where(false())
            break
        query = query.where(func.lower(Generation.prompt).contains(word.lower(), autoescape=True))
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(
        query.order_by(Generation.created_at.desc(), Generation.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)


def output_images(generations: Sequence[Generation]) -> dict[str, Image]:
    """generation id → its output image, in one query."""
    wanted = {g.output_image_id: g.id for g in generations if g.output_image_id}
    if not wanted:
        return {}
    found = db.session.scalars(select(Image).where(Image.id.in_(wanted))).all()
    return {wanted[image.id]: image for image in found}


def _reload(generation_id: str) -> Generation | None:
    return db.session.get(Generation, generation_id, populate_existing=True)


def _release() -> None:
    """End the read transaction so no database connection is held while waiting."""
    db.session.commit()


def wait(generation_id: str, timeout: float) -> Generation:
    """The generation once it is finished, or as it stands after `timeout` seconds."""
    deadline = time.monotonic() + max(0.0, timeout)
    with queue.listen(channel(generation_id)) as listener:
        while True:
            generation = _reload(generation_id)
            if generation is None:
                raise not_found("Generation")
            remaining = deadline - time.monotonic()
            if generation.is_terminal or remaining <= 0:
                return generation
            _release()
            # A stage changed: nothing to read yet. An ending, a silence or anything else is.
            while listener.next(min(remaining, 2.0)) == _PROGRESS:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break


def watch(
    generation_id: str, *, keepalive: float = 15.0, max_seconds: float = 3600.0
) -> Iterator[Generation | None]:
    """Yield the generation at first and after each change of status or stage, until it ends.

    Yields None every `keepalive` seconds without a change (for SSE comments). Between looks
    no database connection is held.
    """
    started = time.monotonic()
    last: tuple[str, str] | None = None
    with queue.listen(channel(generation_id)) as listener:
        while True:
            generation = _reload(generation_id)
            if generation is None:
                return
            state = (generation.status, generation.stage)
            if state != last:
                last = state
                yield generation
            if generation.is_terminal or time.monotonic() - started > max_seconds:
                return
            _release()
            if not listener.wait(keepalive):
                yield None


# --- the worker ------------------------------------------------------------------------------


def run(generation_id: str) -> None:
    """Do a generation's work (the RQ job). Ends it success or failed; never charges.

    The job's commits leave the generation loaded: its request fields do not change once
    accepted, what the job writes is read back by the statement that writes it or set on it,
    and what others may change meanwhile (its deletion) is read back by the success UPDATE."""
    with database.kept_across_commits(db.session()):
        generation, started = _claim(generation_id)
        if generation is None:
            log.warning("generation %s has no row (its request was rolled back)", generation_id)
        elif not started:
            log.info("generation %s is %s; not running it", generation_id, generation.status)
        else:
            _run(generation)


def _run(generation: Generation) -> None:
    generation_id = generation.id
    try:
        output = _upscale(generation) if generation.kind == "upscale" else _generate(generation)
    except _Ended:
        db.session.rollback()
        return
    except ProviderError as exc:
        db.session.rollback()
        fail(generation_id, exc.code, exc.message)
        return
    except (UnsupportedMedia, TooLarge):
        db.session.rollback()
        fail(generation_id, "PROVIDER_ERROR", "The model answered with an unreadable image")
        return
    except StorageError as exc:
        db.session.rollback()
        log.error("storing generation %s failed: %s", generation_id, exc)
        fail(generation_id, "STORAGE_ERROR", "The image could not be stored")
        return
    except _MissingReference as exc:
        db.session.rollback()
        fail(generation_id, "IMAGE_NOT_FOUND", str(exc))
        return
    _succeed(generation, output)


# The first stage of a run: enhancing the prompt, else resolving (loading) the references or the
# image to upscale, else straight to generating.
_FIRST_STAGE = case(
    (Generation.auto_enhance, "enhancing"),
    (
        (Generation.kind == "generate")
        & (func.json_array_length(Generation.reference_images) == 0),
        "generating",
    ),
    else_="resolving",
)


def _claim(generation_id: str) -> tuple[Generation | None, bool]:
    """pending → processing, once: (the generation, True) when this run started it, (it as
    it is, False) when it was cancelled, ended or taken, (None, False) when it has no row.

    A job can be dequeued before its request's commit lands (the job is queued inside the
    request's transaction): then the row is missing for a moment, and the claim is tried
    again, after 0.25 ms at first (about one claim in four misses the row in
    bench/queue_overhead.py; the commit lands well within a millisecond), then less and less
    often; at once when the commit landed between its two statements."""
    deadline = time.monotonic() + _ROW_WAIT_SECONDS
    pause = 0.00025
    while True:
        generation, started = _claim_once(generation_id)
        if started or (generation is not None and generation.status != "pending"):
            return generation, started
        if time.monotonic() > deadline:
            return generation, False
        if generation is None:
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


# The job's own steps are one statement each, sent straight through the driver
# (`database.DirectRead`) on a connection of their own and committed by themselves: each is
# one round trip, without the ORM's per-statement work (~1 ms of CPU each in a work-horse,
# whose caches the image work has just emptied). Each is followed by `_changed`.
_CLAIM = database.DirectRead(
    update(Generation)
    .where(Generation.id == bindparam("generation_id"), Generation.status == "pending")
    .values(
        status="processing",
        stage=_FIRST_STAGE,
        started_at=bindparam("now"),
        deadline_at=bindparam("deadline"),
        attempts=Generation.attempts + 1,
    )
    .returning(*(getattr(Generation, name) for name in _GENERATION_FIELDS))
)


def _claim_once(generation_id: str) -> tuple[Generation | None, bool]:
    """One statement starts the generation and reads it back; when it was not pending, a
    second one reads it as it is."""
    now = utcnow()
    timeout = int(current_app.config["JOB_TIMEOUT_SECONDS"])
    database.commit_open(db.session())
    started = _CLAIM.first(
        db.engine,
        {
            "generation_id": generation_id,
            "now": now,
            "deadline": now + timedelta(seconds=timeout + _DEADLINE_GRACE_SECONDS),
        },
    )
    if started is None:
        return _reload(generation_id), False
    _changed(generation_id)
    values = dict(zip(_GENERATION_FIELDS, started, strict=True))
    return database.attached(db.session(), Generation, values), True


@functools.cache
def _stage_statement(names: tuple[str, ...]) -> database.DirectRead:
    """Save a stage, and with it the columns `names` (parameters "new_<name>")."""
    return database.DirectRead(
        update(Generation)
        .where(Generation.id == bindparam("generation_id"), Generation.status == "processing")
        .values(stage=bindparam("stage"), **{name: bindparam(f"new_{name}") for name in names})
        .returning(Generation.id)
    )


def _stage(generation_id: str, stage: str, **values: Any) -> None:
    """Save and announce the stage; _Ended when the generation is no longer processing."""
    database.commit_open(db.session())
    params = {f"new_{name}": value for name, value in values.items()}
    moved = _stage_statement(tuple(sorted(values))).first(
        db.engine, {"generation_id": generation_id, "stage": stage, **params}
    )
    if moved is None:
        raise _Ended(generation_id)
    _changed(generation_id)


def _changed(generation_id: str) -> None:
    """After a statement outside the session changed the generation: what other processes
    remember of it is dropped (its epoch replaced) and its watchers are told."""
    READS_EPOCH.replace({generation_id}, publish=(channel(generation_id), _PROGRESS))


def _announce(generation_id: str, news: str = _PROGRESS) -> None:
    """Tell the generation's watchers: `_PROGRESS` (a status or stage changed) or `_ENDED`."""
    queue.publish(channel(generation_id), news)


def _load_references(generation: Generation) -> list[Reference]:
    ids = [ref["imageId"] for ref in generation.reference_images or []]
    if not ids:
        return []
    rows = {i.id: i for i in db.session.scalars(select(Image).where(Image.id.in_(ids)))}
    storage = get_storage()
    loaded = []
    for image_id in ids:
        image = rows.get(image_id)
        try:
            if image is None:
                raise FileNotFoundError(image_id)
            loaded.append(Reference(storage.get(image.storage_key), image.mime_type))
        except FileNotFoundError:
            raise _MissingReference(f"Reference image {image_id} no longer exists") from None
    return loaded


def _png_text(generation: Generation, model: str) -> dict[str, str]:
    text = {
        "prompt": generation.prompt,
        "seed": "" if generation.seed is None else str(generation.seed),
        "model": model,
        "generation_id": generation.id,
    }
    if generation.enhanced_prompt:
        text["enhanced_prompt"] = generation.enhanced_prompt
    return text


def _generate(generation: Generation) -> Image:
    provider = get_provider(current_app.config)
    prompt = generation.prompt
    if generation.auto_enhance:
        prompt = provider.enhance(generation.prompt, generation.template or "general")
        _stage(generation.id, "resolving", enhanced_prompt=prompt)
        set_committed_value(generation, "enhanced_prompt", prompt)
    references = _load_references(generation)
    if generation.stage != "generating":  # the claim started it at enhancing or resolving
        _stage(generation.id, "generating")
    started = time.monotonic()
    result = provider.generate(
        prompt=prompt,
        negative_prompt=generation.negative_prompt,
        aspect_ratio=generation.aspect_ratio,
        references=references,
        seed=generation.seed,
        model=generation.model,
    )
    _stage(generation.id, "storing", provider_ms=_ms_since(started))
    return imaging.store(
        generation.project_id,
        imaging.judge_output(result.data, text=_png_text(generation, result.model)),
        source="generated",
        flow_id=generation.flow_id,
        generation_id=generation.id,
    )


def _upscale(generation: Generation) -> Image:
    source = db.session.get(Image, generation.source_image_id or "")
    try:
        if source is None:
            raise FileNotFoundError(generation.source_image_id)
        data = get_storage().get(source.storage_key)
    except FileNotFoundError:
        raise _MissingReference("The image to upscale no longer exists") from None
    _stage(generation.id, "generating")
    started = time.monotonic()
    picture = imaging.decode(data)
    factor = generation.upscale_factor or 2
    resized = picture.resize(
        (picture.width * factor, picture.height * factor), PILImage.Resampling.LANCZOS
    )
    _stage(generation.id, "storing", provider_ms=_ms_since(started))
    encoded = imaging.encode(resized, picture.format, text=_png_text(generation, UPSCALE_MODEL))
    return imaging.store(
        generation.project_id,
        encoded,
        source="generated",
        flow_id=generation.flow_id,
        generation_id=generation.id,
    )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _elapsed_ms(started_at: datetime | None, ended_at: datetime) -> int | None:
    return int((ended_at - started_at).total_seconds() * 1000) if started_at else None


def _give_aliases(generation: Generation, output: Image) -> None:
    """Project alias (moved off the regenerated output) and flow alias go to the output."""
    if generation.alias:
        holder = db.session.scalar(
            select(Image).where(
                Image.project_id == generation.project_id, Image.alias == generation.alias
            )
        )
        moved = holder is not None and holder.generation_id == generation.regenerated_from
        try:
            with db.session.begin_nested():
                if moved:
                    holder.alias = None
                    db.session.flush()
                if holder is None or moved:
                    output.alias = generation.alias
        except IntegrityError:
            holder = output  # taken in the last instant
        if holder is not None and not moved:
            log.warning(
                "alias %s was taken while generation %s ran; its output has none",
                generation.alias,
                generation.id,
            )
    if generation.flow_alias and output.flow_id:  # the flow may have been deleted meanwhile
        aliases.set_flow_alias(output.flow_id, generation.flow_alias, output.id)


def _succeed(generation: Generation, output: Image) -> None:
    now = utcnow()
    _give_aliases(generation, output)
    marked = _mark_success(generation.id, output.id, generation.started_at, now)
    if marked is None:
        # Ended elsewhere (the sweeper thought the worker was lost): this result is dropped.
        db.session.rollback()
        imaging.remove_files(output)
        log.warning("generation %s ended elsewhere; its output was discarded", generation.id)
        return
    if marked.deleted_at is not None:  # deleted while it ran: its output goes with it
        images.hide(output, marked.deleted_at)
    delivery = webhooks.schedule(generation, output)
    db.session.commit()
    _after_end(generation.id, delivery)


def _mark_success(
    generation_id: str, output_id: str, started_at: datetime | None, now: datetime
) -> Generation | None:
    """processing → success: the generation as it is now, read back by the same statement
    (the UPDATE locks the row: a deletion that came first shows in its `deleted_at`, a later
    one sees the output), or None when it was no longer processing."""
    note_changed(generation_id)
    return db.session.scalar(
        update(Generation)
        .where(Generation.id == generation_id, Generation.status == "processing")
        .values(
            status="success",
            stage="done",
            output_image_id=output_id,
            completed_at=now,
            processing_ms=_elapsed_ms(started_at, now),
        )
        .returning(Generation)
        .execution_options(populate_existing=True)
    )


def warm_up() -> None:
    """Run the worker's hot statements once, against no row, and roll back.

    The forking worker calls this before its first job, so every work-horse inherits
    SQLAlchemy's compiled statements instead of compiling them again for each job.
    """
    ghost = new_id()
    _claim_once(ghost)
    for values in ({}, {"provider_ms": 0}, {"enhanced_prompt": ""}):
        with suppress(_Ended):
            _stage(ghost, "storing", **values)
    flows.touch(ghost)
    _mark_success(ghost, ghost, None, utcnow())
    db.session.rollback()


def _after_end(generation_id: str, delivery: WebhookDelivery | None) -> None:
    _announce(generation_id, _ENDED)
    if delivery is not None:
        webhooks.enqueue(delivery.id)


# --- endings ---------------------------------------------------------------------------------


def fail(generation_id: str, code: str, message: str) -> bool:
    """End a live generation as failed and refund it — at most once, whoever calls.

    The one ending used by the worker, RQ's failure callback, the work-horse-killed hook and
    the sweeper. Returns True when this call ended it. A generation already failed or
    cancelled is refunded if it somehow was not; a successful one is never touched.
    """
    generation = db.session.get(Generation, generation_id, populate_existing=True)
    if generation is None:
        return False
    now = utcnow()
    note_changed(generation_id)
    ended = (
        db.session.execute(
            update(Generation)
            .where(Generation.id == generation_id, Generation.status.in_(LIVE_STATUSES))
            .values(
                status="failed",
                error_code=code,
                error_message=message,
                completed_at=now,
                processing_ms=_elapsed_ms(generation.started_at, now),
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    db.session.refresh(generation)
    delivery = webhooks.schedule(generation, None) if ended else None
    if generation.status in ("failed", "cancelled"):
        credits.refund(generation_id, note=f"{code}: {message}"[:500])
    db.session.commit()
    if ended:
        log.info("generation %s failed: %s %s", generation_id, code, message)
        _after_end(generation_id, delivery)
    return ended


def requeue(generation_id: str) -> None:
    """processing → pending, for RQ's retry of a job that raised unexpectedly."""
    note_changed(generation_id)
    db.session.execute(
        update(Generation)
        .where(Generation.id == generation_id, Generation.status == "processing")
        .values(status="pending", stage="queued")
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    _announce(generation_id)


def cancel(project_id: str, generation_id: str) -> Generation:
    """pending → cancelled and refunded; anything else is 409 INVALID_STATE."""
    generation = get_generation(project_id, generation_id)
    note_changed(generation.id)
    cancelled = db.session.execute(
        update(Generation)
        .where(Generation.id == generation.id, Generation.status == "pending")
        .values(status="cancelled", completed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if cancelled != 1:
        db.session.rollback()
        generation = _reload(generation.id) or generation
        raise Conflict(
            f"Only a pending generation can be cancelled; this one is {generation.status}",
            code="INVALID_STATE",
            details={"status": generation.status},
        )
    credits.refund(generation.id, note="Cancelled")
    db.session.commit()
    _drop_job(generation.id)
    _announce(generation.id, _ENDED)
    return _reload(generation.id) or generation


def _drop_job(job_id: str) -> None:
    try:
        job = queue.fetch_job(job_id)
        if job is not None:
            job.cancel()
    except (RedisError, ValueError) as exc:  # the worker skips a cancelled generation anyway
        log.info("could not remove job %s from the queue: %s", job_id, exc)


def delete(project_id: str, generation_id: str) -> None:
    """Soft-delete a generation and its output image (URLs 404, alias freed).

    A pending generation is cancelled (and refunded) first.
    """
    generation = get_generation(project_id, generation_id)
    if generation.status == "pending":
        try:
            generation = cancel(project_id, generation_id)
        except Conflict:
            generation = get_generation(project_id, generation_id)
    now = utcnow()
    generation.deleted_at = now
    # The UPDATE takes the row's lock first: a worker recording its success now either has
    # committed (its output is read below) or waits and reads the deletion back (_succeed).
    db.session.flush()
    output_id = db.session.scalar(
        select(Generation.output_image_id).where(Generation.id == generation.id)
    )
    output = db.session.get(Image, output_id or "")
    if output is not None and output.deleted_at is None:
        images.hide(output, now)
    db.session.commit()


def sweep_stuck(now: datetime | None = None) -> int:
    """Fail (WORKER_LOST) and refund generations whose job or worker is gone. Returns how many.

    Lost: processing past its deadline; processing whose RQ job is not running or whose worker
    stopped sending heartbeats; pending whose job disappeared (queue data lost, enqueue died).
    """
    now = now or utcnow()
    candidates = db.session.execute(
        select(Generation.id, Generation.status, Generation.deadline_at, Generation.job_id)
        .where(
            ((Generation.status == "processing") & (Generation.started_at <= now - _STARTED_GRACE))
            | ((Generation.status == "pending") & (Generation.created_at <= now - _PENDING_GRACE))
        )
        .order_by(Generation.created_at)
        .limit(_SWEEP_BATCH)
    ).all()
    _release()
    lost_after = float(current_app.config["WORKER_LOST_AFTER_SECONDS"])
    ended = 0
    for generation_id, status, deadline_at, job_id in candidates:
        try:
            lost = _is_lost(status, deadline_at, job_id or generation_id, now, lost_after)
        except RedisError as exc:
            log.warning("sweep cannot reach Redis (%s); only deadlines are checked", exc)
            lost = status == "processing" and deadline_at is not None and deadline_at < now
        if lost and fail(generation_id, "WORKER_LOST", WORKER_LOST_MESSAGE):
            ended += 1
    return ended


def _is_lost(
    status: str, deadline_at: datetime | None, job_id: str, now: datetime, lost_after: float
) -> bool:
    if status == "processing" and deadline_at is not None and deadline_at < now:
        return True
    job = queue.fetch_job(job_id)
    if job is None:
        return True
    job_status = job.get_status()
    if status == "pending":
        return job_status in ("failed", "stopped", "canceled", "finished")
    if job_status != "started" or not job.worker_name:
        return True
    silence = queue.worker_heartbeat(job.worker_name)
    return silence is None or silence > lost_after
