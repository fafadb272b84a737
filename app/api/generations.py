"""Generations (API.md §4), and image upscales, which run as generations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Response, request, stream_with_context, url_for

from app import ratelimit
from app.api import bp, serializers
from app.api.auth import principal
from app.api.helpers import bool_arg, json_body, no_content, one, page, pagination_args
from app.database import read_only
from app.errors import Invalid
from app.models import Generation
from app.services import generations

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

MAX_WAIT_SECONDS = 60


def _serialize(generation: Generation) -> dict[str, Any]:
    output = generations.output_images([generation]).get(generation.id)
    return serializers.generation(generation, output)


def _prefer_wait() -> int | None:
    """Seconds from `Prefer: wait=N` (clamped to 60), or None when absent or unusable."""
    for preference in request.headers.get("Prefer", "").replace(";", ",").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = int(value.strip().strip('"'))
        except ValueError:
            return None
        return min(seconds, MAX_WAIT_SECONDS) if seconds >= 1 else None
    return None


def _accepted(generation: Generation) -> Response:
    """202 with Location; with `Prefer: wait=N`, 201 when it finished within N seconds."""
    headers = {"Location": url_for("api.get_generation", generation_id=generation.id)}
    wait = _prefer_wait()
    if wait is not None:
        generation = generations.wait(generation.id, wait)
        headers["Preference-Applied"] = f"wait={wait}"
        if generation.is_terminal:
            return one(_serialize(generation), 201, headers)
    return one(_serialize(generation), 202, headers)


@bp.post("/generations")
def create_generation():
    body = json_body()
    who = principal()
    dry_run = body.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise Invalid("dryRun must be true or false", details={"dryRun": "must be a boolean"})
    key = request.headers.get("Idempotency-Key")
    if dry_run:
        return one(generations.price(who.project, who.user, body, idempotency_key=key))
    generation, created = generations.create(
        who.project, who.user, body, api_key=who.api_key, idempotency_key=key
    )
    if not created:
        location = url_for("api.get_generation", generation_id=generation.id)
        headers = {"Location": location, "Idempotent-Replayed": "true"}
        return one(_serialize(generation), 200, headers)
    return _accepted(generation)


@bp.get("/generations")
@read_only
def list_generations():
    limit, offset = pagination_args()
    rows, total = generations.list_generations(
        principal().project_id,
        flow_id=request.args.get("flowId") or None,
        status=request.args.get("status") or None,
        q=request.args.get("q"),
        include_deleted=bool_arg("includeDeleted"),
        limit=limit,
        offset=offset,
    )
    outputs = generations.output_images(rows)
    return page(
        rows,
        lambda g: serializers.generation(g, outputs.get(g.id)),
        total=total,
        limit=limit,
        offset=offset,
    )


@bp.get("/generations/<generation_id>")
@read_only
def get_generation(generation_id: str):
    found = generations.read(
        principal().project_id,
        generation_id,
        include_deleted=bool_arg("includeDeleted"),
        epoch=ratelimit.epoch_read(),
    )
    return Response(generation_body(found, request.environ), mimetype="application/json")


# URL bases a remembered read keeps a body for: a client that varies the Host header grows
# no memory past this.
BODIES_PER_READ = 4


def generation_body(found: generations.Read, environ: WSGIEnvironment) -> bytes:
    """The response body of a generation, made once per URL base while its read is remembered
    (app.fastpath answers a poll with it without a Flask request)."""
    body = kept_body(found, environ)
    if body is None:
        body = one(serializers.generation(found.generation, found.output)).get_data()
        if len(found.rendered) < BODIES_PER_READ:
            found.rendered[serializers.rendering_of(environ)] = body
    return body


def kept_body(found: generations.Read, environ: WSGIEnvironment) -> bytes | None:
    """The body made for this request's URL base, if the read keeps one."""
    return found.rendered.get(serializers.rendering_of(environ))


# A poll reads the generation's epoch in its rate-limit count (services/generations.py).
ratelimit.read_epoch_with_count(
    "api.get_generation", lambda args: generations.read_epoch_key(args.get("generation_id"))
)


@bp.get("/generations/<generation_id>/events")
def generation_events(generation_id: str):
    """Server-sent events: one `status` event per change, closed after the ending."""
    generation_id = generations.get_generation(principal().project_id, generation_id).id

    def stream() -> Iterator[str]:
        for generation in generations.watch(generation_id):
            if generation is None:
                yield ": keepalive\n\n"
                continue
            yield f"event: status\ndata: {json.dumps(_serialize(generation))}\n\n"

    return Response(
        stream_with_context(stream()),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/generations/<generation_id>/regenerate")
def regenerate_generation(generation_id: str):
    who = principal()
    return _accepted(
        generations.regenerate(who.project, who.user, generation_id, api_key=who.api_key)
    )


@bp.post("/generations/<generation_id>/retry")
def retry_generation(generation_id: str):
    who = principal()
    return _accepted(
        generations.regenerate(who.project, who.user, generation_id, api_key=who.api_key)
    )


@bp.post("/generations/<generation_id>/cancel")
def cancel_generation(generation_id: str):
    return one(_serialize(generations.cancel(principal().project_id, generation_id)))


@bp.delete("/generations/<generation_id>")
def delete_generation(generation_id: str):
    generations.delete(principal().project_id, generation_id)
    return no_content()


@bp.post("/images/<image_id>/upscale")
def upscale_image(image_id: str):
    who = principal()
    scale = json_body().get("scale")
    return _accepted(
        generations.create_upscale(who.project, who.user, image_id, scale, api_key=who.api_key)
    )
