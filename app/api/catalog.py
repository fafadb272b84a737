"""GET /models (API.md §4): the models this deployment offers."""

from __future__ import annotations

from typing import Any

from app.api import bp
from app.api.helpers import page
from app.providers import ASPECT_RATIOS, ModelInfo
from app.services import generations


def _model(info: ModelInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "provider": info.provider,
        "kind": "image",
        "credits": info.credits,
        "tiers": list(info.tiers),
        "aspectRatios": list(ASPECT_RATIOS),
        "default": info.default,
    }


@bp.get("/models")
def list_models():
    offered = generations.models()
    return page(offered, _model, total=len(offered), limit=len(offered), offset=0)
