"""Regenerate the studio screenshots in docs/screens/ (1280×800, light and dark canvas).

    python scripts/screens.py [--out docs/screens] [--chromium /usr/bin/chromium]

Runs Pictor on a throwaway SQLite database and storage directory (local image provider, the
embedded queue), fills a demo project through the real services — generations chained in
flows, uploads with aliases, one failed generation — signs in with Playwright and photographs
every studio page. PNGs are reduced to a 256-colour palette so they stay small in git.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image as PILImage
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app, queue  # noqa: E402
from app.extensions import db  # noqa: E402
from app.services import accounts, flows, generations, images, projects  # noqa: E402

EMAIL = "screens@example.com"
PASSWORD = "screenshots only"  # noqa: S105
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def make_app(workdir: Path):
    app = create_app(
        {
            "SECRET_KEY": "screenshots",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'screens.db'}",
            "STORAGE_BACKEND": "local",
            "STORAGE_DIR": str(workdir / "storage"),
            "INSTANCE_DIR": str(workdir / "instance"),
            "REDIS_URL": None,
            "IMAGE_PROVIDER": "local",
            "GEMINI_API_KEY": None,
            "LOCAL_PROVIDER_DELAY_MS": 0,
            "PUBLIC_BASE_URL": None,
        }
    )
    with app.app_context():
        db.create_all()
    return app


def swatch(color: tuple[int, int, int], size: tuple[int, int] = (768, 768)) -> bytes:
    """A soft two-tone picture standing in for a photo someone uploads."""
    image = PILImage.new("RGB", size, color)
    light = tuple(min(255, c + 70) for c in color)
    image.paste(light, (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def generate(project, user, prompt: str, **params) -> object:  # noqa: ANN001
    generation, _ = generations.create(project, user, {"prompt": prompt, **params}, enqueue=False)
    generations.run(generation.id)
    return generations.get_generation(project.id, generation.id)


def seed(app) -> dict[str, str]:  # noqa: ANN001
    """A project with two flows of three steps, uploads, aliases and one failure."""
    with app.app_context():
        user = accounts.create_user(EMAIL, PASSWORD, name="Robin")
        project = projects.list_projects(user)[0]
        projects.rename_project(project, "Autumn campaign")
        logo = images.upload(project.id, swatch((52, 86, 160)), alias="@logo")
        images.upload(project.id, swatch((170, 80, 60), (900, 600)))
        vase = generate(project, user, "a ceramic vase on a linen table, soft window light")
        generate(
            project,
            user,
            "the same vase, glazed in cobalt blue",
            flowId=vase.flow_id,
            referenceImages=["@last"],
        )
        last = generate(
            project,
            user,
            "the blue vase with dried autumn flowers",
            flowId=vase.flow_id,
            referenceImages=["@last"],
            aspectRatio="4:5",
        )
        flows.merge_aliases(
            project.id, flows.get_flow(project.id, vase.flow_id), {"@hero": last.output_image_id}
        )
        poster = generate(
            project, user, "autumn sale poster, bold type, maple leaves", aspectRatio="16:9"
        )
        generate(
            project,
            user,
            "the poster with @logo in the corner",
            flowId=poster.flow_id,
            aspectRatio="16:9",
            referenceImages=[logo.alias],
        )
        failed, _ = generations.create(
            project, user, {"prompt": "a famous painting"}, enqueue=False
        )
        generations.fail(failed.id, "CONTENT_BLOCKED", "The model refused this prompt")
        return {"project": project.id, "flow": vase.flow_id, "generation": last.id}


def serve(app) -> tuple[str, object]:  # noqa: ANN001
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def save(png: bytes, path: Path) -> None:
    image = PILImage.open(io.BytesIO(png)).convert("RGB")
    image.quantize(
        colors=256, method=PILImage.Quantize.MEDIANCUT, dither=PILImage.Dither.NONE
    ).save(path, optimize=True)
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"{shown}  {path.stat().st_size // 1024} KB")


def shoot(base: str, ids: dict[str, str], out: Path, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    project = ids["project"]
    pages = [
        ("canvas", f"/projects/{project}"),
        ("history", f"/projects/{project}/history"),
        ("flows", f"/projects/{project}/flows"),
        ("flow", f"/projects/{project}/flows/{ids['flow']}"),
        ("images", f"/projects/{project}/images"),
        ("settings", f"/projects/{project}/settings"),
        ("generation", f"/projects/{project}/generations/{ids['generation']}"),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=VIEWPORT, base_url=base, color_scheme=scheme)
            page = context.new_page()
            page.goto("/login")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/projects")
            for name, path in pages if scheme == "light" else pages[:1]:
                page.goto(path)
                page.wait_for_load_state("networkidle")
                page.evaluate("document.fonts.ready")
                suffix = "" if scheme == "light" else "-dark"
                save(page.screenshot(), out / f"{name}{suffix}.png")
            context.close()
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screens")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pictor-screens-") as tmp:
        app = make_app(Path(tmp))
        ids = seed(app)
        base, server = serve(app)
        try:
            shoot(base, ids, args.out, args.chromium)
        finally:
            server.shutdown()
            queue.stop(app)


if __name__ == "__main__":
    main()
