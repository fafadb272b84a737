"""GET/PATCH /project and secret rotation (API.md §8)."""

from app.api import bp, serializers
from app.api.auth import principal
from app.api.helpers import json_body, one
from app.database import read_only
from app.services import projects


@bp.get("/project")
@read_only
def get_project():
    return one(serializers.project(principal().project))


@bp.patch("/project")
def update_project():
    project = projects.update_settings(principal().project, json_body())
    return one(serializers.project(project))


@bp.post("/project/live-secret")
def rotate_live_secret():
    return one(serializers.project(projects.rotate_live_secret(principal().project)))


@bp.post("/project/webhook-secret")
def rotate_webhook_secret():
    return one(serializers.project(projects.rotate_webhook_secret(principal().project)))
