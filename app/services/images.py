"""Images of a project: lookup with ownership. (Upload, listing and lifecycle build on this.)"""

from __future__ import annotations

from app.errors import not_found
from app.extensions import db
from app.models import Image, is_uuid


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
