"""The studio pages in a real browser: flow timeline and compare view, the board's arrangement
across reloads and tabs, settings, and every page free of console errors and CSP violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from app import queue
from app.services import accounts, flows, images, projects
from tests import factories

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def stop_worker(live_server):
    """Stop the live server's embedded worker with the test (live_server leaves it running)."""
    yield
    queue.stop(live_server.app)


EMAIL = "pages@example.com"
PASSWORD = "a long pages password"


@pytest.fixture
def studio(page: Page, live_server):
    """Signed in, with a two-step flow (a generation, then one made from it) and an upload."""
    with live_server.app.app_context():
        user = accounts.create_user(EMAIL, PASSWORD)
        project = projects.list_projects(user)[0]
        first = factories.make_generation(project, user, "a plain white vase")
        second = factories.make_generation(
            project,
            user,
            "the same vase, now cobalt blue",
            flowId=first.flow_id,
            referenceImages=["@last"],
        )
        flows.merge_aliases(
            project.id, flows.get_flow(project.id, first.flow_id), {"@base": first.output_image_id}
        )
        images.upload(project.id, factories.png_bytes(), alias="@logo")
        ids = {"project": project.id, "flow": first.flow_id, "first": first.id, "second": second.id}
    page.goto("/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/projects$"))
    return ids


def test_flow_timeline_and_compare_view(page: Page, studio):
    page.goto(f"/projects/{studio['project']}/flows")
    page.get_by_role("link", name="a plain white vase").click()

    steps = page.locator(".timeline__step")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("a plain white vase")
    expect(steps.nth(1)).to_contain_text("the same vase, now cobalt blue")
    expect(steps.nth(1)).to_contain_text("@last")

    compare = page.locator("[data-compare]")
    expect(compare).to_have_class(re.compile("is-enhanced"))
    expect(compare.locator("img")).to_have_count(2)
    top = compare.locator("[data-compare-top]")
    expect(top).to_have_css("clip-path", "inset(0px 50% 0px 0px)")
    slider = page.get_by_role("slider", name=re.compile("Compare slider"))
    slider.fill("80")
    expect(top).to_have_css("clip-path", "inset(0px 20% 0px 0px)")
    slider.focus()
    page.keyboard.press("ArrowLeft")
    expect(top).to_have_css("clip-path", "inset(0px 21% 0px 0px)")

    page.get_by_label("Before").select_option(label="Step image 2")
    expect(page.get_by_label("Before")).to_have_value(re.compile(r"[0-9a-f-]{36}"))
    expect(page.locator("[data-compare] figcaption").first).to_contain_text("image 2")


def test_flow_aliases_are_edited_and_removed_inline(page: Page, studio):
    page.goto(f"/projects/{studio['project']}/flows/{studio['flow']}")
    aliases = page.locator("#flow-aliases")
    expect(aliases).to_contain_text("@base")

    aliases.get_by_label("New alias").fill("@blue")
    aliases.get_by_role("button", name="Add alias").click()
    expect(aliases.locator(".alias-row")).to_have_count(2)

    aliases.get_by_label("New alias").fill("not an alias")
    aliases.get_by_role("button", name="Add alias").click()
    expect(aliases.locator("#new-flow-alias-error")).to_contain_text("Alias must be @")

    aliases.get_by_role("button", name="Remove @base").click()
    expect(aliases.locator(".alias-row")).to_have_count(1)
    expect(aliases).not_to_contain_text("@base")
    page.console_errors.clear()  # the refused alias answered 422 on purpose


def test_canvas_arrangement_survives_a_reload(page: Page, studio):
    page.goto(f"/projects/{studio['project']}")
    card = page.locator(f'[data-board-item="g:{studio["first"]}"]')
    expect(card).to_be_visible()
    before = card.get_attribute("style")

    box = card.bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 120, box["y"] + 100, steps=5)
    page.mouse.move(box["x"] + 200, box["y"] + 140, steps=5)
    page.mouse.up()
    expect(page.locator("[data-board-status]")).to_have_text("Saved")
    moved = card.get_attribute("style")
    assert moved != before

    page.reload()

    expect(page.locator(f'[data-board-item="g:{studio["first"]}"]')).to_have_attribute(
        "style", re.compile(re.escape(moved.split(";")[0]))
    )


def test_cards_move_with_the_keyboard_and_frames_group_each_flow(page: Page, studio):
    page.goto(f"/projects/{studio['project']}")
    frames = page.locator(".board__group")
    expect(frames).to_have_count(2)  # the two-step flow and the upload's own flow
    expect(frames.filter(has_text="a plain white vase · 2 images")).to_have_count(1)

    card = page.locator(f'[data-board-item="g:{studio["second"]}"]')
    card.focus()
    before = card.get_attribute("style")
    page.keyboard.press("Shift+ArrowRight")
    expect(card).not_to_have_attribute("style", before)
    expect(page.locator("[data-board-status]")).to_have_text("Saved")


def test_a_conflict_from_another_tab_is_shown_not_overwritten(page: Page, studio):
    url = f"/projects/{studio['project']}"
    key = f'[data-board-item="g:{studio["first"]}"]'
    page.goto(url)
    other = page.context.new_page()
    other.goto(url)

    other.locator(key).focus()
    other.keyboard.press("ArrowDown")
    expect(other.locator("[data-board-status]")).to_have_text("Saved")
    saved_elsewhere = other.locator(key).get_attribute("style")

    page.locator(key).focus()
    page.keyboard.press("ArrowRight")

    conflict = page.locator("[data-board-conflict]")
    expect(conflict).to_be_visible()
    expect(conflict).to_contain_text("changed in another tab")
    other.reload()
    expect(other.locator(key)).to_have_attribute("style", saved_elsewhere)  # not overwritten

    page.get_by_role("button", name="Reload canvas").click()
    expect(page.locator("[data-board-conflict]")).to_be_hidden()
    expect(page.locator(key)).to_have_attribute("style", saved_elsewhere)
    assert any("412" in error for error in page.console_errors)
    page.console_errors.clear()


def test_settings_rotate_the_live_secret(page: Page, studio):
    page.goto(f"/projects/{studio['project']}/settings")
    secret = page.get_by_label("Live secret")
    old = secret.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())

    page.get_by_role("button", name="Rotate live secret").click()

    expect(secret).not_to_have_text(old)
    expect(secret).to_have_text(re.compile(r"^live_"))
    expect(page.get_by_text("previous one keeps working for 24 hours")).to_be_visible()
    page.reload()
    expect(page.get_by_label("Live secret")).to_have_text(secret.inner_text())


def test_settings_build_a_signed_url(page: Page, studio):
    page.goto(f"/projects/{studio['project']}/settings")
    page.get_by_label("Live prompt").fill("a red fox")
    page.get_by_label("Live aspect ratio").select_option("16:9")
    page.get_by_role("button", name="Build URL").click()

    url = page.get_by_label("Signed URL")
    expect(url).to_contain_text(f"/live/{studio['project']}?prompt=a+red+fox&aspectRatio=16:9&sig=")


def test_no_console_errors_on_any_studio_page(page: Page, studio):
    project = studio["project"]
    for path in (
        "/projects",
        f"/projects/{project}",
        f"/projects/{project}/history",
        f"/projects/{project}/flows",
        f"/projects/{project}/flows/{studio['flow']}",
        f"/projects/{project}/generations/{studio['second']}",
        f"/projects/{project}/images",
        f"/projects/{project}/images?tab=deleted",
        f"/projects/{project}/settings",
    ):
        response = page.goto(path)
        assert response.status == 200, path
        expect(page.locator("main h1").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert page.console_errors == [], path


def test_without_javascript_pages_read_and_forms_submit(browser, live_server, studio, tmp_path):
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, base_url=live_server.url, java_script_enabled=False
    )
    plain = context.new_page()
    plain.goto("/login")
    plain.get_by_label("Email").fill(EMAIL)
    plain.get_by_label("Password").fill(PASSWORD)
    plain.get_by_role("button", name="Sign in").click()
    project = studio["project"]

    plain.goto(f"/projects/{project}")
    expect(plain.locator("[data-board-item]")).to_have_count(3)  # a plain grid of cards
    plain.get_by_role("textbox", name="Prompt").fill("a quiet harbour at dawn")
    plain.get_by_role("button", name="Generate", exact=True).click()
    expect(plain).to_have_url(re.compile(rf"/projects/{project}$"))
    expect(plain.get_by_text("Generation started")).to_be_visible()
    expect(plain.locator("[data-board-item]").first).to_contain_text("a quiet harbour at dawn")

    plain.goto(f"/projects/{project}/history?q=harbour")
    expect(plain.locator(".history-row")).to_have_count(1)

    picture = tmp_path / "plain.png"
    picture.write_bytes(factories.png_bytes(120, 90))
    plain.goto(f"/projects/{project}/images")
    plain.locator("#upload-file").set_input_files(str(picture))
    plain.get_by_role("button", name="Upload").click()
    expect(plain.get_by_text("Image uploaded.")).to_be_visible()
    expect(plain.locator("[data-image-card]").filter(has_text="120×90")).to_have_count(1)
    context.close()
