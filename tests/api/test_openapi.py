"""/api/v1/openapi.json describes every /api/v1 route; /api/docs renders it from vendored files."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from werkzeug.serving import make_server

from app.api.openapi import WHITESPACE, trimmed
from app.services import generations

ROOT = Path(__file__).resolve().parents[2]
SWAGGER = ROOT / "static" / "vendor" / "swagger-ui-5.35.0"
IGNORED_METHODS = {"HEAD", "OPTIONS"}


def _shape(path: str) -> str:
    """A path with its parameter names erased: `/a/<x>/b` and `/a/{y}/b` → `/a/{}/b`."""
    return re.sub(r"<(?:[^:<>]+:)?[^<>]+>|\{[^{}]+\}", "{}", path)


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_document_is_public_and_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_api_route_is_described_with_its_methods(app, document):
    described = {
        (_shape(path), method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    routes = {
        (_shape(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - IGNORED_METHODS
    }
    assert routes, "no /api/v1 routes found"
    assert routes - described == set()


def test_the_engine_routes_of_the_contract_are_described_too(document):
    shapes = {_shape(path) for path in document["paths"]}
    for path in (
        "/api/v1/generations",
        "/api/v1/generations/{}",
        "/api/v1/generations/{}/events",
        "/api/v1/generations/{}/regenerate",
        "/api/v1/generations/{}/retry",
        "/api/v1/generations/{}/cancel",
        "/api/v1/images/{}/upscale",
        "/api/v1/models",
    ):
        assert path in shapes, path


def test_security_schemes_and_the_error_envelope(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (path, method)
            if path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
                assert "401" in operation["responses"], (path, method)
                assert "429" in operation["responses"], (path, method)


def test_every_operation_has_a_request_schema_when_it_takes_a_body(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method in ("put", "patch") or operation["operationId"] in (
                "create_generation",
                "create_flow",
                "upload_image",
                "upscale_image",
            ):
                content = operation["requestBody"]["content"]
                assert all("schema" in media for media in content.values()), (path, method)


def test_docs_page_uses_only_vendored_assets_and_no_inline_script(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all('src="' in attrs for attrs in scripts)
    assert "/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js" in html
    assert "/static/js/api-docs.js" in html
    assert not re.search(r'(src|href)="https?://', html)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"):
        assert (SWAGGER / name).is_file(), name
    assert "Apache License" in (SWAGGER / "LICENSE").read_text()


@pytest.mark.e2e
def test_docs_render_in_a_browser_under_the_strict_csp(app, backend, document):
    if backend != "sqlite":
        pytest.skip("one browser run is enough")
    playwright = pytest.importorskip("playwright.sync_api")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    problems: list[str] = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page()
            page.on(
                "console",
                lambda msg: (
                    problems.append(msg.text)
                    if msg.type == "error" and "Content Security Policy" in msg.text
                    else None
                ),
            )
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(f"http://127.0.0.1:{server.server_port}/api/docs")
            page.get_by_text("/api/v1/images/upload").first.wait_for(timeout=20_000)
            operations = sum(len(methods) for methods in document["paths"].values())
            assert page.locator(".opblock").count() == operations
            browser.close()
    finally:
        server.shutdown()
    assert problems == []


def test_whitespace_class_is_what_python_trims():
    space = re.compile(f"[{WHITESPACE}]")
    assert all(bool(space.fullmatch(chr(c))) == chr(c).isspace() for c in range(sys.maxunicode + 1))


@pytest.mark.parametrize(
    "text",
    [
        "a",
        " a ",
        "x" * 4000,
        "\x85" + "x" * 4000 + "\u3000",
        "",
        "   ",
        "x" * 4001,
        " x" * 2001,
        "a\x00b",
        "\x00",
    ],
)
def test_trimmed_text_pattern_counts_like_the_services(text):
    pattern = re.compile(trimmed(4000)["pattern"])
    blank_ok = re.compile(trimmed(4000, blank=True)["pattern"])
    length = len(text.strip())
    assert bool(pattern.search(text)) == (1 <= length <= 4000 and "\x00" not in text)
    assert bool(blank_ok.search(text)) == (length <= 4000 and "\x00" not in text)


def test_the_model_enum_is_what_this_deployment_offers(app, document):
    body = document["paths"]["/api/v1/generations"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GenerationCreate"
    }
    model = document["components"]["schemas"]["GenerationCreate"]["properties"]["model"]
    offered = [info.id for info in generations.models()]
    assert model["type"] == ["string", "null"] and model["enum"] == [*offered, None]
