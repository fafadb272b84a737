from flask import Blueprint

bp = Blueprint("billing", __name__)


@bp.get("/billing")
def index():
    from flask import abort

    abort(404)
