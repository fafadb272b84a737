"""The canvas page: the prompt panel, generating from it, and the live generation cards."""

from __future__ import annotations

import json
import re

import pytest

from app.extensions import db
from app.services import aliases, credits, generations, images
from tests import factories

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


def balance(user) -> int:
    """The user's balance now (requests change it in their own database session)."""
    db.session.refresh(user)
    return user.credits_balance


def test_canvas_page_has_the_landmarks_and_the_board(signed_in, user, project):
    factories.make_generation(project, user, "a lighthouse at dusk")

    response = signed_in.get(f"/projects/{project.id}")

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert '<label class="field__label" for="prompt">Prompt</label>' in page
    assert '<label class="field__label" for="aspect_ratio">Aspect ratio</label>' in page
    assert re.search(
        r'<button type="submit"[^>]*>\s*<span[^>]*></span>.*?Generate\s*</button>', page, re.S
    )
    assert 'data-board-item="g:' in page and "a lighthouse at dusk" in page
    assert 'data-canvas-url="/api/v1/canvas"' in page


def test_empty_canvas_says_what_to_do(signed_in, project):
    page = signed_in.get(f"/projects/{project.id}").get_data(as_text=True)

    assert "Your canvas is empty" in page


def test_aspect_ratio_defaults_to_the_projects_default(signed_in, project):
    project.default_aspect_ratio = "16:9"
    db.session.commit()

    page = signed_in.get(f"/projects/{project.id}").get_data(as_text=True)

    assert '<option selected value="16:9">16:9</option>' in page


def test_query_parameters_prefill_the_panel_and_htmx_gets_the_panel_alone(signed_in, project):
    image = factories.make_image(project, alias="@hero")
    flow = factories.make_flow(project)
    query = f"prompt=a+blue+vase&aspect_ratio=4:5&seed=42&flow_id={flow.id}&ref={image.id}"

    full = signed_in.get(f"/projects/{project.id}?{query}")
    panel = signed_in.get(f"/projects/{project.id}?{query}", headers=HX)

    for response in (full, panel):
        html = response.get_data(as_text=True)
        assert re.search(r">\s*a blue vase</textarea>", html)
        assert '<option selected value="4:5">' in html
        assert 'value="42"' in html
        assert f'<option selected value="{flow.id}">' in html
        assert re.search(r'name="references" value="@hero" checked', html)
    assert "<html" in full.get_data(as_text=True)
    assert "<html" not in panel.get_data(as_text=True)
    assert panel.get_data(as_text=True).lstrip().startswith('<aside class="prompt-panel"')


def test_generate_with_htmx_answers_the_new_card_and_the_new_balance(signed_in, user, project):
    before = balance(user)

    response = factories.post_form(
        signed_in, f"/projects/{project.id}/generations", {"prompt": "a paper crane"}, HX
    )

    assert response.status_code == 201
    html = response.get_data(as_text=True)
    assert 'data-board-item="g:' in html and "a paper crane" in html
    events = json.loads(response.headers["HX-Trigger"])
    assert events["credits-changed"] == {"balance": before - 1}


def test_generate_without_scripts_redirects_back_to_the_canvas(signed_in, project):
    response = factories.post_form(
        signed_in, f"/projects/{project.id}/generations", {"prompt": "a paper crane"}
    )

    assert response.status_code == 303
    assert response.headers["Location"] == f"/projects/{project.id}"
    page = signed_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "Generation started" in page and "a paper crane" in page


def test_missing_prompt_is_shown_next_to_the_prompt_field(signed_in, user, project):
    before = balance(user)

    response = factories.post_form(
        signed_in, f"/projects/{project.id}/generations", {"prompt": "  "}, HX
    )

    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#prompt-panel"
    assert response.headers["HX-Reswap"] == "outerHTML"
    html = response.get_data(as_text=True)
    assert re.search(r'id="prompt-error".*?Prompt is required', html, re.S)
    assert 'aria-invalid="true"' in html
    assert balance(user) == before


def test_taken_alias_is_shown_next_to_the_alias_field(signed_in, project):
    factories.make_image(project, alias="@hero")

    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/generations",
        {"prompt": "a fox", "alias": "@hero"},
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'id="alias-error".*?Alias already exists', html, re.S)
    assert '<details class="prompt-panel__more" open>' in html


def test_unknown_reference_is_shown_next_to_the_references(signed_in, project):
    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/generations",
        {"prompt": "a fox", "references": ["@nobody"]},
        HX,
    )

    assert response.status_code == 422
    assert re.search(
        r'id="references-error".*?Image not found: @nobody', response.get_data(as_text=True), re.S
    )


def test_not_enough_credits_is_a_form_error(signed_in, user, project):

    credits.debit(user.id, balance(user), note="spent elsewhere")
    db.session.commit()

    response = factories.post_form(
        signed_in, f"/projects/{project.id}/generations", {"prompt": "a fox"}, HX
    )

    assert response.status_code == 422
    assert re.search(r'role="alert".*?Not enough credits', response.get_data(as_text=True), re.S)


def test_generate_uses_the_chosen_references_flow_and_settings(signed_in, user, project):
    flow = factories.make_flow(project)
    image = factories.make_image(project, flow=flow, alias="@hero")

    factories.post_form(
        signed_in,
        f"/projects/{project.id}/generations",
        {
            "prompt": "the same vase in blue",
            "aspect_ratio": "3:2",
            "seed": "7",
            "flow_id": flow.id,
            "references": ["@hero"],
            "negative_prompt": "text",
            "alias": "@blue-vase",
        },
        HX,
    )

    (created,), _ = generations.list_generations(project.id, q="blue")
    assert created.flow_id == flow.id and created.aspect_ratio == "3:2" and created.seed == 7
    assert created.negative_prompt == "text" and created.alias == "@blue-vase"
    assert [ref["imageId"] for ref in created.reference_images] == [image.id]


def test_a_reference_file_without_scripts_is_uploaded_and_used(signed_in, project):
    import io

    token = factories.csrf_token(signed_in, "/projects")
    response = signed_in.post(
        f"/projects/{project.id}/generations",
        data={
            "csrf_token": token,
            "prompt": "like this one",
            "reference_file": (io.BytesIO(factories.png_bytes()), "ref.png"),
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 303
    (created,), _ = generations.list_generations(project.id)
    (upload,) = images.list_images(project.id, limit=5, offset=0, source="uploaded").items
    assert [ref["imageId"] for ref in created.reference_images] == [upload.id]


class TestLiveCard:
    def test_running_generation_polls_itself_every_second(self, signed_in, user, project):
        generation = factories.make_generation(project, user, run=False)

        response = signed_in.get(
            f"/projects/{project.id}/generations/{generation.id}?view=board", headers=HX
        )

        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert 'hx-trigger="every 1s"' in html
        assert "Queued…" in html and "HX-Trigger" not in response.headers

    def test_finished_generation_stops_polling_and_announces_itself(self, signed_in, user, project):
        generation = factories.make_generation(project, user, "an origami boat")

        response = signed_in.get(
            f"/projects/{project.id}/generations/{generation.id}?view=board", headers=HX
        )

        assert response.status_code == 286
        html = response.get_data(as_text=True)
        assert "every 1s" not in html
        assert f'src="/i/{generation.output_image_id}/thumb.webp"' in html
        events = json.loads(response.headers["HX-Trigger"])
        assert events["generation-finished"]["status"] == "success"
        assert events["generation-finished"]["prompt"] == "an origami boat"
        assert events["credits-changed"] == {"balance": balance(user)}

    def test_failed_generation_shows_the_reason_and_the_refund(self, signed_in, user, project):
        generation = factories.make_generation(
            project, user, fail=("CONTENT_BLOCKED", "The provider refused this prompt")
        )

        response = signed_in.get(
            f"/projects/{project.id}/generations/{generation.id}?view=board", headers=HX
        )

        html = response.get_data(as_text=True)
        assert "The provider refused this prompt" in html
        assert "1 credit refunded" in html
        assert json.loads(response.headers["HX-Trigger"])["generation-finished"]["status"] == (
            "failed"
        )

    def test_direct_navigation_gets_the_generation_page(self, signed_in, user, project):
        generation = factories.make_generation(project, user, "an origami boat", seed=99)

        response = signed_in.get(f"/projects/{project.id}/generations/{generation.id}")

        html = response.get_data(as_text=True)
        assert response.status_code == 200 and "<html" in html
        assert "an origami boat" in html and "99" in html
        assert "Use again" in html and "prompt=an+origami+boat" in html


class TestCardActions:
    def test_new_variation_adds_a_charged_card(self, signed_in, user, project):
        generation = factories.make_generation(project, user)
        before = balance(user)

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/generations/{generation.id}/regenerate",
            headers=HX,
        )

        assert response.status_code == 201
        assert 'data-board-item="g:' in response.get_data(as_text=True)
        assert f"g:{generation.id}" not in response.get_data(as_text=True)
        assert json.loads(response.headers["HX-Trigger"])["credits-changed"] == {
            "balance": before - 1
        }

    def test_cancel_refunds_a_pending_generation(self, signed_in, user, project):
        generation = factories.make_generation(project, user, run=False)
        before = balance(user)

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/generations/{generation.id}/cancel",
            {"view": "board"},
            HX,
        )

        assert ">Cancelled<" in response.get_data(as_text=True)
        assert json.loads(response.headers["HX-Trigger"])["credits-changed"] == {
            "balance": before + 1
        }

    def test_delete_removes_a_failed_generation(self, signed_in, user, project):
        generation = factories.make_generation(project, user, fail=("PROVIDER_ERROR", "down"))

        response = factories.post_form(
            signed_in, f"/projects/{project.id}/generations/{generation.id}/delete", headers=HX
        )

        assert response.status_code == 200
        page = signed_in.get(f"/projects/{project.id}").get_data(as_text=True)
        assert f"g:{generation.id}" not in page

    def test_alias_set_inline_on_a_card_resolves(self, signed_in, user, project):
        generation = factories.make_generation(project, user)

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/images/{generation.output_image_id}/alias",
            {"alias": "@crane", "view": "board"},
            HX,
        )

        assert response.status_code == 200
        assert f'data-board-item="g:{generation.id}"' in response.get_data(as_text=True)
        assert aliases.resolve(project.id, "@crane").image.id == generation.output_image_id

    def test_deleting_a_cards_image_can_be_undone(self, signed_in, user, project):
        generation = factories.make_generation(project, user)
        image_id = generation.output_image_id

        deleted = factories.post_form(
            signed_in, f"/projects/{project.id}/images/{image_id}/delete", {"view": "board"}, HX
        )
        assert "Image deleted." in deleted.get_data(as_text=True)
        assert f'data-board-item="g:{generation.id}"' in deleted.get_data(as_text=True)
        assert f"g:{generation.id}" not in signed_in.get(f"/projects/{project.id}").get_data(
            as_text=True
        )

        restored = factories.post_form(
            signed_in, f"/projects/{project.id}/images/{image_id}/restore", {"view": "board"}, HX
        )

        assert f'src="/i/{image_id}/thumb.webp"' in restored.get_data(as_text=True)
        assert f"g:{generation.id}" in signed_in.get(f"/projects/{project.id}").get_data(
            as_text=True
        )

    def test_continue_flow_refills_the_panel_with_the_flow_and_reference(
        self, signed_in, user, project
    ):
        generation = factories.make_generation(project, user)

        response = signed_in.get(
            f"/projects/{project.id}?flow_id={generation.flow_id}&ref={generation.output_image_id}",
            headers=HX,
        )

        html = response.get_data(as_text=True)
        assert f'<option selected value="{generation.flow_id}">' in html
        assert f'value="{generation.output_image_id}" checked' in html


class TestAnotherUsersProject:
    @pytest.fixture
    def theirs(self, app):
        owner = factories.make_user("someone-else@example.com")
        project = factories.first_project(owner)
        return project, factories.make_generation(project, owner)

    def test_canvas_is_404(self, signed_in, theirs):
        project, _ = theirs
        assert signed_in.get(f"/projects/{project.id}").status_code == 404
        assert signed_in.get(f"/projects/{project.id}", headers=HX).status_code == 404

    def test_their_generation_is_404_even_inside_my_project(self, signed_in, project, theirs):
        _, generation = theirs
        for path in (
            f"/projects/{project.id}/generations/{generation.id}",
            f"/projects/{generation.project_id}/generations/{generation.id}",
        ):
            assert signed_in.get(path, headers=HX).status_code == 404
        response = factories.post_form(
            signed_in, f"/projects/{project.id}/generations/{generation.id}/regenerate"
        )
        assert response.status_code == 404

    def test_generating_in_their_project_is_404_and_charges_nobody(self, signed_in, user, theirs):
        project, _ = theirs
        before = balance(user)

        response = factories.post_form(
            signed_in, f"/projects/{project.id}/generations", {"prompt": "x"}, HX
        )

        assert response.status_code == 404
        assert balance(user) == before
