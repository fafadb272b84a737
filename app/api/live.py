"""GET /live (API-key form, raw bytes) and GET /live/sign (API.md §7)."""

from __future__ import annotations

from flask import request

from app import ratelimit
from app.api import bp
from app.api.auth import principal
from app.api.helpers import one, parse_integer
from app.api.serializers import external_url
from app.errors import Invalid
from app.services import live
from app.web.live import image_response


@bp.get("/live")
def live_image():
    caller = principal()
    prompt, ratio = live.clean_request(
        caller.project.default_aspect_ratio,
        request.args.get("prompt"),
        request.args.get("aspectRatio"),
    )
    identity = ratelimit.caller_identity()
    served = live.serve(
        caller.project.id,
        prompt=prompt,
        aspect_ratio=ratio,
        payer=lambda: live.Payer(caller.project, caller.user, caller.api_key),
        admit=lambda: ratelimit.consume(ratelimit.GENERATION_BUDGET, identity),
    )
    return image_response(served)


@bp.get("/live/sign")
def sign_live_url():
    project = principal().project
    prompt = request.args.get("prompt", "")
    ratio = request.args.get("aspectRatio", "")
    live.clean_request(project.default_aspect_ratio, prompt, ratio)
    exp = None
    if request.args.get("exp"):
        seconds = parse_integer(request.args["exp"])
        if seconds is None or seconds < 0:
            raise Invalid("exp must be unix seconds", details={"exp": "must be an integer"})
        exp = str(seconds)  # signed and put in the URL as plain digits
    params = {"prompt": prompt}
    if ratio:
        params["aspectRatio"] = ratio
    if exp is not None:
        params["exp"] = exp
    sig = live.sign(project, prompt, ratio, exp)
    return one({"url": external_url("live.live_image", project_id=project.id, **params, sig=sig)})
