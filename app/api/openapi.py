"""The OpenAPI 3.1 description of /api/v1 (API.md is the source; this mirrors it) and /api/docs.

GET /api/v1/openapi.json needs no credentials. /api/docs renders it with the vendored Swagger
UI (static/vendor/swagger-ui-*, its licence beside it); the page's script is a static file so
the strict CSP holds. tests/api/test_openapi.py checks that every /api/v1 route is described.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template

from app.api import bp
from app.api.canvas import IF_MATCH
from app.models import IMAGE_SOURCES, STAGES, STATUSES, TRANSACTION_TYPES
from app.providers.base import ASPECT_RATIOS, TEMPLATES
from app.services import generations
from app.services.aliases import ALIAS_RE, MAX_REFERENCES
from app.services.generations import MAX_KEY_LENGTH, MAX_PROMPT, MAX_SEED
from app.services.projects import MAX_MODEL_ID, MAX_NAME
from app.services.webhooks import MAX_URL_LENGTH

docs_bp = Blueprint("docs", __name__)

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema or "not" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    nullable_schema = {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}
    if "enum" in schema:
        nullable_schema["enum"] = [*schema["enum"], None]
    return nullable_schema


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
UUID = {"type": "string", "format": "uuid"}
TIME = {"type": "string", "format": "date-time"}
FREE_OBJECT = {"type": "object", "additionalProperties": True}
ALIAS_FORMAT = {"type": "string", "pattern": ALIAS_RE.pattern}
ALIAS = {
    **ALIAS_FORMAT,
    "not": {"pattern": "^@([Ll][Aa][Ss][Tt]|[Ff][Ii][Rr][Ss][Tt]|[Uu][Pp][Ll][Oo][Aa][Dd])$"},
    "description": "@last, @first and @upload are reserved.",
    "examples": ["@hero"],
}
# What Python's str.strip and str.split remove (str.isspace), as a character class body. Spelled
# out because `\s` means a different set in each regex engine (ECMA, Python, Rust).
WHITESPACE = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
TEXT = {"type": "string", "pattern": f"[^{WHITESPACE}]", "description": "Not blank."}


def trimmed(max_length: int, *, blank: bool = False) -> Schema:
    """A string of at most `max_length` characters once trimmed, as the services count them;
    not blank unless `blank` (a blank value then counts as absent). No NUL: it is stored in a
    text column, which on PostgreSQL cannot hold one."""
    space, other = f"[{WHITESPACE}]", f"[^{WHITESPACE}\\u0000]"
    core = f"{other}(?:[^\\u0000]{{0,{max_length - 2}}}{other})?"
    if blank:
        core = f"(?:{core})?"
    bounds = f"{'0' if blank else '1'}–{max_length}"
    return {
        "type": "string",
        "pattern": f"^{space}*{core}{space}*$",
        "description": f"{bounds} characters once trimmed (leading and trailing whitespace); "
        "no NUL.",
    }


ASPECT_RATIO = {"type": "string", "enum": list(ASPECT_RATIOS)}
META = {**FREE_OBJECT, "description": "Free JSON, at most 16 KB once encoded."}


def data_of(schema: Schema) -> Schema:
    return obj({"data": schema}, ["data"])


def list_of(schema: Schema) -> Schema:
    return obj(
        {"data": {"type": "array", "items": schema}, "pagination": ref("Pagination")},
        ["data", "pagination"],
    )


SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                    "message": STRING,
                    "details": FREE_OBJECT,
                },
                ["code", "message"],
            )
        },
        ["error"],
    ),
    "Pagination": obj(
        {
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 0, "maximum": 100},
            "offset": {"type": "integer", "minimum": 0},
            "hasMore": BOOLEAN,
        },
        ["total", "limit", "offset", "hasMore"],
    ),
    "FocalPoint": obj(
        {
            "x": {"type": "number", "minimum": 0, "maximum": 1},
            "y": {"type": "number", "minimum": 0, "maximum": 1},
        },
        ["x", "y"],
    ),
    "Image": obj(
        {
            "id": UUID,
            "projectId": UUID,
            "flowId": nullable(UUID),
            "source": {"type": "string", "enum": list(IMAGE_SOURCES)},
            "generationId": nullable(UUID),
            "alias": nullable(STRING),
            "mimeType": {"type": "string", "enum": ["image/png", "image/jpeg", "image/webp"]},
            "width": INTEGER,
            "height": INTEGER,
            "fileSize": INTEGER,
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "focalPoint": ref("FocalPoint"),
            "meta": FREE_OBJECT,
            "url": {"type": "string", "format": "uri"},
            "thumbnailUrl": {"type": "string", "format": "uri"},
            "createdAt": TIME,
            "deletedAt": nullable(TIME),
        },
        [
            "id",
            "projectId",
            "flowId",
            "source",
            "generationId",
            "alias",
            "mimeType",
            "width",
            "height",
            "fileSize",
            "sha256",
            "focalPoint",
            "meta",
            "url",
            "thumbnailUrl",
            "createdAt",
            "deletedAt",
        ],
    ),
    "ImageUpdate": obj(
        {"alias": nullable(ALIAS), "focalPoint": ref("FocalPoint"), "meta": META},
        description="Any of the fields; `alias: null` removes the alias, `meta` replaces.",
    ),
    "AliasUpdate": obj({"alias": nullable(ALIAS)}, ["alias"]),
    "ImageUpload": obj(
        {
            "file": {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "PNG, JPEG or WebP, judged by content; at most MAX_UPLOAD_BYTES.",
            },
            "alias": ALIAS,
            "flowId": UUID,
            "flowAlias": ALIAS,
            "meta": {"type": "string", "description": "JSON text of an object (≤ 16 KB)."},
        },
        ["file"],
    ),
    "Resolved": obj(
        {
            "image": ref("Image"),
            "scope": {"type": "string", "enum": ["technical", "flow", "project"]},
            "flowId": nullable(UUID),
        },
        ["image", "scope", "flowId"],
    ),
    "Flow": obj(
        {
            "id": UUID,
            "projectId": UUID,
            "generationCount": {"type": "integer", "minimum": 0},
            "imageCount": {"type": "integer", "minimum": 0},
            "aliases": {"type": "object", "additionalProperties": UUID},
            "meta": FREE_OBJECT,
            "createdAt": TIME,
            "updatedAt": TIME,
        },
        [
            "id",
            "projectId",
            "generationCount",
            "imageCount",
            "aliases",
            "meta",
            "createdAt",
            "updatedAt",
        ],
    ),
    "FlowCreate": obj({"meta": META}),
    "FlowAliases": obj(
        {
            "aliases": {
                "type": "object",
                "additionalProperties": UUID,
                "propertyNames": ALIAS,
            }
        },
        ["aliases"],
    ),
    "ReferenceImage": obj(
        {
            "imageId": UUID,
            "ref": STRING,
            "scope": {"type": "string", "enum": ["id", "technical", "flow", "project"]},
        },
        ["imageId", "ref", "scope"],
    ),
    "GenerationError": obj({"code": STRING, "message": STRING}, ["code", "message"]),
    "Generation": obj(
        {
            "id": UUID,
            "projectId": UUID,
            "flowId": nullable(UUID),
            "kind": {"type": "string", "enum": ["generate", "upscale"]},
            "status": {"type": "string", "enum": list(STATUSES)},
            "stage": {"type": "string", "enum": list(STAGES)},
            "prompt": STRING,
            "enhancedPrompt": nullable(STRING),
            "negativePrompt": nullable(STRING),
            "aspectRatio": ASPECT_RATIO,
            "seed": nullable(INTEGER),
            "model": STRING,
            "template": nullable(STRING),
            "autoEnhance": BOOLEAN,
            "referenceImages": {"type": "array", "items": ref("ReferenceImage")},
            "alias": nullable(STRING),
            "flowAlias": nullable(STRING),
            "outputImageId": nullable(UUID),
            "outputImage": nullable(ref("Image")),
            "error": nullable(ref("GenerationError")),
            "creditsCharged": INTEGER,
            "meta": FREE_OBJECT,
            "requestId": nullable(STRING),
            "regeneratedFrom": nullable(UUID),
            "createdAt": TIME,
            "startedAt": nullable(TIME),
            "completedAt": nullable(TIME),
            "processingMs": nullable(INTEGER),
            "deletedAt": nullable(TIME),
        },
        [
            "id",
            "projectId",
            "flowId",
            "kind",
            "status",
            "stage",
            "prompt",
            "enhancedPrompt",
            "negativePrompt",
            "aspectRatio",
            "seed",
            "model",
            "template",
            "autoEnhance",
            "referenceImages",
            "alias",
            "flowAlias",
            "outputImageId",
            "outputImage",
            "error",
            "creditsCharged",
            "meta",
            "requestId",
            "regeneratedFrom",
            "createdAt",
            "startedAt",
            "completedAt",
            "processingMs",
            "deletedAt",
        ],
    ),
    "GenerationEvent": obj(
        {
            "event": {"const": "status"},
            "data": {
                "type": "string",
                "contentMediaType": JSON,
                "contentSchema": ref("Generation"),
                "description": "The generation (with its `stage`) as JSON.",
            },
        },
        ["event", "data"],
        description="One server-sent event, as a client's EventSource sees it.",
    ),
    "DryRun": obj(
        {
            "valid": BOOLEAN,
            "creditsCharged": INTEGER,
            "model": STRING,
            "referenceImages": {"type": "array", "items": ref("ReferenceImage")},
        },
        ["valid", "creditsCharged", "model", "referenceImages"],
    ),
    "Upscale": obj({"scale": {"type": "integer", "enum": [2, 4]}}, ["scale"]),
    "Model": obj(
        {
            "id": STRING,
            "provider": STRING,
            "kind": {"type": "string", "enum": ["image"]},
            "credits": INTEGER,
            "tiers": {"type": "array", "items": {"type": "string", "enum": ["free", "pro"]}},
            "aspectRatios": {"type": "array", "items": ASPECT_RATIO},
            "default": BOOLEAN,
        },
        ["id", "provider", "kind", "credits", "tiers", "aspectRatios", "default"],
    ),
    "Project": obj(
        {
            "id": UUID,
            "name": STRING,
            "defaultAspectRatio": ASPECT_RATIO,
            "defaultModel": nullable(STRING),
            "liveSecret": STRING,
            "liveAllowedOrigins": {"type": "array", "items": STRING},
            "liveDailyLimit": nullable({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
            "webhookSecret": STRING,
            "createdAt": TIME,
        },
        [
            "id",
            "name",
            "defaultAspectRatio",
            "defaultModel",
            "liveSecret",
            "liveAllowedOrigins",
            "liveDailyLimit",
            "webhookSecret",
            "createdAt",
        ],
    ),
    "ProjectUpdate": obj(
        {
            "name": trimmed(MAX_NAME),
            "defaultAspectRatio": ASPECT_RATIO,
            "defaultModel": nullable(
                {
                    "type": "string",
                    "pattern": f"^[^\\u0000]*[^{WHITESPACE}\\u0000][^\\u0000]*$",
                    "maxLength": MAX_MODEL_ID,
                    "description": "Not blank, no NUL.",
                }
            ),
            "liveAllowedOrigins": {"type": "array", "items": TEXT},
            "liveDailyLimit": nullable({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
        }
    ),
    "Canvas": obj(
        {
            "state": FREE_OBJECT,
            "version": {"type": "integer", "minimum": 0},
            "updatedAt": nullable(TIME),
        },
        ["state", "version", "updatedAt"],
    ),
    "CanvasUpdate": obj(
        {"state": {**FREE_OBJECT, "description": "At most 1 MB once encoded."}}, ["state"]
    ),
    "Account": obj(
        {
            "userId": UUID,
            "email": {"type": "string", "format": "email"},
            "tier": {"type": "string", "enum": ["free", "pro"]},
            "credits": obj(
                {
                    "balance": INTEGER,
                    "monthly": INTEGER,
                    "purchased": INTEGER,
                    "monthlyAllowance": INTEGER,
                    "resetsAt": nullable(TIME),
                },
                ["balance", "monthly", "purchased", "monthlyAllowance", "resetsAt"],
            ),
        },
        ["userId", "email", "tier", "credits"],
    ),
    "Transaction": obj(
        {
            "id": UUID,
            "type": {"type": "string", "enum": list(TRANSACTION_TYPES)},
            "amount": INTEGER,
            "balanceAfter": INTEGER,
            "generationId": nullable(UUID),
            "note": nullable(STRING),
            "createdAt": TIME,
        },
        ["id", "type", "amount", "balanceAfter", "generationId", "note", "createdAt"],
    ),
    "SignedUrl": obj({"url": {"type": "string", "format": "uri"}}, ["url"]),
}


def generation_create(models: tuple[str, ...]) -> Schema:
    """POST /generations. Optional fields may be null, which counts as absent."""
    return obj(
        {
            "prompt": trimmed(MAX_PROMPT),
            "negativePrompt": nullable(trimmed(MAX_PROMPT, blank=True)),
            "aspectRatio": nullable(ASPECT_RATIO),
            "referenceImages": nullable(
                {
                    "type": "array",
                    "maxItems": MAX_REFERENCES,
                    "items": {"anyOf": [UUID, ALIAS_FORMAT]},
                    "description": "Image ids or aliases (`@hero`, `@last`…).",
                }
            ),
            "flowId": nullable(UUID),
            "alias": nullable(ALIAS),
            "flowAlias": nullable(ALIAS),
            "assignAlias": {**nullable(ALIAS), "deprecated": True},
            "assignFlowAlias": {**nullable(ALIAS), "deprecated": True},
            "autoEnhance": nullable(BOOLEAN),
            "template": nullable({"type": "string", "enum": list(TEMPLATES)}),
            "seed": nullable({"type": "integer", "minimum": 0, "maximum": MAX_SEED}),
            "model": nullable(
                {"type": "string", "enum": list(models), "description": "See GET /models."}
            ),
            "meta": nullable(META),
            "webhookUrl": nullable(
                {
                    "type": "string",
                    "format": "uri",
                    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\u0000-\\u0020\\u007f]*$",
                    "maxLength": MAX_URL_LENGTH,
                    "description": "http(s); private addresses only with WEBHOOK_ALLOW_PRIVATE.",
                }
            ),
            "requestId": nullable(trimmed(MAX_KEY_LENGTH, blank=True)),
            "dryRun": nullable(BOOLEAN),
        },
        ["prompt"],
    )


RATE_HEADERS = {
    "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
    "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
    "X-RateLimit-Reset": {"$ref": "#/components/headers/X-RateLimit-Reset"},
}
ERRORS = {
    400: "Validation error (`VALIDATION_ERROR`, `INVALID_JSON` or a specific code)",
    401: "Missing, invalid, revoked or expired API key (`UNAUTHORIZED`)",
    402: "Not enough credits (`INSUFFICIENT_CREDITS`)",
    403: "Forbidden (`FORBIDDEN`, `TIER_RESTRICTED`)",
    404: "Not found here (`*_NOT_FOUND`); another project's resource is always 404",
    409: "Conflict (`ALIAS_EXISTS`, `IDEMPOTENCY_CONFLICT`, `INVALID_STATE`)",
    410: "The signed URL has expired",
    412: "The canvas changed since it was read (`PRECONDITION_FAILED`)",
    413: "Too large (`FILE_TOO_LARGE`, `PAYLOAD_TOO_LARGE`)",
    415: "Not a PNG, JPEG or WebP image (`UNSUPPORTED_MEDIA_TYPE`)",
    428: "If-Match is required (`PRECONDITION_REQUIRED`)",
    429: "Rate limited (`RATE_LIMITED`); see Retry-After",
    502: "The image provider failed (`PROVIDER_ERROR`)",
    503: "A dependency is down (`SERVICE_UNAVAILABLE`)",
    504: "Timed out waiting (`TIMEOUT`)",
}
COMMON = (400, 401, 404, 429)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def _error(status: int, rate_headers: bool) -> Schema:
    headers: Schema = dict(RATE_HEADERS) if rate_headers else {}
    if status == 429:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    response: Schema = {
        "description": ERRORS[status],
        "content": {JSON: {"schema": ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _ok(description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    response: Schema = {"description": description, "headers": dict(RATE_HEADERS), **extra}
    if schema is not None:
        response["content"] = {JSON: {"schema": schema}}
    return response


def op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[int, Schema],
    *,
    errors: tuple[int, ...] = (),
    params: list[Schema] | None = None,
    body: Schema | None = None,
    body_type: str = JSON,
    security: list[Schema] | None = None,
    description: str | None = None,
    rate_headers: bool = True,
) -> Schema:
    statuses = sorted({*COMMON, *errors} - ({401} if security == [] else set()))
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": {
            **{str(code): response for code, response in responses.items()},
            **{str(code): _error(code, rate_headers) for code in statuses},
        },
    }
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    if security is not None:
        operation["security"] = security
    return operation


def path_param(name: str, schema: Schema = UUID, description: str | None = None) -> Schema:
    param = {"name": name, "in": "path", "required": True, "schema": schema}
    if description:
        param["description"] = description
    return param


def query(name: str, schema: Schema, description: str | None = None) -> Schema:
    """An optional query parameter; sent empty, it counts as absent."""
    param = {
        "name": name,
        "in": "query",
        "required": False,
        "allowEmptyValue": True,
        "schema": schema,
    }
    if description:
        param["description"] = description
    return param


PAGE = [
    query(
        "limit",
        {"type": "integer", "minimum": 0, "default": 20},
        "Page size; values above 100 are clamped to 100.",
    ),
    query("offset", {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0}),
]
INCLUDE_DELETED = query("includeDeleted", {"type": "boolean", "default": False})
IMAGE_ID = path_param("imageId")
FLOW_ID = path_param("flowId")
GENERATION_ID = path_param("generationId")
IMAGE_BYTES = {
    kind: {"schema": {"type": "string", "contentMediaType": kind}} for kind in IMAGE_TYPES
}
LIVE_HEADERS = {
    "X-Cache-Status": {"schema": {"type": "string", "enum": ["HIT", "MISS"]}, "required": True},
    "X-Image-Id": {"schema": UUID, "required": True},
    "X-Generation-Id": {"schema": UUID, "description": "On a MISS."},
    "X-Cache-Hit-Count": {"schema": INTEGER, "description": "On a HIT."},
    "ETag": {"schema": STRING, "required": True},
    "Cache-Control": {"schema": STRING, "required": True},
}
LIVE_PARAMS = [
    {"name": "prompt", "in": "query", "required": True, "schema": trimmed(MAX_PROMPT)},
    query("aspectRatio", ASPECT_RATIO, "Default: the project's default ratio."),
]
GENERATION_ACCEPTED = _ok(
    "Accepted: the generation is queued",
    data_of(ref("Generation")),
    headers={**RATE_HEADERS, "Location": {"schema": STRING}},
)


def _paths() -> dict[str, Schema]:
    image = data_of(ref("Image"))
    flow = data_of(ref("Flow"))
    generation = data_of(ref("Generation"))
    return {
        "/api/v1/openapi.json": {
            "get": op(
                "openapi_document",
                "This document",
                "Meta",
                {200: {"description": "OpenAPI 3.1", "content": {JSON: {"schema": FREE_OBJECT}}}},
                security=[],
            )
        },
        "/api/v1/generations": {
            "get": op(
                "list_generations",
                "List generations, newest first",
                "Generations",
                {200: _ok("A page of generations", list_of(ref("Generation")))},
                params=[
                    query("flowId", UUID),
                    query("status", {"type": "string", "enum": list(STATUSES)}),
                    query("q", STRING, "Words that must all appear in the prompt."),
                    *PAGE,
                    INCLUDE_DELETED,
                ],
            ),
            "post": op(
                "create_generation",
                "Generate an image",
                "Generations",
                {
                    202: GENERATION_ACCEPTED,
                    201: _ok("Finished while waiting (`Prefer: wait=N`)", generation),
                    200: _ok(
                        "A replay of an Idempotency-Key, or the result of `dryRun`",
                        data_of({"anyOf": [ref("Generation"), ref("DryRun")]}),
                    ),
                },
                errors=(402, 403, 409, 503),
                body=ref("GenerationCreate"),
                params=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
                    },
                    {
                        "name": "Prefer",
                        "in": "header",
                        "required": False,
                        "description": (
                            "`wait=N`: hold the answer up to N seconds (1–60, more counts as 60). "
                            "Preferences the server does not know are ignored (RFC 7240)."
                        ),
                        "schema": {
                            "anyOf": [
                                {"type": "string", "pattern": "^wait=([1-9]|[1-5][0-9]|60)$"},
                                STRING,
                            ]
                        },
                    },
                ],
                description="Charged when accepted; counts against RATELIMIT_GENERATIONS.",
            ),
        },
        "/api/v1/generations/{generationId}": {
            "get": op(
                "get_generation",
                "One generation with its output and references",
                "Generations",
                {200: _ok("The generation", generation)},
                params=[GENERATION_ID, INCLUDE_DELETED],
            ),
            "delete": op(
                "delete_generation",
                "Soft-delete a generation and its output image",
                "Generations",
                {204: _ok("Deleted")},
                params=[GENERATION_ID],
            ),
        },
        "/api/v1/generations/{generationId}/events": {
            "get": op(
                "generation_events",
                "Server-sent status events until the generation ends",
                "Generations",
                {
                    200: {
                        "description": "`status` events; data = the generation plus `stage`",
                        "headers": dict(RATE_HEADERS),
                        "content": {"text/event-stream": {"schema": ref("GenerationEvent")}},
                    }
                },
                params=[GENERATION_ID],
            )
        },
        "/api/v1/generations/{generationId}/regenerate": {
            "post": op(
                "regenerate_generation",
                "Run the same request again as a new generation",
                "Generations",
                {202: GENERATION_ACCEPTED},
                errors=(402, 403, 409, 503),
                params=[GENERATION_ID],
            )
        },
        "/api/v1/generations/{generationId}/retry": {
            "post": op(
                "retry_generation",
                "Alias of regenerate",
                "Generations",
                {202: GENERATION_ACCEPTED},
                errors=(402, 403, 409, 503),
                params=[GENERATION_ID],
            )
        },
        "/api/v1/generations/{generationId}/cancel": {
            "post": op(
                "cancel_generation",
                "Cancel a pending generation (refunded)",
                "Generations",
                {200: _ok("Cancelled", generation)},
                errors=(409,),
                params=[GENERATION_ID],
            )
        },
        "/api/v1/models": {
            "get": op(
                "list_models",
                "Models this deployment offers",
                "Generations",
                {
                    200: _ok(
                        "The models",
                        obj({"data": {"type": "array", "items": ref("Model")}}, ["data"]),
                    )
                },
            )
        },
        "/api/v1/flows": {
            "get": op(
                "list_flows",
                "List flows, newest first",
                "Flows",
                {200: _ok("A page of flows", list_of(ref("Flow")))},
                params=PAGE,
            ),
            "post": op(
                "create_flow",
                "Create a flow",
                "Flows",
                {201: _ok("Created", flow)},
                body=ref("FlowCreate"),
            ),
        },
        "/api/v1/flows/{flowId}": {
            "get": op(
                "get_flow", "One flow", "Flows", {200: _ok("The flow", flow)}, params=[FLOW_ID]
            ),
            "delete": op(
                "delete_flow",
                "Delete a flow (its generations and images stay, with flowId null)",
                "Flows",
                {204: _ok("Deleted")},
                params=[FLOW_ID],
            ),
        },
        "/api/v1/flows/{flowId}/generations": {
            "get": op(
                "list_flow_generations",
                "The flow's generations, oldest first",
                "Flows",
                {200: _ok("A page of generations", list_of(ref("Generation")))},
                params=[FLOW_ID, *PAGE],
            )
        },
        "/api/v1/flows/{flowId}/images": {
            "get": op(
                "list_flow_images",
                "The flow's images, oldest first",
                "Flows",
                {200: _ok("A page of images", list_of(ref("Image")))},
                params=[FLOW_ID, *PAGE],
            )
        },
        "/api/v1/flows/{flowId}/aliases": {
            "put": op(
                "merge_flow_aliases",
                "Add or repoint flow aliases",
                "Flows",
                {200: _ok("The flow", flow)},
                body=ref("FlowAliases"),
                params=[FLOW_ID],
            )
        },
        "/api/v1/flows/{flowId}/aliases/{alias}": {
            "delete": op(
                "delete_flow_alias",
                "Remove one flow alias",
                "Flows",
                {204: _ok("Removed")},
                params=[FLOW_ID, path_param("alias", ALIAS)],
            )
        },
        "/api/v1/flows/{flowId}/download": {
            "get": op(
                "download_flow",
                "ZIP of the flow's images, named NNN-<alias or id>.<ext>",
                "Flows",
                {
                    200: {
                        "description": "A streamed ZIP archive",
                        "headers": dict(RATE_HEADERS),
                        "content": {
                            "application/zip": {
                                "schema": {"type": "string", "contentMediaType": "application/zip"}
                            }
                        },
                    }
                },
                params=[FLOW_ID],
            )
        },
        "/api/v1/images": {
            "get": op(
                "list_images",
                "List images, newest first",
                "Images",
                {200: _ok("A page of images", list_of(ref("Image")))},
                params=[
                    query("flowId", UUID),
                    query("source", {"type": "string", "enum": list(IMAGE_SOURCES)}),
                    query("alias", ALIAS),
                    *PAGE,
                    INCLUDE_DELETED,
                ],
                description="`total` is exact up to 10,000 matches and an estimate above.",
            )
        },
        "/api/v1/images/upload": {
            "post": op(
                "upload_image",
                "Upload an image (multipart)",
                "Images",
                {201: _ok("Stored", image)},
                errors=(409, 413, 415),
                body=ref("ImageUpload"),
                body_type="multipart/form-data",
            )
        },
        "/api/v1/images/resolve/{alias}": {
            "get": op(
                "resolve_image",
                "Resolve an alias (technical, then flow, then project)",
                "Images",
                {200: _ok("The image and where the alias was found", data_of(ref("Resolved")))},
                params=[
                    path_param("alias", ALIAS_FORMAT),
                    query("flowId", UUID),
                ],
            )
        },
        "/api/v1/images/{imageId}": {
            "get": op(
                "get_image",
                "One image",
                "Images",
                {200: _ok("The image", image)},
                params=[IMAGE_ID, INCLUDE_DELETED],
            ),
            "put": op(
                "update_image",
                "Change alias, focal point or meta",
                "Images",
                {200: _ok("The image", image)},
                errors=(409,),
                body=ref("ImageUpdate"),
                params=[IMAGE_ID],
            ),
            "delete": op(
                "delete_image",
                "Soft delete (or `hard=true`: records and files now)",
                "Images",
                {204: _ok("Deleted")},
                params=[IMAGE_ID, query("hard", {"type": "boolean", "default": False})],
            ),
        },
        "/api/v1/images/{imageId}/alias": {
            "put": op(
                "set_image_alias",
                "Set or remove the project alias",
                "Images",
                {200: _ok("The image", image)},
                errors=(409,),
                body=ref("AliasUpdate"),
                params=[IMAGE_ID],
            )
        },
        "/api/v1/images/{imageId}/upscale": {
            "post": op(
                "upscale_image",
                "Upscale ×2 or ×4 as a queued job",
                "Images",
                {202: GENERATION_ACCEPTED},
                errors=(402, 503),
                body=ref("Upscale"),
                description="400 too when the result would exceed 4096 px a side.",
                params=[IMAGE_ID],
            )
        },
        "/api/v1/images/{imageId}/restore": {
            "post": op(
                "restore_image",
                "Undo a soft delete within the retention window",
                "Images",
                {200: _ok("The image", image)},
                errors=(409,),
                params=[IMAGE_ID],
            )
        },
        "/api/v1/live": {
            "get": op(
                "live_image",
                "Image bytes for a prompt: cached (HIT, free) or generated (MISS, charged)",
                "Live",
                {
                    200: {
                        "description": "The image",
                        "headers": {**RATE_HEADERS, **LIVE_HEADERS},
                        "content": IMAGE_BYTES,
                    }
                },
                errors=(402, 403, 502, 504),
                params=LIVE_PARAMS,
            )
        },
        "/api/v1/live/sign": {
            "get": op(
                "sign_live_url",
                "A signed public live URL",
                "Live",
                {200: _ok("The URL", data_of(ref("SignedUrl")))},
                params=[
                    *LIVE_PARAMS,
                    query(
                        "exp",
                        {"type": "integer", "minimum": 0},
                        "Unix seconds after which the URL answers 410.",
                    ),
                ],
            )
        },
        "/live/{projectId}": {
            "get": op(
                "public_live_image",
                "Public live image, authorised by an HMAC signature instead of a key",
                "Live",
                {
                    200: {
                        "description": "The image",
                        "headers": LIVE_HEADERS,
                        "content": IMAGE_BYTES,
                    }
                },
                errors=(402, 403, 410, 502, 504),
                params=[
                    path_param("projectId"),
                    *LIVE_PARAMS,
                    query("exp", {"type": "integer", "minimum": 0}),
                    query("sig", STRING, "base64url HMAC-SHA256, see API.md §7."),
                ],
                security=[],
                rate_headers=False,
            )
        },
        "/api/v1/project": {
            "get": op(
                "get_project",
                "The key's project",
                "Project",
                {200: _ok("The project", data_of(ref("Project")))},
            ),
            "patch": op(
                "update_project",
                "Change project settings",
                "Project",
                {200: _ok("The project", data_of(ref("Project")))},
                body=ref("ProjectUpdate"),
            ),
        },
        "/api/v1/project/live-secret": {
            "post": op(
                "rotate_live_secret",
                "Rotate the live secret (old one valid 24 h)",
                "Project",
                {200: _ok("The project", data_of(ref("Project")))},
            )
        },
        "/api/v1/project/webhook-secret": {
            "post": op(
                "rotate_webhook_secret",
                "Rotate the webhook secret",
                "Project",
                {200: _ok("The project", data_of(ref("Project")))},
            )
        },
        "/api/v1/canvas": {
            "get": op(
                "get_canvas",
                "The canvas state and its version (ETag)",
                "Canvas",
                {
                    200: _ok(
                        "The canvas",
                        data_of(ref("Canvas")),
                        headers={**RATE_HEADERS, "ETag": {"schema": STRING, "required": True}},
                    )
                },
            ),
            "put": op(
                "put_canvas",
                "Replace the canvas state if it is still at the If-Match version",
                "Canvas",
                {
                    200: _ok(
                        "The new canvas",
                        data_of(ref("Canvas")),
                        headers={**RATE_HEADERS, "ETag": {"schema": STRING, "required": True}},
                    )
                },
                errors=(412, 413, 428),
                body=ref("CanvasUpdate"),
                params=[
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^(" + IF_MATCH.pattern + ")$"},
                        "example": '"7"',
                    }
                ],
            ),
        },
        "/api/v1/account": {
            "get": op(
                "get_account",
                "The owner's account and credits",
                "Account",
                {200: _ok("The account", data_of(ref("Account")))},
            )
        },
        "/api/v1/credits/transactions": {
            "get": op(
                "list_transactions",
                "The credit ledger, newest first",
                "Account",
                {200: _ok("A page of transactions", list_of(ref("Transaction")))},
                params=[query("type", {"type": "string", "enum": list(TRANSACTION_TYPES)}), *PAGE],
            )
        },
    }


@cache
def _document(version: str, models: tuple[str, ...]) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Pictor API",
            "version": version,
            "description": (
                "The Pictor JSON API. Errors always come back as "
                '`{"error": {"code", "message", "details"}}`. Every /api/v1 response carries '
                "X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
        "tags": [
            {"name": name}
            for name in (
                "Generations",
                "Flows",
                "Images",
                "Live",
                "Project",
                "Canvas",
                "Account",
                "Meta",
            )
        ],
        "paths": _paths(),
        "components": {
            "schemas": {**SCHEMAS, "GenerationCreate": generation_create(models)},
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "BearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The same API key as a bearer token.",
                },
            },
            "headers": {
                "X-RateLimit-Limit": {
                    "required": True,
                    "schema": INTEGER,
                    "description": "Requests allowed in the window",
                },
                "X-RateLimit-Remaining": {
                    "required": True,
                    "schema": INTEGER,
                    "description": "Requests left in the window",
                },
                "X-RateLimit-Reset": {
                    "required": True,
                    "schema": INTEGER,
                    "description": "Seconds until the window resets",
                },
                "Retry-After": {
                    "required": True,
                    "schema": INTEGER,
                    "description": "Seconds to wait before retrying",
                },
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    offered = tuple(info.id for info in generations.models())
    response = jsonify(_document(current_app.config["VERSION"], offered))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@docs_bp.get("/api/docs")
def api_docs():
    return render_template("api_docs.html")
