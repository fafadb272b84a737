"""The public live URL: GET /live/<projectId>?prompt=…&aspectRatio=…[&exp=…]&sig=… (API.md §7).

Raw image bytes, no credentials: the HMAC signature is the credential. Nothing is looked up in
the cache, queued or charged before the signature, the expiry and the origin check pass.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, request

from app import ratelimit
from app.services import live
from app.web.media import stored_file

bp = Blueprint("live", __name__)

IMMUTABLE = "public, max-age=31536000, immutable"


def image_response(served: live.Served) -> Response:
    """The image bytes with the cache headers of API.md §7 (used by both live routes)."""
    response = stored_file(served.storage_key, served.mime_type)
    response.headers.update(served_headers(served))
    return response


def served_headers(served: live.Served) -> list[tuple[str, str]]:
    headers = [
        ("Cache-Control", IMMUTABLE),
        ("ETag", f'"{served.sha256}"'),
        ("X-Cache-Status", served.cache_status),
        ("X-Image-Id", served.image_id),
    ]
    if served.cache_status == "HIT":
        headers.append(("X-Cache-Hit-Count", str(served.hit_count)))
    if served.generation_id:
        headers.append(("X-Generation-Id", served.generation_id))
    return headers


def public_request(
    project_id: str, args: Mapping[str, str], headers: Mapping[str, str]
) -> tuple[live.LiveSettings, str, str]:
    """A public live URL's project settings, clean prompt and ratio, once its signature,
    expiry and origin pass (Forbidden or Invalid otherwise)."""
    settings = live.authorize_public(
        project_id,
        prompt=args.get("prompt", ""),
        aspect_ratio=args.get("aspectRatio", ""),
        sig=args.get("sig"),
        exp=args.get("exp") or None,
        origin=headers.get("Origin"),
        referer=headers.get("Referer"),
    )
    prompt, ratio = live.clean_request(
        settings.default_aspect_ratio, args.get("prompt"), args.get("aspectRatio")
    )
    return settings, prompt, ratio


@bp.get("/live/<project_id>")
def live_image(project_id: str):
    settings, prompt, ratio = public_request(project_id, request.args, request.headers)
    served = live.serve(
        settings.project_id,
        prompt=prompt,
        aspect_ratio=ratio,
        payer=lambda: live.owner_pays(settings.project_id),
        admit=lambda: ratelimit.consume(ratelimit.GENERATION_BUDGET, f"project:{project_id}"),
    )
    return image_response(served)
