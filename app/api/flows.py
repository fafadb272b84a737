"""Flows (API.md §5): list, create, read, their generations and images, aliases, ZIP."""

from __future__ import annotations

from flask import Response, request

from app.api import bp, serializers
from app.api.auth import principal
from app.api.helpers import json_body, no_content, one, page, pagination_args
from app.database import read_only
from app.models import Flow
from app.services import flows


def _serialize(flow: Flow, summary: flows.Summary) -> dict:
    return serializers.flow(
        flow,
        generation_count=summary.generation_count,
        image_count=summary.image_count,
        aliases=summary.aliases,
    )


def _one_flow(flow: Flow, status: int = 200) -> Response:
    return one(_serialize(flow, flows.summaries([flow])[flow.id]), status)


def _flow(flow_id: str) -> Flow:
    return flows.get_flow(principal().project_id, flow_id)


@bp.get("/flows")
@read_only
def list_flows():
    limit, offset = pagination_args()
    found = flows.list_flows(principal().project_id, limit=limit, offset=offset)
    summary = flows.summaries(found.items)
    return page(
        found.items,
        lambda flow: _serialize(flow, summary[flow.id]),
        total=found.total,
        limit=limit,
        offset=offset,
        has_more=found.has_more,
    )


@bp.post("/flows")
def create_flow():
    body = json_body() if request.get_data() else {}
    flow = flows.create_flow(principal().project_id, flows.validate_meta(body.get("meta", {})))
    return _one_flow(flow, 201)


@bp.get("/flows/<flow_id>")
@read_only
def get_flow(flow_id: str):
    return _one_flow(_flow(flow_id))


@bp.get("/flows/<flow_id>/generations")
@read_only
def list_flow_generations(flow_id: str):
    limit, offset = pagination_args()
    found, outputs = flows.flow_generations(_flow(flow_id), limit=limit, offset=offset)
    return page(
        found.items,
        lambda gen: serializers.generation(gen, outputs.get(gen.output_image_id or "")),
        total=found.total,
        limit=limit,
        offset=offset,
        has_more=found.has_more,
    )


@bp.get("/flows/<flow_id>/images")
@read_only
def list_flow_images(flow_id: str):
    limit, offset = pagination_args()
    found = flows.flow_images(_flow(flow_id), limit=limit, offset=offset)
    return page(
        found.items,
        serializers.image,
        total=found.total,
        limit=limit,
        offset=offset,
        has_more=found.has_more,
    )


@bp.put("/flows/<flow_id>/aliases")
def merge_flow_aliases(flow_id: str):
    body = json_body()
    flow = _flow(flow_id)
    flows.merge_aliases(principal().project_id, flow, body.get("aliases"))
    return _one_flow(flow)


@bp.delete("/flows/<flow_id>/aliases/<alias>")
def delete_flow_alias(flow_id: str, alias: str):
    flows.remove_alias(_flow(flow_id), alias)
    return no_content()


@bp.delete("/flows/<flow_id>")
def delete_flow(flow_id: str):
    flows.delete_flow(_flow(flow_id))
    return no_content()


@bp.get("/flows/<flow_id>/download")
def download_flow(flow_id: str):
    flow = _flow(flow_id)
    return Response(
        flows.archive(flow),
        mimetype="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="flow-{flow.id}.zip"',
            "Cache-Control": "no-store",
        },
    )
