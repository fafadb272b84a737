"""One serializer per resource: models in, the contract's camelCase dicts out (API.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, has_request_context, request, url_for
from werkzeug.wsgi import get_host

from app.models import (
    ApiKey,
    CreditTransaction,
    Flow,
    Generation,
    Image,
    Project,
    User,
    is_uuid,
    isoformat,
)
from app.models.image import extension_for

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

_HOST_URL_KEY = "pictor.host_url"


def external_url(endpoint: str, **values: Any) -> str:
    """Absolute URL: PUBLIC_BASE_URL when set, else the request's host.

    Outside a request (a worker building a webhook body) without PUBLIC_BASE_URL, the path.
    """
    if has_request_context():
        return url_base(request.environ) + url_for(endpoint, **values)
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return (current_app.config.get("PUBLIC_BASE_URL") or "") + path


# An image's two URLs differ from image to image only by the id: their paths are built once
# per (endpoint, extension, script root) with this stand-in for the id, then filled in (a page
# of images asks for forty, and building one costs more than the rest of serializing it).
_ID_STAND_IN = "00000000-0000-0000-0000-000000000000"
_image_paths: dict[tuple[str, str, str], str] = {}


def image_url(endpoint: str, image_id: str, **values: str) -> str:
    """external_url for a media route of one image."""
    if not has_request_context() or not is_uuid(image_id):
        return external_url(endpoint, image_id=image_id, **values)
    key = (endpoint, values.get("ext", ""), request.script_root)
    path = _image_paths.get(key)
    if path is None:
        path = _image_paths[key] = url_for(endpoint, image_id=_ID_STAND_IN, **values)
    return url_base(request.environ) + path.replace(_ID_STAND_IN, image_id)


def url_base(environ: WSGIEnvironment) -> str:
    """What the absolute URLs of a response to this request start with (before the script
    root): PUBLIC_BASE_URL when set, else the request's scheme and host, worked out once per
    request (a page of images asks for it twice per image, and Werkzeug rebuilds it every
    time). SecurityError for a host outside TRUSTED_HOSTS, as `request.host`."""
    base = current_app.config.get("PUBLIC_BASE_URL")
    if base:
        return base
    host = environ.get(_HOST_URL_KEY)
    if host is None:
        # What `request.host_url` gives, less its IRI decoding (a third of the cost): the
        # host as the client sent it (IDNA), which is what a URL holds anyway.
        name = get_host(environ, current_app.config.get("TRUSTED_HOSTS"))
        host = environ[_HOST_URL_KEY] = f"{environ['wsgi.url_scheme']}://{name}"
    return host


def rendering_of(environ: WSGIEnvironment) -> tuple[str, str]:
    """What a response body with absolute URLs depends on in the request: the URL base and
    the script root."""
    return url_base(environ), environ.get("SCRIPT_NAME", "").rstrip("/")


def image(img: Image) -> dict[str, Any]:
    return {
        "id": img.id,
        "projectId": img.project_id,
        "flowId": img.flow_id,
        "source": img.source,
        "generationId": img.generation_id,
        "alias": img.alias,
        "mimeType": img.mime_type,
        "width": img.width,
        "height": img.height,
        "fileSize": img.file_size,
        "sha256": img.sha256,
        "focalPoint": {"x": img.focal_x, "y": img.focal_y},
        "meta": img.meta or {},
        "url": image_url("media.image_file", img.id, ext=extension_for(img.mime_type)),
        "thumbnailUrl": image_url("media.image_thumbnail", img.id),
        "createdAt": isoformat(img.created_at),
        "deletedAt": isoformat(img.deleted_at),
    }


def generation(gen: Generation, output: Image | None = None) -> dict[str, Any]:
    error = None
    if gen.error_code:
        error = {"code": gen.error_code, "message": gen.error_message or ""}
    return {
        "id": gen.id,
        "projectId": gen.project_id,
        "flowId": gen.flow_id,
        "kind": gen.kind,
        "status": gen.status,
        "stage": gen.stage,
        "prompt": gen.prompt,
        "enhancedPrompt": gen.enhanced_prompt,
        "negativePrompt": gen.negative_prompt,
        "aspectRatio": gen.aspect_ratio,
        "seed": gen.seed,
        "model": gen.model,
        "template": gen.template,
        "autoEnhance": gen.auto_enhance,
        "referenceImages": gen.reference_images or [],
        "alias": gen.alias,
        "flowAlias": gen.flow_alias,
        "outputImageId": gen.output_image_id,
        "outputImage": image(output) if output is not None else None,
        "error": error,
        "creditsCharged": gen.credits_charged,
        "meta": gen.meta or {},
        "requestId": gen.request_id,
        "regeneratedFrom": gen.regenerated_from,
        "createdAt": isoformat(gen.created_at),
        "startedAt": isoformat(gen.started_at),
        "completedAt": isoformat(gen.completed_at),
        "processingMs": gen.processing_ms,
        "deletedAt": isoformat(gen.deleted_at),
    }


def flow(
    fl: Flow, *, generation_count: int, image_count: int, aliases: dict[str, str]
) -> dict[str, Any]:
    return {
        "id": fl.id,
        "projectId": fl.project_id,
        "generationCount": generation_count,
        "imageCount": image_count,
        "aliases": aliases,
        "meta": fl.meta or {},
        "createdAt": isoformat(fl.created_at),
        "updatedAt": isoformat(fl.updated_at),
    }


def project(proj: Project) -> dict[str, Any]:
    return {
        "id": proj.id,
        "name": proj.name,
        "defaultAspectRatio": proj.default_aspect_ratio,
        "defaultModel": proj.default_model,
        "liveSecret": proj.live_secret,
        "liveAllowedOrigins": proj.live_allowed_origins or [],
        "liveDailyLimit": proj.live_daily_limit,
        "webhookSecret": proj.webhook_secret,
        "createdAt": isoformat(proj.created_at),
    }


def api_key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "projectId": key.project_id,
        "prefix": key.prefix,
        "createdAt": isoformat(key.created_at),
        "lastUsedAt": isoformat(key.last_used_at),
        "expiresAt": isoformat(key.expires_at),
        "revokedAt": isoformat(key.revoked_at),
    }


def account(user: User) -> dict[str, Any]:
    from app.services.credits import monthly_allowance

    return {
        "userId": user.id,
        "email": user.email,
        "tier": user.tier,
        "credits": {
            "balance": user.credits_balance,
            "monthly": user.credits_monthly,
            "purchased": user.credits_purchased,
            "monthlyAllowance": monthly_allowance(user.tier),
            "resetsAt": isoformat(user.credits_resets_at),
        },
    }


def transaction(row: CreditTransaction) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "amount": row.amount,
        "balanceAfter": row.balance_after,
        "generationId": row.generation_id,
        "note": row.note,
        "createdAt": isoformat(row.created_at),
    }
