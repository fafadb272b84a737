from flask import Blueprint

bp = Blueprint("admin", __name__)


@bp.get("/admin")
def index():
    from flask import abort

    abort(404)
