"""The studio in a real browser: from sign-up to a generated image, history and "use again";
uploads by drag and drop, an alias set inline and used as a reference."""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import Page, expect

from app import queue
from app.extensions import db
from app.services import accounts, generations, projects
from tests import factories

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def stop_worker(live_server):
    """Stop the live server's embedded worker with the test (live_server leaves it running)."""
    yield
    queue.stop(live_server.app)


EMAIL = "studio@example.com"
PASSWORD = "a long studio password"


def sign_in(page: Page, live_server) -> str:
    """Create the account behind the scenes and sign in through the form; the project id."""
    with live_server.app.app_context():
        user = accounts.create_user(EMAIL, PASSWORD)
        project_id = projects.list_projects(user)[0].id
    page.goto("/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/projects$"))
    return project_id


def mark_document(page: Page) -> None:
    """A flag that only survives as long as the page is not reloaded."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    return page.evaluate("window.__sameDocument === true")


def drop_file(page: Page, selector: str, data: bytes, name: str = "drop.png") -> None:
    """Drop a file on an element the way a desktop drag and drop does."""
    transfer = page.evaluate_handle(
        """([b64, name]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [base64.b64encode(data).decode(), name],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_sign_up_generate_see_it_in_history_search_and_use_again(page: Page, live_server):
    live_server.app.config["LOCAL_PROVIDER_DELAY_MS"] = 1500  # time to see the stages
    page.goto("/signup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/projects$"))
    page.get_by_role("link", name="My first project", exact=True).click()
    expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]{36}$"))
    balance = int(page.locator(".credit-pill [data-credit-balance]").inner_text())

    mark_document(page)
    page.get_by_role("textbox", name="Prompt").fill("a lighthouse at dusk above a violet sea")
    page.get_by_label("Aspect ratio").select_option("16:9")
    page.get_by_role("textbox", name="Prompt").press("Control+Enter")

    card = page.locator("[data-board-item]").first
    expect(card).to_contain_text("a lighthouse at dusk above a violet sea")
    expect(card.locator("[data-status]")).to_have_text(re.compile("Pending|Processing"))
    expect(card.locator(".board-card__stage")).to_be_visible()
    expect(page.locator(".credit-pill [data-credit-balance]")).to_have_text(str(balance - 1))
    expect(card.locator("img")).to_be_visible(timeout=15_000)
    expect(card.locator("[data-status]")).to_have_text("Success")
    assert same_document(page), "the image appeared through a reload"
    assert card.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")

    page.get_by_role("link", name="History").click()
    expect(page.locator(".history-row")).to_have_count(1)
    expect(page.locator(".history-row")).to_contain_text("a lighthouse at dusk above a violet sea")

    page.get_by_label("Search prompts").fill("violet LIGHTHOUSE")
    expect(page).to_have_url(re.compile(r"q=violet"))
    expect(page.locator(".history-row")).to_have_count(1)
    page.get_by_label("Search prompts").fill("zebra")
    expect(page.get_by_text("Nothing matches")).to_be_visible()
    page.get_by_label("Search prompts").fill("violet")
    expect(page.locator(".history-row")).to_have_count(1)

    page.get_by_role("link", name="Use again").click()
    expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]{36}\?"))
    expect(page.get_by_role("textbox", name="Prompt")).to_have_value(
        "a lighthouse at dusk above a violet sea"
    )
    expect(page.get_by_label("Aspect ratio")).to_have_value("16:9")


def test_a_failed_generation_shows_the_reason_and_the_refund(page: Page, live_server):
    project_id = sign_in(page, live_server)
    with live_server.app.app_context():
        user = accounts.get_by_email(EMAIL)
        project = projects.get_project(user, project_id)
        factories.make_generation(
            project, user, "a forbidden picture", fail=("CONTENT_BLOCKED", "Refused by the model")
        )

    page.goto(f"/projects/{project_id}")

    card = page.locator("[data-board-item]").first
    expect(card.locator("[data-status]")).to_have_text("Failed")
    expect(card).to_contain_text("Refused by the model")
    expect(card).to_contain_text("1 credit refunded")


def test_upload_by_drag_and_drop_with_progress(page: Page, live_server):
    project_id = sign_in(page, live_server)
    page.goto(f"/projects/{project_id}/images")
    expect(page.get_by_text("No images here yet")).to_be_visible()
    mark_document(page)

    drop_file(page, "[data-dropzone]", factories.png_bytes(320, 200, "#cc6633"))

    card = page.locator("[data-image-card]")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("320×200")
    expect(page.get_by_text("No images here yet")).to_be_hidden()
    expect(card.locator("[data-focal-marker]")).to_be_visible()
    expect(card.locator("img")).to_be_visible()
    expect(page.locator("[data-upload-progress]")).to_be_hidden()
    assert same_document(page)
    page.reload()
    expect(page.locator("[data-image-card]")).to_have_count(1)


def test_a_refused_drop_is_explained_at_the_drop_zone(page: Page, live_server):
    project_id = sign_in(page, live_server)
    page.goto(f"/projects/{project_id}/images")

    drop_file(page, "[data-dropzone]", b"this is not a picture", "notes.png")

    expect(page.locator("[data-upload-error]")).to_contain_text("Unsupported or damaged image")
    expect(page.locator("[data-image-card]")).to_have_count(0)
    assert any("415" in error for error in page.console_errors)  # the refused request
    page.console_errors.clear()


def test_set_an_alias_inline_and_use_it_as_a_reference(page: Page, live_server):
    project_id = sign_in(page, live_server)
    page.goto(f"/projects/{project_id}/images")
    drop_file(page, "[data-dropzone]", factories.png_bytes(256, 256, "#3366cc"))
    card = page.locator("[data-image-card]")
    expect(card).to_have_count(1)

    card.get_by_text("Set alias").click()
    card.get_by_label("Alias").fill("@logo")
    card.get_by_role("button", name="Save").click()
    expect(page.locator("[data-image-card] [data-alias]")).to_have_text("@logo")
    expect(page.get_by_text("Alias @logo set")).to_be_visible()

    page.get_by_role("link", name="Canvas", exact=True).click()
    page.get_by_role("textbox", name="Prompt").fill("a mug with this logo")
    page.locator(".reference-option", has_text="@logo").click()
    expect(page.get_by_role("checkbox", name=re.compile("@logo"))).to_be_checked()
    page.get_by_role("button", name="Generate", exact=True).click()

    generated = page.locator('[data-board-item^="g:"]')
    expect(generated.locator("img")).to_be_visible(timeout=15_000)
    generated.get_by_role("link", name="Open").click()
    expect(page.locator(".dl")).to_contain_text("@logo")


def test_a_reference_dropped_on_the_prompt_panel_is_picked(page: Page, live_server):
    project_id = sign_in(page, live_server)
    page.goto(f"/projects/{project_id}")

    drop_file(page, ".prompt-panel [data-dropzone]", factories.png_bytes(200, 200, "#22aa66"))

    option = page.locator(".reference-option")
    expect(option).to_have_count(1)
    expect(option.locator("input")).to_be_checked()
    expect(page.locator('[data-board-item^="i:"]')).to_have_count(0)  # a reference, not a card yet
    page.reload()
    expect(page.locator('[data-board-item^="i:"]')).to_have_count(1)  # uploads are on the board


# The tab is "hidden" and notifications are allowed; the stub records what the page shows.
_HIDDEN_TAB = """
Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
window.__notes = [];
window.Notification = function (title, options) { window.__notes.push([title, options.body]); };
window.Notification.permission = "granted";
window.Notification.requestPermission = () => Promise.resolve("granted");
"""


def test_a_generation_finishing_in_a_hidden_tab_notifies_and_retitles(page: Page, live_server):
    project_id = sign_in(page, live_server)
    page.context.add_init_script(_HIDDEN_TAB)
    page.goto(f"/projects/{project_id}")

    page.get_by_role("textbox", name="Prompt").fill("a kite over the dunes")
    page.get_by_role("button", name="Generate", exact=True).click()

    expect(page).to_have_title(re.compile(r"^\(1\) Image ready · Canvas"), timeout=15_000)
    assert page.evaluate("window.__notes") == [["Your image is ready", "a kite over the dunes"]]
    page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", { get: () => "visible" });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    expect(page).to_have_title(re.compile(r"^Canvas · "))


def test_a_running_card_deleted_elsewhere_leaves_the_board(page: Page, live_server):
    project_id = sign_in(page, live_server)
    with live_server.app.app_context():
        user = accounts.get_by_email(EMAIL)
        project = projects.get_project(user, project_id)
        waiting = factories.make_generation(project, user, "being drawn", run=False)
        waiting.status, waiting.stage = "processing", "generating"  # a worker has it
        db.session.commit()
        waiting_id = waiting.id
    page.goto(f"/projects/{project_id}")
    card = page.locator(f'[data-board-item="g:{waiting_id}"]')
    expect(card.locator("[data-status]")).to_have_text("Processing")

    with live_server.app.app_context():
        generations.delete(project_id, waiting_id)  # from another tab, or the API

    expect(card).to_have_count(0)
    expect(page.get_by_text("Generation not found")).to_be_visible()
    assert any("404" in error for error in page.console_errors)
    page.console_errors.clear()
