"""The image library: tabs and filters, uploads, inline alias, focal point, delete and restore."""

from __future__ import annotations

import io
import json
import re

import pytest

from app.extensions import db
from app.services import images
from tests import factories

HX = {"HX-Request": "true"}


@pytest.fixture
def signed_in(client, auth, user):
    auth.login(user.email)
    return client


def shown(html: str) -> list[str]:
    return re.findall(
        r'<article class="image-card library-card[^"]*" id="image-([0-9a-f-]{36})"', html
    )


def upload(client, project_id: str, data: bytes, name: str = "photo.png", headers=None, **fields):
    token = factories.csrf_token(client, "/projects")
    return client.post(
        f"/projects/{project_id}/images",
        data={"csrf_token": token, "file": (io.BytesIO(data), name), **fields},
        content_type="multipart/form-data",
        headers=headers,
    )


def test_library_shows_every_image_newest_first(signed_in, project):
    older = factories.make_image(project, source="uploaded")
    newer = factories.make_image(project, source="generated")

    response = signed_in.get(f"/projects/{project.id}/images")

    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert shown(response.get_data(as_text=True)) == [newer.id, older.id]


def test_tabs_filter_by_source_and_htmx_gets_the_grid_alone(signed_in, project):
    uploaded = factories.make_image(project, source="uploaded")
    factories.make_image(project, source="generated")

    tab = signed_in.get(f"/projects/{project.id}/images?tab=uploaded", headers=HX)

    html = tab.get_data(as_text=True)
    assert html.lstrip().startswith('<div id="image-grid"') and "<html" not in html
    assert shown(html) == [uploaded.id]


def test_flow_filter(signed_in, project):
    flow = factories.make_flow(project)
    inside = factories.make_image(project, flow=flow)
    factories.make_image(project)

    html = signed_in.get(f"/projects/{project.id}/images?flow_id={flow.id}").get_data(as_text=True)

    assert shown(html) == [inside.id]


def test_empty_library_says_how_to_fill_it(signed_in, project):
    html = signed_in.get(f"/projects/{project.id}/images").get_data(as_text=True)

    assert "No images here yet" in html and "Drop images" in html


def test_drag_and_drop_upload_answers_the_new_card(signed_in, project):
    response = upload(signed_in, project.id, factories.png_bytes(), headers=HX)

    assert response.status_code == 201
    html = response.get_data(as_text=True)
    (image,) = images.list_images(project.id, limit=5, offset=0).items
    assert shown(html) == [image.id] and image.source == "uploaded"


def test_upload_as_a_reference_answers_a_checked_choice(signed_in, project):
    token = factories.csrf_token(signed_in, "/projects")
    response = signed_in.post(
        f"/projects/{project.id}/images?view=reference",
        data={"csrf_token": token, "reference_file": (io.BytesIO(factories.png_bytes()), "r.png")},
        content_type="multipart/form-data",
        headers=HX,
    )

    (image,) = images.list_images(project.id, limit=5, offset=0).items
    html = response.get_data(as_text=True)
    assert response.status_code == 201
    assert f'name="references" value="{image.id}" checked' in html


def test_upload_without_scripts_redirects_back(signed_in, project):
    response = upload(signed_in, project.id, factories.png_bytes())

    assert response.status_code == 303
    page = signed_in.get(f"/projects/{project.id}/images").get_data(as_text=True)
    assert "Image uploaded." in page and len(shown(page)) == 1


def test_a_file_that_is_not_an_image_is_refused_next_to_the_drop_zone(signed_in, project):
    response = upload(signed_in, project.id, b"%PDF-1.4 not an image", "notes.pdf")

    assert response.status_code == 415
    html = response.get_data(as_text=True)
    assert re.search(r'data-upload-error role="alert">Unsupported or damaged image', html)
    assert images.list_images(project.id, limit=5, offset=0).items == []


def test_a_refused_drop_says_why_to_the_script(signed_in, project):
    response = upload(signed_in, project.id, b"not an image", headers=HX)

    assert response.status_code == 415
    toast = json.loads(response.headers["HX-Trigger"])["toast"]
    assert toast["level"] == "error" and "Unsupported or damaged image" in toast["message"]


class TestAlias:
    def test_set_inline(self, signed_in, project):
        image = factories.make_image(project)

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/images/{image.id}/alias",
            {"alias": "@logo", "view": "library"},
            HX,
        )

        html = response.get_data(as_text=True)
        assert response.status_code == 200 and shown(html) == [image.id]
        assert "data-alias>@logo<" in html
        assert json.loads(response.headers["HX-Trigger"])["toast"]["message"] == "Alias @logo set"
        db.session.refresh(image)
        assert image.alias == "@logo"

    def test_taken_alias_is_shown_next_to_the_field(self, signed_in, project):
        factories.make_image(project, alias="@logo")
        image = factories.make_image(project)

        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/images/{image.id}/alias",
            {"alias": "@logo", "view": "library"},
            HX,
        )

        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert re.search(rf'id="alias-library-{image.id}-error".*?Alias already exists', html, re.S)
        assert '<details class="alias-edit" open>' in html

    def test_without_scripts_a_taken_alias_is_shown_at_that_card(self, signed_in, project):
        factories.make_image(project, alias="@logo")
        image = factories.make_image(project)

        response = factories.post_form(
            signed_in, f"/projects/{project.id}/images/{image.id}/alias", {"alias": "@logo"}
        )

        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert "<html" in html and len(shown(html)) == 2
        card = re.search(rf'id="image-{image.id}".*?</article>', html, re.S).group(0)
        assert re.search(r'class="field__error".*?Alias already exists', card, re.S)

    def test_empty_alias_removes_it(self, signed_in, project):
        image = factories.make_image(project, alias="@old")

        factories.post_form(
            signed_in, f"/projects/{project.id}/images/{image.id}/alias", {"alias": ""}, HX
        )

        db.session.refresh(image)
        assert image.alias is None


def test_focal_point_is_saved_and_marked(signed_in, project):
    image = factories.make_image(project)

    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/images/{image.id}/focal-point",
        {"x": "0.25", "y": "0.75", "view": "library"},
        HX,
    )

    assert 'data-focal-marker data-x="0.25" data-y="0.75"' in response.get_data(as_text=True)
    db.session.refresh(image)
    assert (image.focal_x, image.focal_y) == (0.25, 0.75)


def test_focal_point_outside_the_image_is_refused(signed_in, project):
    image = factories.make_image(project)

    response = factories.post_form(
        signed_in,
        f"/projects/{project.id}/images/{image.id}/focal-point",
        {"x": "1.5", "y": "0.5"},
        HX,
    )

    assert response.status_code == 400
    db.session.refresh(image)
    assert (image.focal_x, image.focal_y) == (0.5, 0.5)


def test_delete_then_restore_from_the_deleted_tab(signed_in, project):
    image = factories.make_image(project, alias="@keep")

    deleted = factories.post_form(
        signed_in, f"/projects/{project.id}/images/{image.id}/delete", {"view": "library"}, HX
    )
    assert "Restore" in deleted.get_data(as_text=True)
    assert shown(signed_in.get(f"/projects/{project.id}/images").get_data(as_text=True)) == []
    bin_page = signed_in.get(f"/projects/{project.id}/images?tab=deleted").get_data(as_text=True)
    assert shown(bin_page) == [image.id]

    restored = factories.post_form(
        signed_in, f"/projects/{project.id}/images/{image.id}/restore", {"view": "library"}, HX
    )

    assert "data-alias>@keep<" in restored.get_data(as_text=True)
    assert shown(signed_in.get(f"/projects/{project.id}/images").get_data(as_text=True)) == [
        image.id
    ]


def test_empty_bin_says_how_long_images_are_kept(signed_in, project):
    html = signed_in.get(f"/projects/{project.id}/images?tab=deleted").get_data(as_text=True)

    assert "Deleted images stay here for 30 days" in html


class TestAnotherUsersProject:
    @pytest.fixture
    def theirs(self, app):
        owner = factories.make_user("someone-else@example.com")
        return factories.make_image(factories.first_project(owner), alias="@theirs")

    def test_their_library_is_404(self, signed_in, theirs):
        assert signed_in.get(f"/projects/{theirs.project_id}/images").status_code == 404
        assert signed_in.get(f"/projects/{theirs.project_id}/images", headers=HX).status_code == 404

    @pytest.mark.parametrize("action", ["alias", "focal-point", "delete", "restore"])
    def test_their_image_cannot_be_changed_from_my_project(
        self, signed_in, project, theirs, action
    ):
        response = factories.post_form(
            signed_in,
            f"/projects/{project.id}/images/{theirs.id}/{action}",
            {"alias": "@mine", "x": "0.1", "y": "0.1"},
            HX,
        )

        assert response.status_code == 404
        db.session.refresh(theirs)
        assert theirs.alias == "@theirs" and theirs.deleted_at is None

    def test_uploading_into_their_project_is_404(self, signed_in, theirs):
        response = upload(signed_in, theirs.project_id, factories.png_bytes(), headers=HX)

        assert response.status_code == 404
