"""Images (API.md §6): upload, list, resolve, read, update, alias, delete, restore."""

from __future__ import annotations

from flask import current_app, request

from app.api import bp, serializers
from app.api.auth import principal
from app.api.helpers import bool_arg, json_body, no_content, one, page, pagination_args
from app.database import read_only
from app.errors import Invalid, TooLarge
from app.services import images


def _form_text(name: str) -> str | None:
    value = request.form.get(name)
    return value if value not in (None, "") else None


@bp.post("/images/upload")
def upload_image():
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise TooLarge("File too large", details={"maxBytes": limit})
    upload = request.files.get("file")
    if upload is None:
        raise Invalid("File is required", details={"file": "required"})
    data = upload.stream.read(limit + 1)
    image = images.upload(
        principal().project_id,
        data,
        alias=_form_text("alias"),
        flow_id=_form_text("flowId"),
        flow_alias=_form_text("flowAlias"),
        meta=images.parse_meta_text(request.form.get("meta")),
    )
    return one(serializers.image(image), 201)


@bp.get("/images")
@read_only
def list_images():
    limit, offset = pagination_args()
    found = images.list_images(
        principal().project_id,
        limit=limit,
        offset=offset,
        flow_id=request.args.get("flowId") or None,
        source=request.args.get("source") or None,
        alias=request.args.get("alias") or None,
        include_deleted=bool_arg("includeDeleted"),
    )
    return page(
        found.items,
        serializers.image,
        total=found.total,
        limit=limit,
        offset=offset,
        has_more=found.has_more,
    )


@bp.get("/images/resolve/<alias>")
@read_only
def resolve_image(alias: str):
    resolved = images.resolve(principal().project_id, alias, request.args.get("flowId") or None)
    return one(
        {
            "image": serializers.image(resolved.image),
            "scope": resolved.scope,
            "flowId": resolved.flow_id,
        }
    )


@bp.get("/images/<image_id>")
@read_only
def get_image(image_id: str):
    image = images.get_image(
        principal().project_id, image_id, include_deleted=bool_arg("includeDeleted")
    )
    return one(serializers.image(image))


@bp.put("/images/<image_id>")
def update_image(image_id: str):
    changes = json_body()
    image = images.get_image(principal().project_id, image_id)
    return one(serializers.image(images.update_image(image, changes)))


@bp.put("/images/<image_id>/alias")
def set_image_alias(image_id: str):
    body = json_body()
    if "alias" not in body:
        raise Invalid("alias is required", details={"alias": "required"})
    image = images.get_image(principal().project_id, image_id)
    return one(serializers.image(images.set_alias(image, body["alias"])))


@bp.delete("/images/<image_id>")
def delete_image(image_id: str):
    hard = bool_arg("hard")
    image = images.get_image(principal().project_id, image_id, include_deleted=hard)
    images.delete_image(image, hard=hard)
    return no_content()


@bp.post("/images/<image_id>/restore")
def restore_image(image_id: str):
    image = images.get_image(principal().project_id, image_id, include_deleted=True)
    return one(serializers.image(images.restore_image(image)))
