from flask import Blueprint

bp = Blueprint("media", __name__)


@bp.get("/i/<image_id>.<ext>")
def image_file(image_id: str, ext: str):
    from flask import abort

    abort(404)


@bp.get("/i/<image_id>/thumb.webp")
def image_thumbnail(image_id: str):
    from flask import abort

    abort(404)
